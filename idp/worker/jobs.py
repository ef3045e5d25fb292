"""The worker: one process running the periodic jobs of every event.

Jobs, each on its own schedule: the queue-position expiry sweep (every minute), the periodic inlet,
per-minute metrics samples (and the ``waiting_room_metrics`` notification where enabled), webhook
delivery, and pruning of old bookkeeping. Several workers may run: a lease (Redis or the database) makes
one act, and every job is idempotent per period, so even two acting at once, or one restarted in the
middle of a minute, never admit twice. ``Worker.tick(now)`` runs whatever is due once, without threads
or sleeping, which is how the tests drive it with an injected clock.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from idp.events.service import EventConfig, EventNotFoundError
from idp.inlet.periodic import HealthCheck, PeriodicInlet, health_checker
from idp.notify import outbox
from idp.notify.webhooks import Poster, WebhookDeliverer, poster
from idp.queue.redis_store import RedisQueueStore
from idp.storage.models import MetricsSample, OutboxEntry, WebhookDelivery, WorkerJobStat
from idp.targets import Outbound
from idp.worker import ticks
from idp.worker.admitting import TargetHolder
from idp.worker.lease import DatabaseLease, Lease, RedisLease

if TYPE_CHECKING:
    from idp.services import Services
    from idp.storage.db import Database

T = TypeVar("T")

log = logging.getLogger("idp.worker")

DEFAULT_INTERVALS = {
    "expiry_sweep": 60.0,
    "periodic_inlet": 5.0,
    "metrics": 10.0,
    "webhooks": 1.0,
    "cleanup": 3600.0,
    "lottery_draw": 1.0,
    "targets": 1.0,
}
LEASE_TTL_MS = 30_000
KEEP_TICKS_SECONDS = 2 * 86400
KEEP_SAMPLES_SECONDS = 7 * 86400
KEEP_DELIVERIES_SECONDS = 7 * 86400
KEEP_OUTBOX_SECONDS = 14 * 86400


@dataclass
class Job:
    name: str
    interval: float
    run: Callable[[float], Any]
    next_run: float = 0.0


@dataclass
class TickReport:
    active: bool
    ran: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobStat:
    """How often a worker job ran and failed, and when it last ran."""

    job: str
    runs: int
    failures: int
    last_run_at: int


def job_stats(db: Database) -> list[JobStat]:
    """The worker's job statistics, by job name (for ``/metrics``)."""
    with db.session(readonly=True) as session:
        rows = session.execute(select(WorkerJobStat).order_by(WorkerJobStat.job)).scalars()
        return [JobStat(row.job, row.runs, row.failures, row.last_run_at) for row in rows]


def active_tokens(services: Services, event_id: str, now: int) -> int:
    """Active sessions of an event."""
    return int(services.tokens.active_count(event_id))


def iter_events(services: Services, page: int = 200) -> Iterator[EventConfig]:
    after: str | None = None
    while True:
        batch = services.events.list(limit=page, after=after)
        yield from batch
        if len(batch) < page:
            return
        after = batch[-1].event_id


def default_lease(services: Services, holder: str, ttl_ms: int) -> Lease:
    if isinstance(services.store, RedisQueueStore):
        return RedisLease(services.store.client, holder, ttl_ms)
    return DatabaseLease(services.db, services.clock, holder, ttl_ms)


def _per_event(items: Iterable[tuple[str, T]], fn: Callable[[T], Any]) -> dict[str, Any]:
    """``fn`` of each event's item, by event id. An event deleted meanwhile is left out; one that fails is
    logged and the others go on, then the job fails with their count."""
    results: dict[str, Any] = {}
    errors = 0
    for event_id, item in items:
        try:
            results[event_id] = fn(item)
        except EventNotFoundError:
            continue  # the event was deleted; its settings stay harmless
        except Exception:  # noqa: BLE001 - one broken event must not stop the others
            log.exception("worker job failed for an event", extra={"event_id": event_id})
            errors += 1
    if errors:
        raise RuntimeError(f"{errors} event(s) failed")
    return results


