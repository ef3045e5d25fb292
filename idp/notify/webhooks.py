"""Webhook subscriptions and the in-order, at-least-once delivery of the outbox to them.

Each subscription keeps a cursor: the id of the last outbox entry of its event it has delivered (or
skipped because of its kinds filter). Delivery sends the entry after the cursor and moves the cursor
only after a 2xx, so entry N+1 never goes out before N succeeded; a failure schedules a retry with
exponential backoff (capped) and stops that subscriber until then. A crash between a 2xx and the cursor
update sends the entry again: receivers deduplicate by the notification ``id``.

Signature: ``X-Idp-Signature: sha256=<hex HMAC-SHA256 of "<X-Idp-Timestamp>.<body>">`` with the
subscriber's secret, which is shown once at creation and kept sealed (:class:`idp.crypto.Aead` under
``IDP_SECRET_KEY``, or a previous secret until it is sealed again) because signing needs it.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, func, select, update

from idp.clock import Clock
from idp.crypto import Aead, DecryptionError, Secrets, secret_list
from idp.errors import NotFoundError, ValidationError
from idp.notify import outbox
from idp.notify.outbox import KIND_RE
from idp.storage.db import Database
from idp.storage.models import OutboxEntry, WebhookDelivery, WebhookSubscription
from idp.targets import Outbound, check_outbound
from idp.validation import CALLABLE_URL_RE

log = logging.getLogger("idp.webhooks")

URL_RE = CALLABLE_URL_RE
MAX_SUBSCRIPTIONS_PER_EVENT = 50
BACKOFF_BASE_SECONDS = 2
BACKOFF_CAP_SECONDS = 600
REQUEST_TIMEOUT_SECONDS = 5.0
USER_AGENT = "idp-webhooks/1"


class WebhookNotFoundError(NotFoundError):
    code = "webhook_not_found"
    message = "No such webhook subscription for this event."


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Idp-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Check a signature in constant time (what a receiver does)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff(attempts: int) -> int:
    """Seconds to wait after ``attempts`` consecutive failures: 2, 4, 8, ... capped at 10 minutes."""
    return int(min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, min(attempts - 1, 30))))


class SecretCipher:
    """Subscriber secrets at rest: :class:`idp.crypto.Aead` under the service secrets, bound to the subscription.

    Secrets stored by earlier releases (``nonce || ciphertext`` under one key derived from the secret)
    still open; :meth:`needs_resealing` says when to store them again in the current form.
    """

    def __init__(self, secret_keys: Secrets) -> None:
        secrets_ = secret_list(secret_keys)
        self._aead = Aead(secrets_, "webhook subscriber secrets")
        self._legacy = [
            AESGCM(
                HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"idp webhook subscriber secrets").derive(
                    secret.encode("utf-8") if isinstance(secret, str) else secret
                )
            )
            for secret in secrets_
        ]

    def encrypt(self, plaintext: str, subscription_id: str) -> bytes:
        return self._aead.seal(plaintext.encode("utf-8"), subscription_id.encode("utf-8"))

    def unseal(self, blob: bytes, subscription_id: str) -> tuple[str, bool]:
        """The secret, and True when it should be sealed again under the current service secret."""
        aad = subscription_id.encode("utf-8")
        if self._aead.is_sealed(blob):
            try:
                return self._aead.open(blob, aad).decode("utf-8"), self._aead.needs_resealing(blob)
            except DecryptionError:
                pass  # an earlier release's random nonce may start like a sealed value
        for legacy in self._legacy:
            try:
                return legacy.decrypt(blob[:12], blob[12:], aad).decode("utf-8"), True
            except InvalidTag:
                continue
        raise InvalidTag()

    def decrypt(self, blob: bytes, subscription_id: str) -> str:
        """The subscriber's secret; InvalidTag when no configured secret opens it."""
        return self.unseal(blob, subscription_id)[0]

    def needs_resealing(self, blob: bytes, subscription_id: str) -> bool:
        """True for a secret stored in the earlier format or under a previous service secret."""
        return self.unseal(blob, subscription_id)[1]


