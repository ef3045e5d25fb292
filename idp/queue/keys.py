"""Every Redis key name of the service, in one place.

All keys of one event carry the hash tag ``{event_id}`` so every script touches one cluster slot and
the store runs unchanged on Redis Cluster.
"""

from __future__ import annotations

import functools

PREFIX = "idp"


def _key(event_id: str, name: str) -> str:
    return f"{PREFIX}:q:{{{event_id}}}:{name}"


def counters(event_id: str) -> str:
    """Hash: queue, serving, tokens, expired, completed, abandoned, max_expired, last_time, last_issue."""
    return _key(event_id, "c")


def places(event_id: str) -> str:
    """Hash: 16-byte keyed hash of the request id (:mod:`idp.queue.at_rest`) -> queue position."""
    return _key(event_id, "p")


def entry_times(event_id: str) -> str:
    """Sorted set: member = entry time (epoch s), score = first position that entered at that second."""
    return _key(event_id, "t")


def issues(event_id: str) -> str:
    """Sorted set: member = "serving:issue_time", score = serving counter value."""
    return _key(event_id, "s")


def claimed(event_id: str) -> str:
    """Bitmap: bit q set once position q claimed its token."""
    return _key(event_id, "k")


def idempotency(event_id: str) -> str:
    """Hash: idempotency key -> the request id's 16-byte hash then the request id sealed (16 bytes)."""
    return _key(event_id, "i")


def serving_marks(event_id: str) -> str:
    """Sorted set: member = mark of an automatic increment already applied, score = when."""
    return _key(event_id, "m")


def pending(event_id: str) -> str:
    """Hash: 16-byte hash of a pre-queue join's request id -> "entry_id:joined_at" (kept after the draw)."""
    return _key(event_id, "w")


@functools.lru_cache(maxsize=4096)
def event_keys(event_id: str) -> tuple[str, ...]:
    """Keys in the order every script expects them (built once per event: every join names them)."""
    return (
        counters(event_id),
        places(event_id),
        entry_times(event_id),
        issues(event_id),
        claimed(event_id),
        idempotency(event_id),
    )


def lease(name: str) -> str:
    """A worker lease (string with the holder's id and a TTL)."""
    return f"{PREFIX}:lease:{name}"


def spent_challenge(nonce: str) -> str:
    """A used join challenge or pass (string with a TTL until it would have expired)."""
    return f"{PREFIX}:spent:{nonce}"
