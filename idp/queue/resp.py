"""EVALSHA written and read in RESP directly, for the queue's scripts on one Redis server.

Every join is one script call, so what the client does around that round trip is a large part of a
join's CPU: redis-py's generic command path encodes every argument through its encoder, takes a
connection from its pool under a lock, and parses the reply through a general parser. Here the command's
fixed part (``EVALSHA <sha> <numkeys>``) is encoded once per script and each event's keys once per
event; the arguments are framed with one ``%`` format each; the reply is read with one ``recv`` in the
common case and parsed by a small RESP2 reader. Connections are redis-py's own (same address, timeouts,
credentials, database and TLS as the client's pool, made by the pool's connection class), kept in a
free list of this caller's.

The answers are the ones redis-py gives for the same call (bytes for bulk strings, ints for integers,
lists for arrays, None for nil) and errors raise the same exception classes (``NoScriptError``,
``ResponseError``; ``ConnectionError``/``TimeoutError`` when the server cannot be reached). As redis-py
does, a call that finds its pooled connection closed by the server (a restarted Redis) is sent once
more on a new connection (the other idle connections are dropped too); a timeout is never retried (the
script may have run). Works under gevent: the
sockets are the standard library's, which gevent's worker makes cooperative.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# A connection idle for longer than this is replaced rather than trusted (redis-py pings it instead).
IDLE_SECONDS = 30.0
_CRLF = b"\r\n"
_READ_SIZE = 65536


class _ClosedBeforeReply(Exception):
    """The connection failed before any reply came: on a pooled connection, the server had closed it."""


class ProtocolError(RedisConnectionError):
    """The server's reply could not be read as RESP2."""


def supported(client: Any) -> bool:
    """Whether ``client`` is a plain single-server client (plain pool, bytes answers) this caller can talk for."""
    if type(client) is not redis.Redis:
        return False
    pool = client.connection_pool
    if type(pool) is not redis.ConnectionPool:
        return False
    return not pool.connection_kwargs.get("decode_responses")


def _bulk(value: Any) -> bytes:
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, bool):
        raise TypeError("a script argument cannot be a bool")
    elif isinstance(value, int | float):
        data = repr(value).encode()
    else:
        raise TypeError(f"a script argument cannot be a {type(value).__name__}")
    return b"$%d\r\n%s\r\n" % (len(data), data)


class _Reader:
    """A RESP2 reply read from one socket, in as few ``recv`` calls as it takes."""

    __slots__ = ("buf", "pos", "sock")

    def __init__(self, sock: Any, first: bytes) -> None:
        self.sock = sock
        self.buf = first
        self.pos = 0

    def _more(self) -> None:
        chunk = self.sock.recv(_READ_SIZE)
        if not chunk:
            raise RedisConnectionError("Connection closed by server.")
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0

    def _line(self) -> bytes:
        while True:
            end = self.buf.find(_CRLF, self.pos)
            if end >= 0:
                line = self.buf[self.pos : end]
                self.pos = end + 2
                return line
            self._more()

    def value(self) -> Any:
        line = self._line()
        if not line:
            raise ProtocolError("Empty reply line from Redis.")
        kind = line[:1]
        if kind == b":":
            return int(line[1:])
        if kind == b"$":
            size = int(line[1:])
            if size < 0:
                return None
            while len(self.buf) - self.pos < size + 2:
                self._more()
            data = self.buf[self.pos : self.pos + size]
            self.pos += size + 2
            return data
        if kind == b"*":
            count = int(line[1:])
            if count < 0:
                return None
            return [self.value() for _ in range(count)]
        if kind == b"+":
            return line[1:]
        if kind == b"-":
            return BaseParser.parse_error(line[1:].decode("utf-8", "replace"))  # type: ignore[no-untyped-call]
        raise ProtocolError(f"Unexpected reply type {kind!r} from Redis.")


def _raise_errors(value: Any) -> Any:
    # An error reply raises; an error nested in an array (not produced by a script) would stay a value,
    # as redis-py leaves it.
    if isinstance(value, Exception):
        raise value
    return value