class Worker:
    def __init__(
        self,
        services: Services,
        *,
        holder: str | None = None,
        lease: Lease | None = None,
        lease_ttl_ms: int = LEASE_TTL_MS,
        health_check: HealthCheck | None = None,
        post: Poster | None = None,
        intervals: dict[str, float] | None = None,
    ) -> None:
        self.services = services
        self.db = services.db
        self.clock = services.clock
        self.holder = holder or f"{uuid.uuid4().hex[:12]}"
        self.lease = lease or default_lease(services, self.holder, lease_ttl_ms)
        self.inlets = services.inlets
        # In production the target's name is checked again at each request (DNS may have changed).
        outbound = Outbound(services.settings.public_targets_only)
        health_check = health_check or health_checker(outbound)
        self.periodic = PeriodicInlet(services.db, services.room, health_check)
        self.deliverer = WebhookDeliverer(services.db, services.settings.secret_keys, post or poster(outbound))
        chosen = {**DEFAULT_INTERVALS, **(intervals or {})}
        self.jobs = [
            Job("expiry_sweep", chosen["expiry_sweep"], self.run_sweep),
            Job("periodic_inlet", chosen["periodic_inlet"], self.run_periodic),
            Job("metrics", chosen["metrics"], self.run_metrics),
            Job("webhooks", chosen["webhooks"], self.run_webhooks),
            Job("cleanup", chosen["cleanup"], self.run_cleanup),
            Job("lottery_draw", chosen["lottery_draw"], self.run_draws),
            Job("targets", chosen["targets"], self.run_targets),
        ]
        self.targets = TargetHolder(services.room)
        self.health_check = health_check
        self._stop = threading.Event()
        self._active = False

    # --- the loop -------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> TickReport:
        """Run every job that is due at ``now`` (default: the clock), if this worker holds the lease."""
        now = self.clock.now() if now is None else now
        if not self.lease.acquire():
            if self._active:
                log.warning("worker lost its lease", extra={"holder": self.holder})
            self._active = False
            return TickReport(active=False)
        if not self._active:
            log.info("worker holds the lease", extra={"holder": self.holder})
        self._active = True
        report = TickReport(active=True)
        for job in self.jobs:
            if now < job.next_run or self._stop.is_set():
                continue
            job.next_run = now + job.interval
            try:
                report.results[job.name] = job.run(now)
            except Exception as exc:  # noqa: BLE001 - one failing job must not stop the others
                log.exception("worker job failed", extra={"job": job.name})
                report.failed.append(job.name)
                self._record_stat(job.name, now, type(exc).__name__)
            else:
                self._record_stat(job.name, now, None)
            report.ran.append(job.name)
        return report

    def stop(self, *_args: Any) -> None:
        self._stop.set()

    def run_forever(self, poll_seconds: float = 1.0) -> None:
        """Tick until SIGTERM or SIGINT; the current job finishes, then the lease is released."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        log.info("worker started", extra={"holder": self.holder})
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - a lost database or Redis: retry on the next tick
                    log.exception("worker tick failed")
                self._stop.wait(max(0.05, poll_seconds - (time.monotonic() - started)))
        finally:
            try:
                self.lease.release()
            except Exception:  # noqa: BLE001 - the lease expires on its own
                log.warning("lease release failed")
            log.info("worker stopped", extra={"holder": self.holder})

    def _record_stat(self, job: str, now: float, error: str | None) -> None:
        try:
            with self.db.session() as session:
                builder = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
                session.execute(
                    builder(WorkerJobStat)
                    .values(job=job, runs=0, failures=0, last_run_at=0, last_error=None)
                    .on_conflict_do_nothing()
                )
                row = session.get(WorkerJobStat, job, with_for_update=True, populate_existing=True)
                assert row is not None
                row.runs += 1
                row.last_run_at = int(now)
                if error is not None:
                    row.failures += 1
                    row.last_error = error
        except Exception:  # noqa: BLE001 - statistics must never break a job
            log.warning("could not record job statistics", extra={"job": job})

    # --- jobs -----------------------------------------------------------------------------------

    def _each_event(self, fn: Callable[[EventConfig], Any]) -> dict[str, Any]:
        return _per_event(((event.event_id, event) for event in iter_events(self.services)), fn)

    def run_sweep(self, now: float) -> dict[str, Any]:
        """Expire unclaimed admitted positions; report automatic serving-counter increments."""

        def sweep(event: EventConfig) -> int:
            if not event.enable_queue_position_expiry:
                return 0
            result = self.services.room.sweep(event.event_id)
            if result.serving > result.previous_serving:
                with self.db.session() as session:
                    outbox.record(
                        session,
                        event.event_id,
                        "automatic_serving_counter_incr",
                        {
                            "event_id": event.event_id,
                            "previous_serving_counter_position": result.previous_serving,
                            "increment_by": result.serving - result.previous_serving,
                            "current_serving_counter_position": result.serving,
                        },
                        now=now,
                    )
            return int(result.serving - result.previous_serving)

        return self._each_event(sweep)

    def run_periodic(self, now: float) -> dict[str, Any]:
        enabled = ((config.event_id, config) for config in self.inlets.all() if config.periodic.enabled)
        return _per_event(enabled, lambda config: self.periodic.run(config, now))

    def run_metrics(self, now: float) -> dict[str, Any]:
        """Write this minute's sample per event (once), and the metrics notification where enabled."""
        minute = int(now // 60) * 60
        settings = {c.event_id: c for c in self.inlets.all()}

        def sample(event: EventConfig) -> bool:
            eid = event.event_id
            with self.db.session(readonly=True) as session:
                if session.get(MetricsSample, (eid, minute)) is not None:
                    return False
            counters = self.services.room.counters(eid, fresh=True)
            active = active_tokens(self.services, eid, int(now))
            with self.db.session() as session:
                builder = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
                inserted = (
                    cast(
                        "CursorResult[Any]",
                        session.execute(
                            builder(MetricsSample)
                            .values(
                                event_id=eid,
                                minute=minute,
                                queue=counters.queue,
                                serving=counters.serving,
                                waiting=counters.waiting,
                                tokens=counters.tokens,
                                expired=counters.expired,
                                completed=counters.completed,
                                abandoned=counters.abandoned,
                                active=active,
                            )
                            .on_conflict_do_nothing()
                        ),
                    ).rowcount
                    == 1
                )
                config = settings.get(eid)
                if inserted and config is not None and config.metrics_notifications:
                    outbox.record(
                        session,
                        eid,
                        "waiting_room_metrics",
                        {
                            "event_id": eid,
                            "num_active_tokens": active,
                            "total_num_tokens": counters.tokens,
                            "queue_counter": counters.queue,
                            "serving_number": counters.serving,
                            "completed_sessions": counters.completed,
                            "abandoned_sessions": counters.abandoned,
                        },
                        now=now,
                    )
            return bool(inserted)

        return self._each_event(sample)

    def run_draws(self, now: float) -> dict[str, Any]:
        """Draw every pre-queue whose opening has come (the web processes may have drawn it first)."""

        def draw(event: EventConfig) -> bool:
            if event.opens_at is None or event.prequeue_opens_at is None or now < event.opens_at:
                return False
            return bool(self.services.room.ensure_drawn(event))

        return self._each_event(draw)

    def run_targets(self, now: float) -> dict[str, Any]:
        """Admit waiting visitors to hold each event's ``max_active`` / ``max_per_minute`` targets."""
        inlets = {c.event_id: c for c in self.inlets.all()}

        def hold(event: EventConfig) -> str:
            if not event.has_targets and event.mode != "passthrough":
                return "off"
            periodic = inlets[event.event_id].periodic if event.event_id in inlets else None
            if periodic is not None and periodic.paused:
                return "paused"
            healthy = True
            if periodic is not None and periodic.health_url:
                healthy = self.health_check(periodic.health_url, periodic.health_timeout)
            return self.targets.tick(event, now, healthy=healthy).action

        return self._each_event(hold)

    def run_webhooks(self, now: float) -> Any:
        return self.deliverer.deliver_due(now)

    def run_cleanup(self, now: float) -> None:
        cutoff = int(now)
        ticks.prune(self.db, cutoff - KEEP_TICKS_SECONDS)
        with self.db.session() as session:
            session.execute(delete(MetricsSample).where(MetricsSample.minute < cutoff - KEEP_SAMPLES_SECONDS))
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.at < cutoff - KEEP_DELIVERIES_SECONDS))
            session.execute(delete(OutboxEntry).where(OutboxEntry.created_at < cutoff - KEEP_OUTBOX_SECONDS))


