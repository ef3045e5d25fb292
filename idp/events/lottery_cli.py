"""``idp lottery show EVENT`` and ``idp lottery verify EVENT [--url BASE]``: check a pre-queue draw."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from idp.cli import register
from idp.config import Settings
from idp.errors import IdpError
from idp.events import lottery


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "the pre-queue lottery: show it, or verify a draw from what was published"
    sub = parser.add_subparsers(dest="lottery_command", required=True)
    show = sub.add_parser("show", help="print what GET /api/lottery publishes for the event")
    show.add_argument("event_id", help="the event")
    verify = sub.add_parser(
        "verify",
        help="check that the seed hashes to the commitment and that the seed gives the published order "
        "(and, without --url, that the queue holds exactly that order)",
    )
    verify.add_argument("event_id", help="the event")
    verify.add_argument("--url", help="verify what this server publishes (e.g. https://queue.example.com)")


def _fetch(base: str, event_id: str) -> dict[str, Any]:
    import requests

    response = requests.get(f"{base.rstrip('/')}/api/lottery", params={"event_id": event_id}, timeout=10)
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError("the server did not answer a JSON object")
    return data


def _queue_problems(services: Any, event_id: str, published: dict[str, Any]) -> list[str]:
    """Compare the published order with the positions the queue store holds."""
    first = published.get("first_position")
    if not isinstance(first, int):
        return []
    positions = services.engine.pending_positions(event_id)
    problems = []
    for index, entry in enumerate(published.get("entries") or []):
        if positions.get(entry) != first + index:
            problems.append(f"entry {entry[:12]}... does not hold position {first + index}")
            if len(problems) >= 10:
                break
    return problems


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return _run_checked(args, settings)
    except (IdpError, ValueError, OSError) as exc:
        # OSError covers requests' connection errors; IdpError an unknown or malformed event id.
        print(f"idp lottery: {exc}", file=sys.stderr)
        return 2


def _run_checked(args: argparse.Namespace, settings: Settings) -> int:
    services = None
    try:
        if args.lottery_command == "verify" and args.url:
            published = _fetch(args.url, args.event_id)
        else:
            from idp.app import build_services

            services = build_services(settings)
            published = services.room.lottery(args.event_id)
        if args.lottery_command == "show":
            print(json.dumps(published, indent=2))
            return 0
        result = lottery.verify(published)
        problems = list(result.problems)
        if services is not None and result.ok:
            problems.extend(_queue_problems(services, args.event_id, published))
        report = {
            "event_id": args.event_id,
            "ok": not problems,
            "entrants": result.entrants,
            "commitment": published.get("commitment"),
            "problems": problems,
        }
        print(json.dumps(report, indent=2))
        return 0 if not problems else 1
    finally:
        if services is not None:
            services.close()


register("lottery", _configure, _run, help="the pre-queue lottery: show, verify")
