"""The abuse defence as one service: rate limits, the join gate, refusal figures and decoy places.

Joins from every surface (the API, its fast path, the queue-first page, ``/authorize``) call
``guard_join`` just before they take a place; it raises the refusal (429 ``rate_limited``, 403
``challenge_required`` / ``challenge_failed``, 503 ``captcha_unavailable``) and counts it. Whether a
refused join gets that error or a decoy place (the event's "infinite queue") is the caller's answer,
from ``decoy``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from idp.abuse.captcha import PROVIDERS, CaptchaConfig, CaptchaVerifier, Verdict
from idp.abuse.challenge import (
    DEFAULT_DIFFICULTY,
    CaptchaUnavailableError,
    ChallengeFailedError,
    ChallengeRequiredError,
    Passes,
    ProofOfWork,
    Signer,
    SpentSet,
)
from idp.abuse.limits import Limiter, LimitSpec, RateLimitedError
from idp.abuse.sealing import open_captcha_secret
from idp.abuse.stores import RefusalTallies
from idp.errors import IdpError
from idp.events.service import EventConfig
from idp.targets import Outbound

log = logging.getLogger("idp.abuse")


class AbuseMetrics:
    """Prometheus counters of refusals and challenges (per event and reason; never a client address)."""

    def __init__(self) -> None:
        self.join_refusals = Counter(
            "idp_join_refusals", "Joins refused, by event and reason", ["event_id", "reason"], registry=None
        )
        self.limited = Counter("idp_rate_limited", "Calls refused by a rate limit, by limit", ["limit"], registry=None)
        self.challenges_issued = Counter(
            "idp_challenges_issued",
            "Join challenges handed out, by event and kind",
            ["event_id", "kind"],
            registry=None,
        )
        self.challenges_passed = Counter(
            "idp_challenges_passed",
            "Join challenges solved or captchas passed, by event and kind",
            ["event_id", "kind"],
            registry=None,
        )
        self.captcha_checks = Counter(
            "idp_captcha_verifications",
            "Captcha siteverify outcomes (passed, failed, unavailable, fail_open), by event and provider",
            ["event_id", "provider", "outcome"],
            registry=None,
        )
        self.limiter_errors = Counter(
            "idp_rate_limit_storage_errors", "Rate limit checks let through because the storage failed", registry=None
        )

    def all(self) -> list[Counter]:
        return [
            self.join_refusals,
            self.limited,
            self.challenges_issued,
            self.challenges_passed,
            self.captcha_checks,
            self.limiter_errors,
        ]


@dataclass(frozen=True)
class JoinAttempt:
    """What a join brings to the gate: the client's address and any proof it carries."""

    address: str
    challenge: object = None
    solution: object = None
    captcha_token: object = None
    pass_token: object = None

    @property
    def has_proof(self) -> bool:
        return bool(self.challenge or self.captcha_token or self.pass_token)


def _safe(func: Callable[[], None]) -> None:
    try:
        func()
    except Exception:  # noqa: BLE001 - counting must never fail a request
        log.warning("could not count an abuse figure")


