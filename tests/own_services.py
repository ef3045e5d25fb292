"""Redis and PostgreSQL servers a test starts for itself on free loopback ports, to break and mend.

The shared services on the default ports must never be stopped or reconfigured; tests that need a
store to fail (killed, paused, shut down, failed over) or a topology (Redis Cluster, Sentinel) start
their own here. Each server keeps its files in a temporary folder and is stopped by ``stop()``.

* :class:`RedisServer`: one ``redis-server``; ``client()``, ``kill()``, ``restart()``, ``pause()``, ``resume()``.
* :func:`start_redis_cluster`: three masters with their slots assigned (``redis+cluster://`` seeds).
* :class:`SentinelSet`: a primary, a replica and three sentinels watching them (``redis+sentinel://``).
* :class:`PostgresServer`: ``initdb`` as a non-root user, ``start()``, ``stop(mode)``, ``url()``.

A missing binary skips the test locally and fails it under CI (``service_missing``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.conftest import service_missing

START_SECONDS = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait_for_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        service_missing("redis-server", FileNotFoundError("redis-server"))
        raise AssertionError("unreachable")
    return found


class RedisServer:
    """One ``redis-server`` of the test's own (no persistence unless asked).

    Given a ``folder``, its data stays there across restarts (an RDB saved earlier is loaded) and after
    ``stop()``; without one, a temporary folder is made and removed by ``stop()``.
    """

    def __init__(self, *args: str, port: int | None = None, folder: Path | None = None) -> None:
        self.binary = redis_server_binary()
        self.port = port or free_port()
        self._own_folder = folder is None
        self.folder = folder or Path(tempfile.mkdtemp(prefix="idp-redis-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.folder / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - a fixed binary with our own arguments
                command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        _wait_for_port(self.port, START_SECONDS, self.process)
        # Listening is not serving: a server loading its RDB or AOF answers LOADING until it is done.
        deadline = time.monotonic() + START_SECONDS
        with contextlib.closing(self.client()) as client:
            while True:
                try:
                    client.ping()
                    return self
                except redis.exceptions.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {self.port} still loading") from None
                    time.sleep(0.05)

    def client(self) -> redis.Redis:
        """A client of this server's database 0 (the test closes it, or lets it go)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, with whatever it had in memory."""
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a stalled or partitioned server)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """The end of the test: SIGKILL, as nothing the server held is wanted (a SIGTERM can wait 10 s
        for an AOF rewrite or a replica)."""
        self.kill()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def cli(self, *args: str, port: int | None = None) -> str:
        """Run ``redis-cli`` against this server (or another port) and return its output."""
        cli = shutil.which("redis-cli")
        if cli is None:
            service_missing("redis-cli", FileNotFoundError("redis-cli"))
        return subprocess.run(  # noqa: S603
            [str(cli), "-h", "127.0.0.1", "-p", str(port or self.port), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout


class RedisCluster:
    """Three (or more) cluster-enabled masters sharing all 16384 slots."""

    def __init__(self, nodes: list[RedisServer], folder: Path) -> None:
        self.nodes = nodes
        self.folder = folder

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes[:2])
        return f"redis+cluster://{seeds}"

    def flush(self) -> None:
        for node in self.nodes:
            node.cli("FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_redis_cluster(masters: int = 3) -> RedisCluster:
    """Start ``masters`` nodes and join them into one cluster with ``redis-cli --cluster create``."""
    folder = Path(tempfile.mkdtemp(prefix="idp-cluster-"))
    nodes: list[RedisServer] = []
    try:
        for _ in range(masters):
            port = free_cluster_port()
            node_dir = folder / str(port)
            node_dir.mkdir()
            nodes.append(
                RedisServer(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout",
                    "2000",
                    port=port,
                    folder=node_dir,
                ).start()
            )
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        nodes[0].cli("--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes")
        deadline = time.monotonic() + START_SECONDS
        while "cluster_state:ok" not in "".join(node.cli("CLUSTER", "INFO") for node in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        while not all("cluster_state:ok" in node.cli("CLUSTER", "INFO") for node in nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("not every node sees cluster_state:ok")
            time.sleep(0.1)
    except BaseException:
        for node in nodes:
            node.stop()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return RedisCluster(nodes, folder)


class SentinelSet:
    """A primary, one replica and three sentinels (quorum 2) that fail over after one second."""

    SERVICE = "idpmain"

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="idp-sentinel-"))
        self.primary = RedisServer(folder=self._dir("primary")).start()
        self.replica = RedisServer(
            "--replicaof", "127.0.0.1", str(self.primary.port), folder=self._dir("replica")
        ).start()
        self.sentinels: list[RedisServer] = []
        for index in range(3):
            folder = self._dir(f"sentinel{index}")
            port = free_port()
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {folder}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n",
                encoding="utf-8",
            )
            sentinel = RedisServer(port=port, folder=folder)
            sentinel.args = []
            self.sentinels.append(sentinel)
            self._start_sentinel(sentinel, conf)
        self.wait_until_ready()

    def _dir(self, name: str) -> Path:
        path = self.folder / name
        path.mkdir()
        return path

    @staticmethod
    def _start_sentinel(sentinel: RedisServer, conf: Path) -> None:
        with open(sentinel.log_path, "ab") as log:
            sentinel.process = subprocess.Popen(  # noqa: S603
                [sentinel.binary, str(conf), "--sentinel"],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait_for_port(sentinel.port, START_SECONDS, sentinel.process)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}"

    def primary_port(self) -> int:
        answer = self.sentinels[0].cli("SENTINEL", "get-master-addr-by-name", self.SERVICE).split()
        return int(answer[1])

    def wait_until_ready(self) -> None:
        """Every sentinel knows the replica and the other sentinels; the replica is in sync."""
        deadline = time.monotonic() + START_SECONDS
        while True:
            info = self.replica.cli("INFO", "replication")
            ready = "master_link_status:up" in info
            for sentinel in self.sentinels:
                master = sentinel.cli("SENTINEL", "master", self.SERVICE)
                fields = master.split()
                values = dict(zip(fields[::2], fields[1::2], strict=False))
                ready = ready and values.get("num-slaves") == "1" and values.get("num-other-sentinels") == "2"
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not settle")
            time.sleep(0.2)

    def failover(self, timeout: float = 30.0) -> int:
        """Ask the sentinels to promote the replica; return the new primary's port once it takes writes."""
        before = self.primary_port()
        self.sentinels[0].cli("SENTINEL", "FAILOVER", self.SERVICE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.primary_port()
            if port != before and "role:master" in self.primary.cli("INFO", "replication", port=port):
                return port
            time.sleep(0.1)
        raise RuntimeError("the failover did not finish")

    def crash_primary(self, timeout: float = 30.0) -> int:
        """SIGKILL the current primary, wait for the sentinels to promote the replica, then start the
        killed server again (empty) for the sentinels to turn into the new primary's replica.
        Returns the new primary's port once it takes writes."""
        before = self.primary_port()
        victim = next(server for server in (self.primary, self.replica) if server.port == before)
        victim.kill()
        deadline = time.monotonic() + timeout
        while True:
            port = self.primary_port()
            if port != before and "role:master" in victim.cli("INFO", "replication", port=port):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinels did not promote the replica")
            time.sleep(0.1)
        victim.start()
        return port

    def flush(self) -> None:
        self.primary.cli("FLUSHALL", port=self.primary_port())

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.primary]:
            server.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        found = candidates[-1] if candidates else None
    if found is None:
        service_missing(f"PostgreSQL's {name}", FileNotFoundError(name))
        raise AssertionError("unreachable")
    return found


class PostgresServer:
    """A PostgreSQL cluster of the test's own; run as the ``postgres`` user when the test runs as root."""

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="idp-pg-"))
        self.data = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                service_missing("a non-root user named postgres", KeyError("postgres"))
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)  # type: ignore[union-attr]
        self._run(_pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, *command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        user = self._user

        def demote() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        return subprocess.run(  # noqa: S603
            list(command),
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=demote if user is not None else None,  # noqa: PLW1509 - drop root before exec
            cwd=str(self.folder),
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(_pg_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log_path), "-w", "start")

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        """``smart`` waits for sessions to end, ``fast`` ends them, ``immediate`` crashes (recovery at start)."""
        args = [_pg_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w" if wait else "-W", "stop"]
        self._run(*args, check=False)

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.destroy()
