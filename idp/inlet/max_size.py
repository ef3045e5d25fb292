"""The MaxSize inlet: keep at most ``max_size`` sessions active on the protected site.

The protected site reports who left: ``{"exited": n}`` and/or the request ids of ``completed`` and
``abandoned`` sessions. Those sessions are finished, then the serving counter moves on by
``min(freed, max_size - active)`` and never by a negative amount, where ``freed`` is ``exited`` when
given and otherwise the number of sessions actually finished. Unlike the AWS sample, nothing is kept
between calls (it counted finished sessions in a module global), every listed id is processed, and a
full site (capacity 0 or less) admits nobody.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from idp.errors import ConflictError, NotFoundError, ValidationError

MAX_IDS = 1000
MAX_EXITED = 1_000_000_000


class MaxSizeNotConfiguredError(ConflictError):
    code = "max_size_not_configured"
    message = "The MaxSize inlet is not configured for this event (set max_size through the inlet settings)."


@dataclass(frozen=True)
class MaxSizeReport:
    updated: int
    not_updated: int
    freed: int
    active: int
    capacity: int
    increment: int
    serving: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MaxSizeRequest:
    exited: int | None
    completed: list[str]
    abandoned: list[str]

    @classmethod
    def parse(cls, data: dict[str, Any]) -> MaxSizeRequest:
        unknown = set(data) - {"exited", "completed", "abandoned"}
        if unknown:
            raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.", code="unknown_field")
        exited = data.get("exited")
        if exited is not None and (
            isinstance(exited, bool) or not isinstance(exited, int) or not 0 <= exited <= MAX_EXITED
        ):
            raise ValidationError(f"exited must be an integer from 0 to {MAX_EXITED}.", code="invalid_field")
        lists: dict[str, list[str]] = {}
        for name in ("completed", "abandoned"):
            value = data.get(name)
            if value is None:
                lists[name] = []
                continue
            if not isinstance(value, list) or len(value) > MAX_IDS or not all(isinstance(v, str) for v in value):
                raise ValidationError(f"{name} must be a list of at most {MAX_IDS} request ids.", code="invalid_field")
            lists[name] = list(dict.fromkeys(value))
        return cls(exited, lists["completed"], lists["abandoned"])


class MaxSizeInlet:
    """Stateless: every call reads what it needs (``room`` and ``tokens`` are the app's services)."""

    def __init__(self, room: Any, tokens: Any) -> None:
        self.room = room
        self.tokens = tokens

    def apply(self, event_id: str, max_size: int | None, request: MaxSizeRequest) -> MaxSizeReport:
        if max_size is None:
            raise MaxSizeNotConfiguredError()
        updated = not_updated = 0
        for status, ids in ((1, request.completed), (-1, request.abandoned)):
            for request_id in ids:
                try:
                    self.tokens.update_session(event_id, request_id, status)
                except (NotFoundError, ConflictError, ValidationError):
                    # Unknown, malformed or already finished: reported, not an error for the batch.
                    not_updated += 1
                else:
                    updated += 1
        freed = request.exited if request.exited is not None else updated
        active = int(self.tokens.active_count(event_id))
        capacity = max(0, max_size - active)
        increment = max(0, min(freed, capacity))
        if increment > 0:
            serving = self.room.increment_serving(event_id, increment)
        else:
            serving = self.room.counters(event_id, fresh=True).serving
        return MaxSizeReport(updated, not_updated, freed, active, capacity, increment, serving)
