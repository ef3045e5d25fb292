"""``idp queue recover EVENT`` and ``idp queue status [EVENT]``; the start-up warning about Redis persistence."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from idp.cli import _PREPARE_HOOKS, register
from idp.config import Settings
from idp.errors import IdpError

log = logging.getLogger("idp.queue")

AOF_WARNING = (
    "Redis at IDP_REDIS_URL runs without AOF persistence (appendonly no): a restart or crash loses places "
    "it acknowledged. The loss is detected and no position is handed out twice, but the visitors who held "
    "those places must join again. For a sale set appendonly yes and appendfsync everysec or always "
    "(see the README, 'Redis for a sale')."
)


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "the queue store of an event"
    sub = parser.add_subparsers(dest="queue_command", required=True)
    recover = sub.add_parser(
        "recover",
        help="recover an event whose Redis queue state was lost; exit 0 once it accepts joins again",
    )
    recover.add_argument("event_id", help="the event to recover")
    status = sub.add_parser("status", help="what the database records about each event's Redis queue state")
    status.add_argument("event_id", nargs="?", help="one event (default every event)")


def _ledger_dict(row: Any) -> dict[str, Any]:
    return {
        "event_id": row.event_id,
        "status": row.status,
        "generation": row.generation,
        "reserved": row.reserved,
        "losses": row.losses,
        "lost_positions": row.lost_positions,
        "last_loss_at": row.last_loss_at,
        "last_loss_reason": row.last_loss_reason,
    }


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from idp.app import build_services
    from idp.queue.redis_store import RedisQueueStore

    services = build_services(settings)
    try:
        store = services.store
        if not isinstance(store, RedisQueueStore):
            print("idp: the queue lives in the SQL database, which keeps every place; nothing to recover")
            return 0
        if args.queue_command == "status":
            rows = store.ledger.all()
            if args.event_id:
                rows = [r for r in rows if r.event_id == args.event_id]
            print(json.dumps([_ledger_dict(r) for r in rows], indent=2))
            return 0
        event = services.events.get_fresh(args.event_id)
        outcome = store.recover(event.event_id, manual=True)
        try:
            store.check(event.event_id)
        except IdpError as exc:
            print(f"idp: {event.event_id} does not accept joins yet: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        row = store.ledger.get(event.event_id)
        print(json.dumps({"outcome": outcome, **(_ledger_dict(row) if row else {})}, indent=2))
        return 0
    finally:
        services.close()


def warn_without_persistence(settings: Settings) -> None:
    """Say loudly at start when the Redis queue store does not persist with AOF."""
    if not settings.redis_url:
        return
    from idp.queue.redis_client import servers_without_aof
    from idp.queue.redis_store import RedisQueueStore

    try:
        client = RedisQueueStore.client_for(settings.redis_url)
        try:
            without = servers_without_aof(client)
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - a warning at start must not stop the start
        log.warning("could not check Redis persistence at start: %s", type(exc).__name__)
        return
    if without:
        log.warning("%s Servers without AOF: %s.", AOF_WARNING, ", ".join(without))


register("queue", _configure, _run, help="the queue store of an event: recover, status")
if warn_without_persistence not in _PREPARE_HOOKS:
    _PREPARE_HOOKS.append(warn_without_persistence)
