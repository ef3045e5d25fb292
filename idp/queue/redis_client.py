"""Build the Redis client ``IDP_REDIS_URL`` names: one server, a Redis Cluster, or a primary behind Sentinel.

* ``redis://[user:password@]host:port/db`` (or ``rediss://``, ``unix://``): one server.
* ``redis+cluster://[user:password@]host:port[,host:port...]``: redis-py's cluster client, seeded by the
  listed nodes; it learns the slot map and follows ``MOVED``/``ASK`` redirects. Every key of one event
  carries the hash tag ``{event_id}`` (``idp.queue.keys``), so each script runs on one node.
* ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``: the sentinels are
  asked for the primary of ``service_name``; after a failover the client finds the new primary.
  ``user:password`` authenticate to the primary and replicas (sentinels are assumed open on the
  private network, as Redis ships them).

The same names are what the ``limits`` library (used for rate limits) understands.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

# Every client fails fast: a store that does not answer within these is an outage (503), not a hang.
SOCKET_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 30

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")


class RedisUrlError(ValueError):
    """``IDP_REDIS_URL`` cannot be understood."""


def _hosts(netloc: str, scheme: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    credentials, _, hostlist = netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if credentials:
        user, sep, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    hosts: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep:
            host, port = port, "26379" if scheme in SENTINEL_SCHEMES else "6379"
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise RedisUrlError(f"{scheme}:// needs host:port[,host:port]")
        hosts.append((host, int(port)))
    return hosts, username, password


def _common(tls: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
    }
    if tls:
        options["ssl"] = True
    return options


def connect(url: str) -> Any:
    """Return a redis-py client (``Redis`` or ``RedisCluster``) for ``url``; see the module docstring."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in CLUSTER_SCHEMES:
        parts = urlsplit(url)
        hosts, username, password = _hosts(parts.netloc, scheme)
        if parts.path not in ("", "/"):
            raise RedisUrlError("redis+cluster:// has no database number: a cluster has only database 0")
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in hosts],  # type: ignore[no-untyped-call]
            username=username,
            password=password,
            **_common(scheme.startswith("rediss")),
        )
    if scheme in SENTINEL_SCHEMES:
        parts = urlsplit(url)
        hosts, username, password = _hosts(parts.netloc, scheme)
        path = [segment for segment in parts.path.split("/") if segment]
        if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
            raise RedisUrlError("redis+sentinel:// needs /service_name (and optionally /db)")
        options = _common(scheme.startswith("rediss"))
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            hosts,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
        )
        return sentinel.master_for(  # type: ignore[no-untyped-call]
            unquote(path[0]),
            db=int(path[1]) if len(path) == 2 else 0,
            username=username,
            password=password,
            **options,
        )
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        health_check_interval=HEALTH_CHECK_INTERVAL,
    )


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def servers_without_aof(client: Any) -> list[str]:
    """The servers holding the queue's data that run without AOF: every primary of a cluster, else the one.

    A cluster is asked node by node (its client would answer for one node only); behind Sentinel the
    client reaches the current primary."""
    if is_cluster(client):
        servers = [(str(node.name), client.get_redis_connection(node)) for node in client.get_primaries()]
    else:
        options = client.connection_pool.connection_kwargs
        name = f"{options['host']}:{options['port']}" if "host" in options else "the primary"
        servers = [(name, client)]
    return [name for name, server in servers if str(server.info("persistence").get("aof_enabled", "0")) != "1"]
