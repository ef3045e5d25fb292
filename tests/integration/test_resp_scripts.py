"""The lean EVALSHA path (idp.queue.resp) answers exactly as redis-py's command path does, on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import NoScriptError, ResponseError

from idp.queue import resp

pytestmark = pytest.mark.integration

SCRIPTS = {
    "int": "return 42",
    "big": "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('INCRBY', KEYS[1], 0)",
    "incr": "return redis.call('INCRBY', KEYS[1], ARGV[1])",
    "bulk": "return ARGV[1]",
    "nil": "return false",
    "status": "return redis.status_reply('OK')",
    "nested": "return {ARGV[1], tonumber(ARGV[2]), {KEYS[1], false, 7}, {}}",
    "error": "return redis.error_reply('IDPBLOCK')",
    "raised": "error({err = 'IDPLOST missing'})",
    "large": "return string.rep('x', tonumber(ARGV[1]))",
}


@pytest.fixture
def client(redis_available: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_available)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def caller(client: redis.Redis) -> Iterator[resp.ScriptCaller]:
    assert resp.supported(client)
    caller = resp.ScriptCaller(client)
    yield caller
    caller.close()


def _both(
    client: redis.Redis, caller: resp.ScriptCaller, name: str, keys: list[str], args: list[Any]
) -> tuple[Any, Any]:
    sha = client.script_load(SCRIPTS[name])
    outcomes = []
    for call in (
        lambda: client.execute_command("EVALSHA", sha, len(keys), *keys, *args),  # type: ignore[no-untyped-call]
        lambda: caller.evalsha(sha, keys, args),
    ):
        try:
            outcomes.append(("value", call()))
        except ResponseError as exc:
            outcomes.append((type(exc), str(exc)))
    return outcomes[0], outcomes[1]


@pytest.mark.parametrize(
    "name,keys,args",
    [
        ("int", [], []),
        ("big", ["idp:t:{x}:n"], [2**63 - 1]),
        ("bulk", [], [b"\x00\r\n\xff raw bytes"]),
        ("bulk", [], ["text é"]),
        ("nil", [], []),
        ("status", [], []),
        ("nested", ["idp:t:{x}:k"], [b"rid", 9_007_199_254_740_993]),
        ("error", [], []),
        ("raised", ["idp:t:{x}:c"], []),
        ("large", [], [200_000]),
    ],
)
def test_answers_and_errors_match_redis_py(
    client: redis.Redis, caller: resp.ScriptCaller, name: str, keys: list[str], args: list[Any]
) -> None:
    ours, theirs = _both(client, caller, name, keys, args)
    assert ours == theirs
    # The connection goes back to the free list in a clean state: the next call reads its own answer.
    assert caller.evalsha(client.script_load(SCRIPTS["int"]), [], []) == 42


def test_an_unknown_script_raises_noscript(client: redis.Redis, caller: resp.ScriptCaller) -> None:
    with pytest.raises(NoScriptError):
        caller.evalsha("0" * 40, [], [])
    assert caller.evalsha(client.script_load(SCRIPTS["int"]), [], []) == 42


def test_a_connection_the_server_closed_is_replaced_without_an_error(
    client: redis.Redis, caller: resp.ScriptCaller
) -> None:
    sha = client.script_load(SCRIPTS["incr"])
    assert caller.evalsha(sha, ["idp:t:{x}:n"], [1]) == 1
    # The server drops every connection of this caller (as a restarted Redis does).
    assert client.client_kill_filter(_type="normal", skipme=True) >= 1
    assert caller.evalsha(sha, ["idp:t:{x}:n"], [1]) == 2  # sent once more on a new connection: counted once
    assert int(client.get("idp:t:{x}:n") or 0) == 2


def test_after_a_restart_every_idle_connection_is_replaced(client: redis.Redis, caller: resp.ScriptCaller) -> None:
    import time

    sha = client.script_load(SCRIPTS["incr"])
    idle = [caller._connection()[0] for _ in range(3)]  # three idle connections, as after a busy moment
    caller._free.extend((conn, time.monotonic()) for conn in idle)
    assert client.client_kill_filter(_type="normal", skipme=True) >= 3
    assert caller.evalsha(sha, ["idp:t:{x}:n"], [1]) == 1  # not refused because the next idle one was closed too
    assert caller.evalsha(sha, ["idp:t:{x}:n"], [1]) == 2


def test_an_unreachable_server_raises_a_connection_error() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    caller = resp.ScriptCaller(client)
    with pytest.raises(redis.exceptions.ConnectionError):
        caller.evalsha("0" * 40, [], [])


def test_cluster_and_decoding_clients_keep_redis_py() -> None:
    assert not resp.supported(redis.Redis(decode_responses=True))
    assert not resp.supported(object())


class _TrickleSocket:
    """A socket that hands its reply over a few bytes at a time."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def recv(self, _size: int) -> bytes:
        chunk, self.reply = self.reply[:3], self.reply[3:]
        return chunk


def test_a_reply_split_across_reads_is_read_whole() -> None:
    wire = b"*4\r\n$16\r\n" + bytes(range(16)) + b"\r\n:123\r\n$-1\r\n*2\r\n+OK\r\n:-5\r\n"
    sock = _TrickleSocket(wire)
    first = sock.recv(0)
    assert resp._Reader(sock, first).value() == [bytes(range(16)), 123, None, [b"OK", -5]]


def test_a_reply_cut_short_is_a_connection_error() -> None:
    sock = _TrickleSocket(b"*2\r\n:1\r\n")
    with pytest.raises(redis.exceptions.ConnectionError):
        resp._Reader(sock, sock.recv(0)).value()
