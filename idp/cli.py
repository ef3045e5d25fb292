"""The ``idp`` command: serve, db upgrade, events create (and more from the other parts of the service)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from idp.config import ConfigError, Settings
from idp.storage.db import SchemaNotCurrentError

# Subcommands added by other parts: name -> (one-line description, configure parser, run). See register().
_Configure = Callable[[argparse.ArgumentParser], None]
_Run = Callable[[argparse.Namespace, Settings], int]
_COMMANDS: dict[str, tuple[str, _Configure, _Run]] = {}

GUNICORN_CONF = Path(__file__).resolve().parent / "gunicorn_conf.py"


def register(
    name: str,
    configure: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace, Settings], int],
    *,
    help: str = "",  # noqa: A002 - the word argparse uses
) -> None:
    """Add the command ``idp NAME``; ``help`` is its line in ``idp --help`` (tests require one)."""
    _COMMANDS[name] = (help, configure, run)


def _settings() -> Settings:
    return Settings.from_env().validate()


def _services(settings: Settings) -> Any:
    from idp.app import build_services

    return build_services(settings)


def prepare(settings: Settings) -> None:
    """Bring the database up to date and create what a first start needs."""
    from idp.storage.db import upgrade_database

    upgrade_database(settings.database_url)
    for hook in _PREPARE_HOOKS:
        hook(settings)


# Other parts (signing keys) add first-start steps here.
_PREPARE_HOOKS: list[Callable[[Settings], None]] = []


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.demo and settings.is_production:
        # The demo prints an admin key and serves a demo relying party: never in production.
        print("idp: --demo does not run with IDP_ENV=production", file=sys.stderr)
        return 2
    args.host = args.host or settings.host
    args.port = args.port or settings.port
    if not settings.redis_url and not settings.database_url.startswith("sqlite"):
        print("idp: queue store on the SQL database (set IDP_REDIS_URL for Redis)", file=sys.stderr)
    prepare(settings)
    env = dict(os.environ)
    env.setdefault("IDP_BIND", f"{args.host}:{args.port}")
    if args.demo:
        args.bind = env["IDP_BIND"]
        if "IDP_ISSUER" not in env:
            # The demo's issuer is where it listens, so discovery and tokens name a reachable URL.
            env["IDP_ISSUER"] = bind_base_url(args.bind)
            settings = dataclasses.replace(settings, issuer=env["IDP_ISSUER"])
        _demo(settings, args)
    if args.demo:
        env["IDP_DEMO"] = "1"
    # Children must share the secret, or each worker would invent its own development secret.
    env["IDP_SECRET_KEY"] = settings.secret_key
    env["IDP_DATABASE_URL"] = settings.database_url
    if args.workers is not None:
        env["IDP_WORKERS"] = str(args.workers)
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "idp.app:create_app()"]
    os.execve(sys.executable, argv, env)  # noqa: S606 - replaces this process with gunicorn
    return 0  # pragma: no cover


def bind_base_url(bind: str) -> str:
    """The URL a local client reaches the server at, from gunicorn's bind (the first TCP address).

    A wildcard host (``0.0.0.0``, ``::``) is reached on loopback; a bind without a port is gunicorn's 8000.
    """
    addresses = [part.strip() for part in bind.replace(" ", ",").split(",") if part.strip()]
    tcp = [a for a in addresses if not a.startswith(("unix:", "fd://"))]
    if not tcp:
        return "http://localhost"
    address = tcp[0].removeprefix("tcp://")
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":") or "8000"
    elif address.count(":") == 1:
        host, port = address.split(":")
    else:
        host, port = address, "8000"
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - reached on loopback
    host = wildcard.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _demo(settings: Settings, args: argparse.Namespace) -> None:
    services = _services(settings)
    try:
        event = services.events.ensure("demo", "Demo sale")
        base = bind_base_url(getattr(args, "bind", None) or f"{args.host}:{args.port}")
        lines = [
            "",
            "Demo event ready: event_id=demo",
            f"  Join:     curl -s -X POST {base}/api/assign_queue_num -H 'Content-Type: application/json' "
            '-d \'{"event_id":"demo"}\'',
            f"  Place:    curl -s '{base}/api/queue_num?event_id=demo&request_id=<api_request_id>'",
            f"  Serving:  curl -s '{base}/api/serving_num?event_id=demo'",
            f"  Waiting:  curl -s '{base}/api/waiting_num?event_id=demo'",
        ]
        for hook in _DEMO_HOOKS:
            lines.extend(hook(settings, services, event, base))
        print("\n".join(lines) + "\n", flush=True)
    finally:
        services.close()


# Other parts print their demo material (admin key, OIDC client) through these.
_DEMO_HOOKS: list[Callable[[Settings, Any, Any, str], list[str]]] = []


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from idp.storage.db import upgrade_database

    upgrade_database(settings.database_url, args.revision)
    if args.revision == "head":
        # What a first start needs (signing keys of every algorithm) exists before any worker answers,
        # also when the service is then started by "gunicorn wsgi:app" rather than "idp serve".
        for hook in _PREPARE_HOOKS:
            hook(settings)
    print(f"database at {args.revision}")
    return 0


def cmd_events_create(args: argparse.Namespace, settings: Settings) -> int:
    data: dict[str, Any] = {"event_id": args.event_id, "name": args.name or args.event_id}
    if args.expiry_period is not None:
        data["queue_position_expiry_period"] = args.expiry_period
    if args.no_expiry:
        data["enable_queue_position_expiry"] = False
    if args.incr_serving_on_expiry:
        data["incr_serving_on_expiry"] = True
    if args.token_validity is not None:
        data["token_validity_period"] = args.token_validity
    services = _services(settings)
    try:
        event = services.events.create(data)
        from idp.admin.audit import AuditLog

        AuditLog(services.db, services.clock).record(
            key_id=None,
            action="event.create",
            target=event.event_id,
            detail={**{k: v for k, v in data.items() if k != "event_id"}, "via": "cli"},
        )
    finally:
        services.close()
    print(json.dumps(event.to_dict(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idp", description="Virtual waiting room and OpenID Connect provider")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="migrate the database (under a lock), then run the web service under gunicorn",
        description="Bring the database to this release's schema (one process at a time), create what a "
        "first start needs (signing keys), then replace this process with gunicorn serving the app.",
    )
    serve.add_argument("--host", default=None, help="address to listen on (default IDP_HOST, 127.0.0.1; IDP_BIND wins)")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default IDP_PORT, 8000)")
    serve.add_argument(
        "--workers", type=int, default=None, help="gunicorn workers (default IDP_WORKERS; 0: one per usable core)"
    )
    serve.add_argument("--demo", action="store_true", help="create a demo event and print how to use it")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations (one process at a time on PostgreSQL)")
    upgrade.add_argument("revision", nargs="?", default="head", help="the revision to reach (default head)")
    upgrade.set_defaults(func=cmd_db_upgrade)

    events = sub.add_parser("events", help="waiting-room events").add_subparsers(dest="events_command", required=True)
    create = events.add_parser("create", help="create an event")
    create.add_argument("event_id", help="the event's id (letters, digits, - and _)")
    create.add_argument("--name", help="its display name (default the id)")
    create.add_argument("--expiry-period", type=int, help="seconds an admitted place may claim its token (default 900)")
    create.add_argument("--no-expiry", action="store_true", help="admitted places never expire")
    create.add_argument(
        "--incr-serving-on-expiry",
        action="store_true",
        help="advance the serving counter by the expired, unclaimed places",
    )
    create.add_argument("--token-validity", type=int, help="seconds a visitor's session and tokens last")
    create.set_defaults(func=cmd_events_create)

    for name, (description, configure, run) in _COMMANDS.items():
        command_parser = sub.add_parser(name, help=description, description=description)
        configure(command_parser)
        command_parser.set_defaults(func=run)
    return parser


def _load_plugins() -> None:
    """Import the parts of the service that add commands (each calls ``register`` on import)."""
    import importlib

    for module in CLI_MODULES:
        importlib.import_module(module)


CLI_MODULES: list[str] = [
    "idp.admin.cli",
    "idp.tokens.cli",
    "idp.worker.jobs",
    "idp.oidc.cli",
    "idp.queue.cli",
    "idp.events.lottery_cli",
]


def main(argv: Sequence[str] | None = None) -> int:
    _load_plugins()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings()
    except ConfigError as exc:
        print(f"idp: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args, settings))
    except (ConfigError, SchemaNotCurrentError) as exc:
        print(f"idp: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a command-line error is one line, not a trace
        from idp.errors import IdpError

        if isinstance(exc, IdpError):
            print(f"idp: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":  # pragma: no cover
    # Run through the importable module: the parts register their commands on ``idp.cli``, not ``__main__``.
    from idp.cli import main as _main

    sys.exit(_main())
