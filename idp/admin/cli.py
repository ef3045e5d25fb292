"""``idp admin-keys create|list|revoke`` and ``idp clients create``; the admin key of ``idp serve --demo``.

Keys and client secrets are printed once, when made; only their hashes are stored. Changes made here
are written to the audit log like the API's, with no key id and ``"via": "cli"``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from idp import cli
from idp.admin.audit import AuditLog
from idp.admin.keys import SCOPES, AdminKeyService
from idp.config import Settings

DEMO_KEY_NAME = "demo"


def _parts(settings: Settings) -> tuple[Any, AdminKeyService, AuditLog]:
    from idp.clock import SystemClock

    services = cli._services(settings)
    clock = SystemClock()
    return services, AdminKeyService(services.db, clock), AuditLog(services.db, clock)


# --- idp admin-keys ------------------------------------------------------------------------------


def _configure_keys(parser: argparse.ArgumentParser) -> None:
    parser.description = "admin API keys (sent as Authorization: Bearer <key>)"
    sub = parser.add_subparsers(dest="admin_keys_command", required=True)
    create = sub.add_parser("create", help="make a key; it is printed once")
    create.add_argument("--name", required=True, help="who or what holds the key")
    create.add_argument(
        "--scopes", required=True, help=f"comma-separated, from: {', '.join(SCOPES)} (admin implies all)"
    )
    create.add_argument("--quiet", action="store_true", help="print only the key (for scripts)")
    sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", help="the key's id (from list)")


def _run_keys(args: argparse.Namespace, settings: Settings) -> int:
    services, keys, audit = _parts(settings)
    try:
        if args.admin_keys_command == "create":
            with services.db.session() as session:
                record, plaintext = keys.create(args.name, args.scopes, session=session)
                audit.add(
                    session,
                    key_id=None,
                    action="admin_key.create",
                    target=record.key_id,
                    detail={"name": record.name, "scopes": record.scopes, "via": "cli"},
                )
            if args.quiet:
                print(plaintext)
            else:
                print(f"key_id: {record.key_id}")
                print(f"name:   {record.name}")
                print(f"scopes: {','.join(record.scopes)}")
                print("key (shown this once; store it now):")
                print(plaintext)
        elif args.admin_keys_command == "list":
            print(json.dumps([k.to_dict() for k in keys.list(limit=1000)], indent=2))
        else:
            with services.db.session() as session:
                record = keys.revoke(args.key_id, session=session)
                audit.add(session, key_id=None, action="admin_key.revoke", target=record.key_id, detail={"via": "cli"})
            print(f"revoked {record.key_id}")
    finally:
        services.close()
    return 0


# --- idp clients ---------------------------------------------------------------------------------


def _configure_clients(parser: argparse.ArgumentParser) -> None:
    parser.description = "OpenID Connect clients (relying parties)"
    sub = parser.add_subparsers(dest="clients_command", required=True)
    create = sub.add_parser("create", help="register a client; its secret is printed once")
    create.add_argument("--event", required=True, help="the event its visitors queue for")
    create.add_argument(
        "--redirect-uri",
        action="append",
        required=True,
        dest="redirect_uris",
        help="an exact redirect URI (repeat for more)",
    )
    create.add_argument("--initiate-login-uri", help="where to send a visitor whose parked request grew stale")
    create.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        dest="post_logout_redirect_uris",
        help="an exact post-logout redirect URI (repeat for more)",
    )
    create.add_argument("--name", help="its display name")
    create.add_argument("--client-id", help="its client_id (default a random one)")
    create.add_argument(
        "--public", action="store_true", help="a browser or native app: no secret, PKCE and refresh rotation"
    )
    sub.add_parser("list", help="list clients (never their secrets)")


def _run_clients(args: argparse.Namespace, settings: Settings) -> int:
    services, _keys, audit = _parts(settings)
    try:
        if args.clients_command == "list":
            print(json.dumps([c.to_dict() for c in services.clients.list(limit=1000)], indent=2))
            return 0
        data: dict[str, Any] = {"event_id": args.event, "redirect_uris": args.redirect_uris}
        for name in ("initiate_login_uri", "post_logout_redirect_uris", "name", "client_id"):
            if getattr(args, name) is not None:
                data[name] = getattr(args, name)
        if args.public:
            data["token_endpoint_auth_method"] = "none"  # noqa: S105 - the RFC 7591 method name
        client, secret = services.clients.create(data)
        audit.record(
            key_id=None,
            action="client.create",
            target=client.client_id,
            detail={"event_id": client.event_id, "redirect_uris": client.redirect_uris, "via": "cli"},
        )
        if secret is None:
            print(json.dumps(client.to_dict(), indent=2))
        else:
            print(json.dumps({**client.to_dict(), "client_secret": secret}, indent=2))
            print("The client_secret is shown this once; store it now.", file=sys.stderr)
    finally:
        services.close()
    return 0


# --- idp serve --demo ----------------------------------------------------------------------------


def demo_admin_key(settings: Settings, services: Any, event: Any, base: str) -> list[str]:
    """Create the demo admin key unless one exists, and show how to use it."""
    from idp.clock import SystemClock

    keys = AdminKeyService(services.db, SystemClock())
    existing = keys.find_by_name(DEMO_KEY_NAME)
    if existing is not None:
        return [
            "",
            f"Demo admin key exists (key_id {existing.key_id}); it was printed when it was made.",
            "  A new one: idp admin-keys create --name ops --scopes admin",
        ]
    record, plaintext = keys.create(DEMO_KEY_NAME, ["admin"])
    AuditLog(services.db, SystemClock()).record(
        key_id=None,
        action="admin_key.create",
        target=record.key_id,
        detail={"name": DEMO_KEY_NAME, "scopes": ["admin"], "via": "demo"},
    )
    return [
        "",
        "Demo admin key (scope admin; shown this once):",
        f"  {plaintext}",
        f"  Admit 10: curl -s -X POST {base}/admin/api/increment_serving_counter "
        f"-H 'Authorization: Bearer {plaintext}' -H 'Content-Type: application/json' "
        f'-d \'{{"event_id":"{event.event_id}","increment_by":10}}\'',
        f"  Stats:    curl -s {base}/admin/api/events/{event.event_id}/stats -H 'Authorization: Bearer {plaintext}'",
        f"  API:      {base}/admin/api/openapi.yaml",
        f"  Console:  {base}/admin/console (paste the key)",
        f"  Start:    {base}/",
    ]


cli.register("admin-keys", _configure_keys, _run_keys, help="admin API keys: create, list, revoke")
cli.register("clients", _configure_clients, _run_clients, help="OpenID Connect clients (relying parties): create, list")
if demo_admin_key not in cli._DEMO_HOOKS:
    cli._DEMO_HOOKS.append(demo_admin_key)