class Defence:
    """See the module docstring."""

    def __init__(
        self,
        spec: LimitSpec,
        limiter_storage: Any,
        spent: SpentSet,
        tallies: RefusalTallies,
        secret_key: str,
        now: Callable[[], float] = time.time,
        verifier: CaptchaVerifier | None = None,
        limiter_now: Callable[[], float] = time.time,
        previous_secret_keys: Sequence[str] = (),
    ) -> None:
        """``now`` dates challenges and passes (the service clock); ``limiter_now`` is the rate limit
        storage's own clock (the ``limits`` Redis storage reads the wall clock)."""
        self.metrics = AbuseMetrics()
        self.limiter = Limiter(
            spec,
            limiter_storage,
            on_refusal=lambda name, _event: _safe(lambda: self.metrics.limited.labels(name).inc()),
            on_storage_error=lambda: _safe(self.metrics.limiter_errors.inc),
            now=limiter_now,
        )
        self.signer = Signer(secret_key)
        self.pow = ProofOfWork(self.signer, spent)
        self.passes = Passes(self.signer, spent)
        self.tallies = tallies
        self.secret_key = secret_key
        # Captcha secrets sealed under a previous IDP_SECRET_KEY still open.
        self.sealing_keys = (secret_key, *previous_secret_keys)
        self.now = now
        self.verifier = verifier or CaptchaVerifier()

    # -- limits of other calls -------------------------------------------------------------------

    def limit(self, name: str, event: EventConfig | None, address: str) -> None:
        """Count one call of ``name`` (``generate_token``); raise RateLimitedError when over."""
        override = event.rate_limits if event is not None else None
        self.limiter.hit(name, event.event_id if event is not None else None, address, override)

    def check_failures(self, name: str, address: str) -> None:
        """Refuse (429) a client that failed ``name`` too often (``token``, ``introspect``, ``admin_auth``)."""
        self.limiter.check(name, None, address)

    def count_failure(self, name: str, address: str) -> None:
        self.limiter.count(name, None, address)

    # -- the join gate ---------------------------------------------------------------------------

    def challenge_for(self, event: EventConfig, address: str) -> dict[str, object]:
        """What a client must bring with its join to this event (``{"kind": "none"}`` when nothing)."""
        gate = event.challenge
        if not gate:
            return {"kind": "none"}
        kind = str(gate.get("kind"))
        _safe(lambda: self.metrics.challenges_issued.labels(event.event_id, kind).inc())
        if kind == "proof_of_work":
            difficulty = int(gate.get("difficulty") or DEFAULT_DIFFICULTY)
            return self.pow.issue(event.event_id, address, difficulty, int(self.now()))
        provider = str(gate.get("provider"))
        return {
            "kind": "captcha",
            "provider": provider,
            "site_key": gate.get("site_key"),
            "script": PROVIDERS[provider]["script"],
            "response_field": PROVIDERS[provider]["field"],
        }

    def _refused(self, event: EventConfig, address: str, reason: str) -> None:
        _safe(lambda: self.metrics.join_refusals.labels(event.event_id, reason).inc())
        _safe(lambda: self.tallies.add(event.event_id, address))

    def guard_join(self, event: EventConfig, attempt: JoinAttempt) -> None:
        """Let a join through, or raise why not (see the module docstring); every refusal is counted."""
        gate = event.challenge
        if gate and not attempt.has_proof:
            self._refused(event, attempt.address, "challenge_required")
            raise ChallengeRequiredError(self.challenge_for(event, attempt.address))
        try:
            self.limiter.hit_one("join", event.event_id, attempt.address, event.rate_limits)
        except RateLimitedError:
            self._refused(event, attempt.address, "rate_limited")
            raise
        if gate:
            self._pass_gate(event, gate, attempt)

    def _pass_gate(self, event: EventConfig, gate: Mapping[str, Any], attempt: JoinAttempt) -> None:
        now = int(self.now())
        kind = str(gate.get("kind"))
        if attempt.pass_token and self.passes.redeem(event.event_id, attempt.address, attempt.pass_token, now):
            return
        if kind == "proof_of_work":
            difficulty = int(gate.get("difficulty") or DEFAULT_DIFFICULTY)
            if attempt.challenge and self.pow.check(
                event.event_id, attempt.address, attempt.challenge, attempt.solution, difficulty, now
            ):
                _safe(lambda: self.metrics.challenges_passed.labels(event.event_id, kind).inc())
                return
        elif kind == "captcha" and attempt.captcha_token:
            if self.verify_captcha(event, attempt.captcha_token, attempt.address):
                return
        self._refused(event, attempt.address, "challenge_failed")
        raise ChallengeFailedError(self.challenge_for(event, attempt.address))

    def captcha_config(self, event: EventConfig) -> CaptchaConfig | None:
        gate = event.challenge or {}
        if gate.get("kind") != "captcha":
            return None
        provider = str(gate.get("provider"))
        secret = open_captcha_secret(self.sealing_keys, event.event_id, str(gate.get("secret_encrypted") or ""))
        if secret is None:
            log.error("the captcha secret of an event cannot be read", extra={"event_id": event.event_id})
            secret = ""
        return CaptchaConfig(
            provider=provider,
            site_key=str(gate.get("site_key") or ""),
            secret=secret,
            verify_url=str(gate.get("verify_url") or PROVIDERS[provider]["verify_url"]),
            timeout=float(gate.get("timeout") or 3.0),
            fail_open=bool(gate.get("fail_open")),
        )

    def verify_captcha(self, event: EventConfig, token: object, address: str) -> bool:
        """True when the provider confirms ``token``; an outage lets it through only when failing open."""
        config = self.captcha_config(event)
        if config is None:
            return False
        verdict = self.verifier.verify(config, token, address) if config.secret else Verdict.UNAVAILABLE
        outcome = verdict.value
        if verdict is Verdict.UNAVAILABLE and config.fail_open:
            outcome = "fail_open"
            log.warning("captcha provider unavailable; letting the join through", extra={"event_id": event.event_id})
        _safe(lambda: self.metrics.captcha_checks.labels(event.event_id, config.provider, outcome).inc())
        if verdict is Verdict.PASSED or outcome == "fail_open":
            _safe(lambda: self.metrics.challenges_passed.labels(event.event_id, "captcha").inc())
            return True
        if verdict is Verdict.UNAVAILABLE:
            self._refused(event, address, "captcha_unavailable")
            raise CaptchaUnavailableError(retry_after=5)
        return False

    def exchange(self, event: EventConfig, address: str, form: Mapping[str, Any]) -> str:
        """A browser's solved challenge or captcha token for a single-use pass (raises ChallengeFailedError)."""
        gate = event.challenge or {}
        kind = str(gate.get("kind"))
        now = int(self.now())
        passed = False
        if kind == "proof_of_work":
            difficulty = int(gate.get("difficulty") or DEFAULT_DIFFICULTY)
            passed = self.pow.check(
                event.event_id, address, form.get("challenge"), form.get("solution"), difficulty, now
            )
            if passed:
                _safe(lambda: self.metrics.challenges_passed.labels(event.event_id, kind).inc())
        elif kind == "captcha":
            field = PROVIDERS[str(gate.get("provider"))]["field"]
            passed = self.verify_captcha(event, form.get(field) or form.get("captcha_token"), address)
        if not passed:
            self._refused(event, address, "challenge_failed")
            raise ChallengeFailedError(self.challenge_for(event, address))
        return self.passes.issue(event.event_id, address, kind, now)

    # -- the infinite queue ----------------------------------------------------------------------

    def decoy(self, event: EventConfig, queue: int, waiting: int) -> tuple[str, int, int]:
        """A place that looks real and never comes: (request id, position, entry time)."""
        position = queue + 1 + secrets.randbelow(max(50, waiting // 10 + 1))
        return self.signer.decoy_id(position), position, int(self.now())

    def decoy_position(self, request_id: object) -> int | None:
        return self.signer.decoy_position(request_id)

    def failing(self, exc: IdpError) -> bool:
        """True for refusals the infinite queue answers with a decoy (not for an outage)."""
        return isinstance(exc, RateLimitedError | ChallengeRequiredError)


def api_attempt(data: dict[str, Any], address: str) -> JoinAttempt:
    return JoinAttempt(
        address=address,
        challenge=data.get("challenge"),
        solution=data.get("solution"),
        captcha_token=data.get("captcha_token"),
    )


def guard_api_join(defence: Defence, room: Any, event: EventConfig, attempt: JoinAttempt) -> dict[str, Any] | None:
    """Raise the refusal of an API join, or return a decoy answer when the event keeps failing traffic waiting."""
    try:
        defence.guard_join(event, attempt)
    except IdpError as exc:
        if event.infinite_queue and defence.failing(exc):
            counters = room.counters(event.event_id)
            request_id, position, entry_time = defence.decoy(event, counters.queue, counters.waiting)
            return {
                "api_request_id": request_id,
                "queue_number": position,
                "entry_time": entry_time,
                "event_id": event.event_id,
            }
        raise
    return None


def build_defence(settings: Any, db: Any, store: Any, clock: Any) -> Defence:
    """The defence for these settings: limits and spent challenges on the queue's Redis, else on the database."""
    from idp.abuse.sql_storage import SqlMovingWindowStorage
    from idp.abuse.stores import RedisSpentSet, SqlSpentSet

    spec = LimitSpec.parse(getattr(settings, "rate_limits", ""))
    redis_client = getattr(store, "client", None) if settings.redis_url else None
    storage: Any
    spent: SpentSet
    if redis_client is not None:
        from limits.storage import RedisStorage, storage_from_string

        pool = getattr(redis_client, "connection_pool", None)
        if pool is not None and str(settings.redis_url).startswith(("redis://", "rediss://")):
            # The queue's own connection pool: no second set of connections to Redis.
            storage = RedisStorage("redis://", connection_pool=pool, key_prefix="idp:rl")
        else:
            # Sentinel and Cluster URLs: the limits library's own clients for them.
            storage = storage_from_string(str(settings.redis_url), key_prefix="idp:rl")
        spent = RedisSpentSet(redis_client, clock.now)
    else:
        storage = SqlMovingWindowStorage(db)
        spent = SqlSpentSet(db, clock.now)
    return Defence(
        spec,
        storage,
        spent,
        RefusalTallies(db, clock.now),
        settings.secret_key,
        now=clock.now,
        verifier=CaptchaVerifier(Outbound(bool(getattr(settings, "public_targets_only", False)))),
        previous_secret_keys=settings.secret_keys[1:],
    )
