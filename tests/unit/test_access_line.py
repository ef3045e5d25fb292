"""The access line built from a template is exactly the JSON the encoder gives for the same fields."""

from __future__ import annotations

import json
from typing import Any

import pytest

from idp import logging as idp_logging

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "request_id",
    [
        "0123456789abcdef0123456789abcdef",
        'caller "quoted" \\ id',
        "caller-id/é/\u2028",
        "",
    ],
)
@pytest.mark.parametrize("ms", [1.23, 0.0, 12345.67, None, 7])
def test_the_access_line_is_the_encoders_json(request_id: str, ms: float | None) -> None:
    line = idp_logging._access_line(request_id, "POST", "/api/assign_queue_num", 200, ms)
    assert line.endswith("\n") and line.count("\n") == 1
    parsed = json.loads(line)
    fields = {"request_id": request_id, "method": "POST", "path": "/api/assign_queue_num", "status": 200, "ms": ms}
    expected = {"ts": parsed["ts"], "level": "info", "logger": "idp.http", "msg": "request", **fields}
    assert parsed == expected
    assert line == idp_logging._encode(expected) + "\n"


def test_access_lines_are_written_in_batches_and_none_is_held_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging
    import time

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    lines = idp_logging.AccessLines()
    monkeypatch.setattr(idp_logging, "ACCESS_FLUSH_LINES", 3)
    lines.add(handler, "one\n")
    lines.add(handler, "two\n")
    assert stream.getvalue() == ""  # pending: no write per request
    lines.add(handler, "three\n")
    assert stream.getvalue() == "one\ntwo\nthree\n"  # a full batch is one write
    lines.add(handler, "four\n")
    deadline = time.monotonic() + 5 * idp_logging.ACCESS_FLUSH_SECONDS + 2
    while "four" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream.getvalue() == "one\ntwo\nthree\nfour\n"  # the flusher writes what an idle process holds
    lines.add(handler, "five\n")
    lines.close()
    assert stream.getvalue().endswith("four\nfive\n")


def _wait_for(condition, seconds: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(condition())


def test_lines_added_on_several_threads_are_each_written_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import logging
    import threading

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    lines = idp_logging.AccessLines()
    monkeypatch.setattr(idp_logging, "ACCESS_FLUSH_LINES", 7)  # full batches flush often, racing the flusher
    threads_count, per_thread = 6, 3_000

    def serve(number: int) -> None:
        for line in range(per_thread):
            lines.add(handler, f"{number}:{line}\n")

    workers = [threading.Thread(target=serve, args=(number,)) for number in range(threads_count)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    lines.close()
    written = stream.getvalue().splitlines()
    assert len(written) == threads_count * per_thread
    assert set(written) == {f"{number}:{line}" for number in range(threads_count) for line in range(per_thread)}
    for number in range(threads_count):  # each thread's lines in the order it added them
        own = [int(entry.split(":")[1]) for entry in written if entry.startswith(f"{number}:")]
        assert own == sorted(own)


def test_a_failing_stream_does_not_stop_the_flusher() -> None:
    import io
    import logging

    class Flaky(io.StringIO):
        failures = 2

        def write(self, text: str) -> int:
            if self.failures:
                self.failures -= 1
                raise OSError("log stream unavailable")
            return super().write(text)

    stream = Flaky()
    handler = logging.StreamHandler(stream)
    lines = idp_logging.AccessLines()
    lines.add(handler, "lost\n")
    assert _wait_for(lambda: stream.failures == 1)  # the flusher met the failure, and goes on
    lines.add(handler, "lost too\n")
    assert _wait_for(lambda: stream.failures == 0)
    lines.add(handler, "written\n")
    assert _wait_for(lambda: stream.getvalue() == "written\n")
    lines.close()


def test_a_forked_child_never_writes_its_parents_lines(tmp_path: Any) -> None:
    import logging
    import os

    path = tmp_path / "access.log"
    with open(path, "a", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        lines = idp_logging.AccessLines()
        lines.add(handler, "parent before\n")  # pending when the process forks
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                lines.add(handler, "child\n")
                lines.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        lines.add(handler, "parent after\n")
        lines.close()
    written = path.read_text().splitlines()
    assert sorted(written) == ["child", "parent after", "parent before"]  # each line once
    assert written.index("parent before") < written.index("parent after")


def test_the_timestamp_is_the_rounded_time_for_every_time() -> None:
    import random

    rng = random.Random(7)
    now = 1_796_000_000.0
    times = []
    for _ in range(200_000):  # mostly increasing, a few steps back, many near a rounding midpoint
        step = rng.choice((1e-7, 3e-7, 1e-6, 4.9e-4, 5e-4, 5.1e-4, 1e-3, -2e-3, rng.random() * 1e-3))
        now += step
        times.append(now)
        times.append(round(now, 3) + 0.0005)  # on or next to the midpoint itself
    for moment in times:
        assert idp_logging._timestamp(moment) == repr(round(moment, 3)), moment


def test_queued_fields_are_written_as_the_line_of_their_own_time() -> None:
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    lines = idp_logging.AccessLines()
    at = 1_800_000_000.1234
    lines.add(handler, (at, "rid-1", "GET", "/api/serving_num", 200, 0.42))
    lines.add(handler, "text\n")
    lines.add(handler, (at + 1, 'odd "id"', "POST", "/api/assign_queue_num", 503, None))
    lines.close()
    written = stream.getvalue().splitlines(keepends=True)
    assert written == [
        idp_logging._access_line("rid-1", "GET", "/api/serving_num", 200, 0.42, at=at),
        "text\n",
        idp_logging._access_line('odd "id"', "POST", "/api/assign_queue_num", 503, None, at=at + 1),
    ]
    assert json.loads(written[0])["ts"] == round(at, 3)