# --- the ``idp worker`` command ---------------------------------------------------------------------


def _configure(parser: Any) -> None:
    parser.add_argument("--once", action="store_true", help="run the due jobs once and exit")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between ticks (default 1)")
    parser.add_argument(
        "--lease-ms",
        type=int,
        default=LEASE_TTL_MS,
        help="how long the lease outlives a worker that stopped renewing it (default 30000)",
    )


def _run(args: Any, settings: Any) -> int:
    from idp.app import build_services
    from idp.logging import configure_logging
    from idp.storage.db import require_current_schema

    configure_logging(settings.log_level)
    from idp.queue.cli import warn_without_persistence

    warn_without_persistence(settings)
    services = build_services(settings)
    try:
        require_current_schema(services.db)
        worker = Worker(services, lease_ttl_ms=max(500, args.lease_ms))
        if args.once:
            report = worker.tick()
            print(f"active={report.active} ran={','.join(report.ran)} failed={','.join(report.failed)}")
            return 1 if report.failed else 0
        worker.run_forever(poll_seconds=max(0.05, args.poll))
        return 0
    finally:
        services.close()


def _demo_lines(settings: Any, services: Any, event: Any, base: str) -> list[str]:
    return [
        f"  Dashboard: {base}/admin/dashboard/{event.event_id} (paste an admin key)",
        "  Worker:    run `idp worker` beside the server for the expiry sweep, inlets and webhooks",
        f"  Metrics:   curl -s {base}/metrics",
    ]


def _register() -> None:
    from idp.cli import _DEMO_HOOKS, register

    register(
        "worker",
        _configure,
        _run,
        help="run the periodic jobs (expiry sweep, inlets, metrics, webhooks); a lease keeps one active",
    )
    if _demo_lines not in _DEMO_HOOKS:
        _DEMO_HOOKS.append(_demo_lines)


_register()