def _public(row: WebhookSubscription) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": row.event_id,
        "url": row.url,
        "kinds": list(row.kinds or []),
        "active": row.active,
        "created_at": row.created_at,
        "cursor": row.cursor,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at or None,
        "last_error": row.last_error,
        "last_delivered_at": row.last_delivered_at,
    }


def _delivery(row: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "notification_id": row.outbox_id,
        "kind": row.kind,
        "attempt": row.attempt,
        "ok": row.ok,
        "status_code": row.status_code,
        "error": row.error,
        "at": row.at,
    }


def reseal(db: Database, cipher: SecretCipher, subscription_id: str, blob: bytes, secret: str) -> None:
    """Store a subscriber secret opened under a previous service secret (or format) under the current one."""
    with db.session() as session:
        session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == subscription_id, WebhookSubscription.secret_encrypted == blob)
            .values(secret_encrypted=cipher.encrypt(secret, subscription_id))
        )


class WebhookService:
    """Subscriptions of an event, through the admin API."""

    def __init__(self, db: Database, clock: Clock, secret_keys: Secrets, *, public_targets_only: bool = False) -> None:
        self.db = db
        self.clock = clock
        self.cipher = SecretCipher(secret_keys)
        # Production (unless IDP_ALLOW_PRIVATE_TARGETS): subscribers must resolve to public addresses.
        self.public_targets_only = public_targets_only

    def create(self, event_id: str, data: object) -> tuple[dict[str, Any], str]:
        """Subscribe; returns the subscription and its signing secret (never shown again)."""
        if not isinstance(data, dict):
            raise ValidationError("The body must be a JSON object.", code="invalid_body")
        unknown = set(data) - {"url", "kinds", "active"}
        if unknown:
            raise ValidationError(f"Unknown field(s): {', '.join(sorted(unknown))}.", code="unknown_field")
        url = data.get("url")
        if not isinstance(url, str) or not URL_RE.match(url):
            raise ValidationError("url must be an absolute http(s) URL.", code="invalid_field")
        if self.public_targets_only:
            check_outbound(url, "url")
        kinds = data.get("kinds")
        kinds = [] if kinds is None else kinds
        if (
            not isinstance(kinds, list)
            or len(kinds) > 20
            or not all(isinstance(k, str) and KIND_RE.match(k) for k in kinds)
        ):
            raise ValidationError("kinds must be a list of notification kinds.", code="invalid_field")
        active = data.get("active", True)
        if not isinstance(active, bool):
            raise ValidationError("active must be true or false.", code="invalid_field")
        subscription_id = "wh_" + secrets.token_hex(12)
        secret = "whsec_" + secrets.token_urlsafe(32)
        with self.db.session() as session:
            count = session.execute(
                select(func.count()).select_from(WebhookSubscription).where(WebhookSubscription.event_id == event_id)
            ).scalar_one()
            if count >= MAX_SUBSCRIPTIONS_PER_EVENT:
                raise ValidationError(
                    f"An event has at most {MAX_SUBSCRIPTIONS_PER_EVENT} webhook subscriptions.",
                    code="too_many_webhooks",
                )
            row = WebhookSubscription(
                id=subscription_id,
                event_id=event_id,
                url=url,
                secret_encrypted=self.cipher.encrypt(secret, subscription_id),
                kinds=list(dict.fromkeys(kinds)),
                active=active,
                created_at=int(self.clock.now()),
                # A new subscriber receives what happens from now on.
                cursor=outbox.last_id(session, event_id),
                attempts=0,
                next_attempt_at=0,
            )
            session.add(row)
            session.flush()
            return _public(row), secret

    def list(self, event_id: str) -> list[dict[str, Any]]:
        with self.db.session(readonly=True) as session:
            rows = session.execute(
                select(WebhookSubscription)
                .where(WebhookSubscription.event_id == event_id)
                .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
            ).scalars()
            return [_public(row) for row in rows]

    def get(self, event_id: str, subscription_id: object) -> dict[str, Any]:
        with self.db.session(readonly=True) as session:
            return _public(self._row(session, event_id, subscription_id))

    @staticmethod
    def _row(session: Any, event_id: str, subscription_id: object) -> WebhookSubscription:
        if not isinstance(subscription_id, str) or len(subscription_id) > 40:
            raise WebhookNotFoundError()
        row = session.get(WebhookSubscription, subscription_id)
        if row is None or row.event_id != event_id:
            raise WebhookNotFoundError()
        return row  # type: ignore[no-any-return]

    def reseal_all(self) -> int:
        """Seal every subscriber secret not yet under the current service secret again (at start)."""
        with self.db.session(readonly=True) as session:
            rows = [
                (row.id, bytes(row.secret_encrypted)) for row in session.execute(select(WebhookSubscription)).scalars()
            ]
        count = 0
        for subscription_id, blob in rows:
            try:
                secret, stale = self.cipher.unseal(blob, subscription_id)
            except InvalidTag:
                log.error("webhook secret cannot be decrypted", extra={"webhook": subscription_id})
                continue
            if stale:
                reseal(self.db, self.cipher, subscription_id, blob, secret)
                count += 1
        return count

    def delete(self, event_id: str, subscription_id: object) -> None:
        with self.db.session() as session:
            row = self._row(session, event_id, subscription_id)
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.subscription_id == row.id))
            session.delete(row)

    def deliveries(
        self, event_id: str, subscription_id: object, limit: int = 100, before: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The delivery log of one subscription, newest first."""
        with self.db.session(readonly=True) as session:
            row = self._row(session, event_id, subscription_id)
            stmt = (
                select(WebhookDelivery)
                .where(WebhookDelivery.subscription_id == row.id)
                .order_by(WebhookDelivery.id.desc())
                .limit(limit)
            )
            if before is not None:
                stmt = stmt.where(WebhookDelivery.id < before)
            return [_delivery(d) for d in session.execute(stmt).scalars()]

    def lags(self, now: int) -> builtins.list[tuple[str, str, int]]:
        """(event_id, subscription_id, seconds the oldest undelivered notification has waited)."""
        result: builtins.list[tuple[str, str, int]] = []
        with self.db.session(readonly=True) as session:
            rows = session.execute(
                select(WebhookSubscription.id, WebhookSubscription.event_id, WebhookSubscription.cursor).where(
                    WebhookSubscription.active.is_(True)
                )
            ).all()
            for subscription_id, event_id, cursor in rows:
                oldest = session.execute(
                    select(OutboxEntry.created_at)
                    .where(OutboxEntry.event_id == event_id, OutboxEntry.id > cursor)
                    .order_by(OutboxEntry.id)
                    .limit(1)
                ).scalar_one_or_none()
                result.append((event_id, subscription_id, max(0, now - int(oldest)) if oldest is not None else 0))
        return result


Poster = Callable[[str, bytes, dict[str, str], float], int]


def poster(outbound: Outbound) -> Poster:
    """POST through ``outbound`` and return the status code (redirects are not followed)."""

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        return outbound.send("POST", url, body, headers, timeout)

    return post


http_post = poster(Outbound(public_only=False))


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    skipped: int = 0


class WebhookDeliverer:
    """Deliver due notifications to every active subscriber; called by the worker's webhook job."""

    def __init__(self, db: Database, secret_keys: Secrets, post: Poster = http_post, batch: int = 100) -> None:
        self.db = db
        self.cipher = SecretCipher(secret_keys)
        self.post = post
        self.batch = batch

    def deliver_due(self, now: float) -> DeliveryReport:
        report = DeliveryReport()
        with self.db.session(readonly=True) as session:
            ids = list(
                session.execute(
                    select(WebhookSubscription.id).where(
                        WebhookSubscription.active.is_(True), WebhookSubscription.next_attempt_at <= int(now)
                    )
                ).scalars()
            )
        for subscription_id in ids:
            self._deliver_subscription(subscription_id, now, report)
        return report

    def _deliver_subscription(self, subscription_id: str, now: float, report: DeliveryReport) -> None:
        with self.db.session(readonly=True) as session:
            sub = session.get(WebhookSubscription, subscription_id)
            if sub is None or not sub.active:
                return
            entries = outbox.entries_after(session, sub.event_id, sub.cursor, self.batch)
            for entry in entries:
                session.expunge(entry)
        try:
            secret, stale = self.cipher.unseal(bytes(sub.secret_encrypted), sub.id)
        except InvalidTag:
            log.error(
                "webhook secret cannot be decrypted (IDP_SECRET_KEY changed without IDP_PREVIOUS_SECRET_KEYS?)",
                extra={"webhook": sub.id},
            )
            self._failed(sub, None, now, None, "secret_unreadable")
            report.failed += 1
            return
        if stale:
            reseal(self.db, self.cipher, sub.id, bytes(sub.secret_encrypted), secret)
        cursor = sub.cursor
        attempts = sub.attempts
        for entry in entries:
            if sub.kinds and entry.kind not in sub.kinds:
                cursor = self._advance(sub.id, cursor, entry, now, None)
                report.skipped += 1
                continue
            body = json.dumps(outbox.to_message(entry), separators=(",", ":"), sort_keys=True).encode("utf-8")
            timestamp = str(int(now))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Idp-Notification-Id": str(entry.id),
                "X-Idp-Timestamp": timestamp,
                "X-Idp-Signature": sign(secret, timestamp, body),
            }
            status: int | None = None
            error: str | None = None
            try:
                status = self.post(sub.url, body, headers, REQUEST_TIMEOUT_SECONDS)
            except requests.RequestException as exc:
                error = type(exc).__name__
            if status is not None and 200 <= status < 300:
                cursor = self._advance(sub.id, cursor, entry, now, (attempts + 1, status))
                attempts = 0
                report.delivered += 1
                continue
            self._failed(sub, entry, now, status, error or f"HTTP {status}")
            report.failed += 1
            return

    def _advance(
        self, subscription_id: str, cursor: int, entry: OutboxEntry, now: float, delivered: tuple[int, int] | None
    ) -> int:
        """Move the cursor past ``entry`` (and log the delivery); only from the cursor we started at."""
        values: dict[str, Any] = {"cursor": entry.id}
        if delivered is not None:
            values.update(attempts=0, next_attempt_at=0, last_error=None, last_delivered_at=int(now))
        with self.db.session() as session:
            session.execute(
                update(WebhookSubscription)
                .where(WebhookSubscription.id == subscription_id, WebhookSubscription.cursor == cursor)
                .values(**values)
            )
            if delivered is not None:
                session.add(
                    WebhookDelivery(
                        subscription_id=subscription_id,
                        outbox_id=entry.id,
                        kind=entry.kind,
                        attempt=delivered[0],
                        ok=True,
                        status_code=delivered[1],
                        error=None,
                        at=int(now),
                    )
                )
        return int(entry.id)

    def _failed(
        self, sub: WebhookSubscription, entry: OutboxEntry | None, now: float, status: int | None, error: str
    ) -> None:
        with self.db.session() as session:
            row = session.get(WebhookSubscription, sub.id, with_for_update=True)
            if row is None:
                return
            row.attempts += 1
            row.next_attempt_at = int(now) + backoff(row.attempts)
            row.last_error = error[:500]
            if entry is not None:
                session.add(
                    WebhookDelivery(
                        subscription_id=sub.id,
                        outbox_id=entry.id,
                        kind=entry.kind,
                        attempt=row.attempts,
                        ok=False,
                        status_code=status,
                        error=error[:500],
                        at=int(now),
                    )
                )
        log.info("webhook delivery failed", extra={"webhook": sub.id, "status": status, "error": error})
