"""``idp keys rotate [--alg RS256|ES256]`` and ``idp keys list``."""

from __future__ import annotations

import argparse
import json

from idp.cli import _PREPARE_HOOKS, register
from idp.config import Settings
from idp.storage.db import Database
from idp.tokens.keys import ALGORITHMS, DEFAULT_ALG


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "signing keys"
    sub = parser.add_subparsers(dest="keys_command", required=True)
    rotate = sub.add_parser(
        "rotate", help="publish a new key now; it signs from its active_from, the previous one keeps verifying"
    )
    rotate.add_argument("--alg", choices=ALGORITHMS, default=DEFAULT_ALG, help=f"its algorithm (default {DEFAULT_ALG})")
    sub.add_parser("list", help="list keys (never their private parts)")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from idp.clock import SystemClock
    from idp.tokens.keys import KeyManager

    db = Database(settings.database_url, retry_after=settings.retry_after_seconds)
    try:
        keys = KeyManager(
            db,
            settings.secret_keys,
            SystemClock(),
            settings.key_rotation_grace_seconds,
            refresh_seconds=settings.key_refresh_seconds,
            jwks_max_age=settings.jwks_max_age,
        )
        if args.keys_command == "rotate":
            kid = keys.rotate(args.alg)
            active_from = keys.active_from(kid)
            record_cli_audit(db, "keys.rotate", kid, {"alg": args.alg, "active_from": active_from})
            summary = {"rotated": args.alg, "kid": kid, "active_from": active_from, "keys": keys.list_keys()}
            print(json.dumps(summary, indent=2))
        else:
            print(json.dumps(keys.list_keys(), indent=2))
    finally:
        db.dispose()
    return 0


def record_cli_audit(db: Database, action: str, target: str, detail: dict[str, object]) -> None:
    """Write an operator change made on the command line to the audit log (no key id, ``via: cli``)."""
    from idp.admin.audit import AuditLog
    from idp.clock import SystemClock

    AuditLog(db, SystemClock()).record(key_id=None, action=action, target=target, detail={**detail, "via": "cli"})


def prepare_keys(settings: Settings) -> None:
    """Before any worker answers: an RS256 and an ES256 signing key and the lookup key exist, and
    whatever was sealed under a previous IDP_SECRET_KEY (or an earlier format) is sealed again under
    the current one."""
    from idp.clock import SystemClock
    from idp.events.service import EventService
    from idp.notify.webhooks import WebhookService
    from idp.storage.lookup import StoredLookupKey
    from idp.tokens.keys import KeyManager

    db = Database(settings.database_url, retry_after=settings.retry_after_seconds)
    clock = SystemClock()
    try:
        keys = KeyManager(db, settings.secret_keys, clock, settings.key_rotation_grace_seconds)
        keys.ensure_all()
        StoredLookupKey(db, settings.secret_keys).ensure()
        keys.reseal_all()
        WebhookService(db, clock, settings.secret_keys).reseal_all()
        EventService(db, clock, 0, settings.secret_keys).reseal_secrets()
    finally:
        db.dispose()


register("keys", _configure, _run, help="signing keys: rotate, list")
if prepare_keys not in _PREPARE_HOOKS:
    _PREPARE_HOOKS.append(prepare_keys)
