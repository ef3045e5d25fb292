"""Request ids read from the OS generator a block at a time: each handed out once, per process."""

from __future__ import annotations

import itertools
import os
import threading

import pytest

from idp import randomness
from idp.queue.engine import REQUEST_ID_RE, new_request_id
from idp.web import edge

pytestmark = pytest.mark.unit


def test_ids_are_the_generators_bytes_handed_out_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(randomness.os, "urandom", counting)
    per_block = randomness.BLOCK // randomness.ID_BYTES
    monkeypatch.setattr(randomness, "_state", (b"", itertools.count(per_block).__next__))  # no block yet
    ids = [randomness.id_bytes() for _ in range(3 * per_block + 5)]
    assert all(len(i) == randomness.ID_BYTES for i in ids)
    assert len(set(ids)) == len(ids)
    # One read of the generator per block, not one per id.
    assert reads == [randomness.BLOCK] * 4


def test_threads_never_get_the_same_id() -> None:
    found: list[bytes] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [randomness.id_bytes() for _ in range(2000)]
        with lock:
            found.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 16000
    assert len(set(found)) == len(found)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_hands_out_its_parents_next_ids() -> None:
    randomness.id_bytes()  # the parent holds a block with ids still to hand out
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write the ids it makes, then leave without running the test framework
        try:
            os.close(read_end)
            os.write(write_end, b"".join(randomness.id_bytes() for _ in range(50)))
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    child = {data[i : i + 16] for i in range(0, len(data), 16)}
    parent = {randomness.id_bytes() for _ in range(50)}
    assert len(child) == 50
    assert not child & parent


def test_request_ids_and_answer_ids_keep_their_shapes() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(REQUEST_ID_RE.match(i) for i in ids)
    assert all(i[14] == "4" and i[19] in "89ab" for i in ids)  # version 4, RFC 4122 variant
    made = edge.request_id(None)
    assert len(made) == 32 and int(made, 16) >= 0
    assert edge.request_id("caller-id-1") == "caller-id-1"
