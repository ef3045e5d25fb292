"""Per-event inlet settings: the periodic inlet, the MaxSize inlet and the metrics notification switch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from idp.clock import Clock
from idp.errors import ValidationError
from idp.storage.db import Database
from idp.storage.models import InletSettings
from idp.targets import check_outbound
from idp.validation import CALLABLE_URL_RE

MAX_INCREMENT = 1_000_000_000
MAX_SIZE = 1_000_000_000
MAX_TIME = 2**40
URL_RE = CALLABLE_URL_RE


@dataclass(frozen=True)
class PeriodicConfig:
    enabled: bool = False
    increment_by: int = 10
    start_time: int | None = None
    end_time: int | None = None
    health_url: str | None = None
    health_timeout: float = 2.0
    paused: bool = False

    def in_window(self, now: float) -> bool:
        """Inside ``[start_time, end_time)``; no start means now, no end means forever."""
        if self.start_time is not None and now < self.start_time:
            return False
        return self.end_time is None or now < self.end_time


@dataclass(frozen=True)
class InletConfig:
    event_id: str
    periodic: PeriodicConfig = dataclasses.field(default_factory=PeriodicConfig)
    max_size: int | None = None
    metrics_notifications: bool = False
    updated_at: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "periodic": dataclasses.asdict(self.periodic),
            "max_size": self.max_size,
            "metrics_notifications": self.metrics_notifications,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_row(cls, row: InletSettings) -> InletConfig:
        return cls(
            event_id=row.event_id,
            periodic=PeriodicConfig(
                enabled=row.periodic_enabled,
                increment_by=int(row.increment_by),
                start_time=row.start_time,
                end_time=row.end_time,
                health_url=row.health_url,
                health_timeout=float(row.health_timeout),
                paused=row.paused,
            ),
            max_size=row.max_size,
            metrics_notifications=row.metrics_notifications,
            updated_at=row.updated_at,
        )


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false.", code="invalid_field")
    return value


def _int(value: object, name: str, low: int, high: int, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        suffix = " or null" if nullable else ""
        raise ValidationError(f"{name} must be an integer from {low} to {high}{suffix}.", code="invalid_field")
    return value


def _unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ValidationError(f"Unknown field(s) in {where}: {', '.join(sorted(unknown))}.", code="unknown_field")


def clean_update(current: InletConfig, data: object) -> InletConfig:
    """Apply a partial update (the shape of ``InletConfig.to_dict``) after validating every field."""
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.", code="invalid_body")
    _unknown(data, {"periodic", "max_size", "metrics_notifications"}, "the body")
    periodic = current.periodic
    if "periodic" in data:
        section = data["periodic"]
        if not isinstance(section, dict):
            raise ValidationError("periodic must be an object.", code="invalid_field")
        _unknown(section, {f.name for f in dataclasses.fields(PeriodicConfig)}, "periodic")
        changes: dict[str, Any] = {}
        for name in ("enabled", "paused"):
            if name in section:
                changes[name] = _bool(section[name], f"periodic.{name}")
        if "increment_by" in section:
            changes["increment_by"] = _int(section["increment_by"], "periodic.increment_by", 1, MAX_INCREMENT)
        for name in ("start_time", "end_time"):
            if name in section:
                changes[name] = _int(section[name], f"periodic.{name}", 0, MAX_TIME, nullable=True)
        if "health_url" in section:
            url = section["health_url"]
            if url is not None and url != "" and (not isinstance(url, str) or not URL_RE.match(url)):
                raise ValidationError("periodic.health_url must be an http(s) URL or null.", code="invalid_field")
            changes["health_url"] = url or None
        if "health_timeout" in section:
            timeout = section["health_timeout"]
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.1 <= timeout <= 30:
                raise ValidationError(
                    "periodic.health_timeout must be a number of seconds from 0.1 to 30.", code="invalid_field"
                )
            changes["health_timeout"] = float(timeout)
        periodic = dataclasses.replace(periodic, **changes)
        start, end = periodic.start_time, periodic.end_time
        if start is not None and end is not None and end <= start:
            raise ValidationError("periodic.end_time must be after periodic.start_time.", code="invalid_field")
    max_size = current.max_size
    if "max_size" in data:
        max_size = _int(data["max_size"], "max_size", 1, MAX_SIZE, nullable=True)
    metrics = current.metrics_notifications
    if "metrics_notifications" in data:
        metrics = _bool(data["metrics_notifications"], "metrics_notifications")
    return dataclasses.replace(current, periodic=periodic, max_size=max_size, metrics_notifications=metrics)


class InletService:
    """Read and change inlet settings; an event without a row has the defaults (nothing automatic)."""

    def __init__(self, db: Database, clock: Clock, *, public_targets_only: bool = False) -> None:
        self.db = db
        self.clock = clock
        # Production (unless IDP_ALLOW_PRIVATE_TARGETS): health URLs must resolve to public addresses.
        self.public_targets_only = public_targets_only

    def get(self, event_id: str) -> InletConfig:
        with self.db.session(readonly=True) as session:
            row = session.get(InletSettings, event_id)
            return InletConfig(event_id=event_id) if row is None else InletConfig.from_row(row)

    def all(self) -> list[InletConfig]:
        with self.db.session(readonly=True) as session:
            rows = session.execute(select(InletSettings).order_by(InletSettings.event_id)).scalars()
            return [InletConfig.from_row(row) for row in rows]

    def update(self, event_id: str, data: object) -> InletConfig:
        with self.db.session() as session:
            row = session.get(InletSettings, event_id, with_for_update=True)
            current = InletConfig(event_id=event_id) if row is None else InletConfig.from_row(row)
            new = clean_update(current, data)
            health = new.periodic.health_url
            if self.public_targets_only and health and health != current.periodic.health_url:
                check_outbound(health, "periodic.health_url")
            if row is None:
                row = InletSettings(event_id=event_id)
                session.add(row)
            p = new.periodic
            row.periodic_enabled = p.enabled
            row.increment_by = p.increment_by
            row.start_time = p.start_time
            row.end_time = p.end_time
            row.health_url = p.health_url
            row.health_timeout = p.health_timeout
            row.paused = p.paused
            row.max_size = new.max_size
            row.metrics_notifications = new.metrics_notifications
            row.updated_at = int(self.clock.now())
            session.flush()
            return InletConfig.from_row(row)

    def set_paused(self, event_id: str, paused: bool) -> InletConfig:
        return self.update(event_id, {"periodic": {"paused": paused}})