class ScriptCaller:
    """Calls scripts by SHA on the server ``client`` talks to; see the module docstring."""

    def __init__(self, client: Any) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        # RESP2 on these connections whatever the client speaks: the reader below reads RESP2 only, and
        # the scripts' answers read the same in both (nil is None, integers are ints, strings are bytes).
        # (Maintenance notifications are RESP3 pushes; these connections do not ask for them.)
        self._connection_kwargs = {
            key: value for key, value in pool.connection_kwargs.items() if not key.startswith("maint_notifications")
        }
        self._connection_kwargs["protocol"] = 2
        self._free: list[tuple[Any, float]] = []
        self._pid = os.getpid()
        self._heads: dict[tuple[str, int, int], bytes] = {}
        self._keys: dict[tuple[str, ...], bytes] = {}

    def _head(self, sha: str, numkeys: int, numargs: int) -> bytes:
        head = self._heads.get((sha, numkeys, numargs))
        if head is None:
            head = b"*%d\r\n$7\r\nEVALSHA\r\n%s%s" % (3 + numkeys + numargs, _bulk(sha), _bulk(numkeys))
            self._heads[(sha, numkeys, numargs)] = head
        return head

    def _framed_keys(self, script_keys: Sequence[str]) -> bytes:
        framed_key = tuple(script_keys)
        framed = self._keys.get(framed_key)
        if framed is None:
            framed = b"".join(_bulk(k) for k in script_keys)
            if len(self._keys) >= 4096:
                self._keys.clear()
            self._keys[framed_key] = framed
        return framed

    def _connection(self) -> tuple[Any, bool]:
        """A connected connection, and whether it was used before (so may have been closed by the server)."""
        if os.getpid() != self._pid:  # forked: the parent's sockets are not ours to use
            self._free = []
            self._pid = os.getpid()
        now = time.monotonic()
        while self._free:
            conn, last_used = self._free.pop()
            if now - last_used <= IDLE_SECONDS and conn._sock is not None:
                return conn, True
            conn.disconnect()
        conn = self._connection_class(**self._connection_kwargs)
        conn.connect()
        return conn, False

    def evalsha(self, sha: str, script_keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``EVALSHA sha len(keys) *keys *args``: the script's answer, or its error raised."""
        packed = b"".join(
            (self._head(sha, len(script_keys), len(args)), self._framed_keys(script_keys), *map(_bulk, args))
        )
        for attempt in range(2):
            conn, reused = self._connection()
            try:
                value = self._round_trip(conn, packed)
            except _ClosedBeforeReply as exc:
                conn.disconnect()
                if reused and attempt == 0:
                    # A pooled connection the server had closed (a restarted Redis): the other idle ones
                    # were most likely closed with it. Nothing ran; send once more on a new connection.
                    self.close()
                    continue
                raise RedisConnectionError(str(exc)) from exc
            except BaseException:
                conn.disconnect()  # its state is unknown (a timeout, a broken reply, an interrupted greenlet)
                raise
            self._free.append((conn, time.monotonic()))
            return _raise_errors(value)
        raise AssertionError("not reached: the loop returns or raises")

    @staticmethod
    def _round_trip(conn: Any, packed: bytes) -> Any:
        sock = conn._sock
        try:
            sock.sendall(packed)
            first = sock.recv(_READ_SIZE)
        except TimeoutError as exc:
            raise RedisTimeoutError("Timeout reading from Redis.") from exc
        except OSError as exc:
            raise _ClosedBeforeReply(f"Error talking to Redis: {type(exc).__name__}.") from exc
        if not first:
            raise _ClosedBeforeReply("Connection closed by server.")
        try:
            return _Reader(sock, first).value()
        except TimeoutError as exc:
            raise RedisTimeoutError("Timeout reading from Redis.") from exc
        except RedisConnectionError:
            raise
        except OSError as exc:
            raise RedisConnectionError(f"Error reading from Redis: {type(exc).__name__}.") from exc

    def close(self) -> None:
        """Close the connections this caller holds."""
        free, self._free = self._free, []
        for conn, _ in free:
            conn.disconnect()
