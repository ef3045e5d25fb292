"""Random ids for every request, read from the operating system's generator a block at a time.

Every answer carries a new ``X-Request-Id`` and every join a new request id. Asking the kernel for
16 bytes each time (``os.urandom``, one ``getrandom`` system call) cost more than the rest of making the
id, so the bytes are read ``BLOCK`` at a time and handed out 16 at once: they are the same bytes
``os.urandom`` gives, each handed out once. A forked child drops its parent's block (a fork hook), so
two worker processes never hand out the same id.

Thread-safe without a lock on the common path: a block and its counter are read together, and
``itertools.count`` hands each caller its own slot.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable

ID_BYTES = 16
BLOCK = 4096
_PER_BLOCK = BLOCK // ID_BYTES

_lock = threading.Lock()
# (block, next slot): a block of os.urandom bytes and the counter of the 16-byte slots handed out from it.
_state: tuple[bytes, Callable[[], int]] = (b"", itertools.count(_PER_BLOCK).__next__)


def _refill(spent: bytes) -> None:
    global _state
    with _lock:
        if _state[0] is spent:  # another caller may have refilled meanwhile
            _state = (os.urandom(BLOCK), itertools.count().__next__)


def id_bytes() -> bytes:
    """16 random bytes from the operating system's generator, never handed out before in this process."""
    while True:
        block, take = _state
        slot = take()
        if slot < _PER_BLOCK:
            start = slot * ID_BYTES
            return block[start : start + ID_BYTES]
        _refill(block)


def id_hex() -> str:
    """32 random hexadecimal digits (what ``secrets.token_hex(16)`` gives)."""
    return id_bytes().hex()


def _forget_after_fork() -> None:
    global _state, _lock
    _lock = threading.Lock()
    _state = (b"", itertools.count(_PER_BLOCK).__next__)


os.register_at_fork(after_in_child=_forget_after_fork)
