"""Command-line pieces of the OpenID Connect provider: the demo client of ``idp serve --demo``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from idp import cli
from idp.config import Settings

DEMO_CLIENT_ID = "demo-rp"


def demo_client(settings: Settings, services: Any, event: Any, base: str) -> list[str]:
    """Register (or re-key) the demo relying party and print how to sign in through the queue."""
    redirect_uri = f"{base}/demo/callback"
    existing = services.clients.find(DEMO_CLIENT_ID)
    secret: str | None
    if existing is None:
        _, secret = services.clients.create(
            {
                "client_id": DEMO_CLIENT_ID,
                "event_id": event.event_id,
                "name": "Demo relying party",
                "redirect_uris": [redirect_uri],
                "post_logout_redirect_uris": [f"{base}/demo/callback"],
            }
        )
    else:
        _, secret = services.clients.rotate_secret(DEMO_CLIENT_ID)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": DEMO_CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": "openid email",
            "state": "demo",
        }
    )
    return [
        "",
        f"Demo OpenID Connect client ready (it queues for event {event.event_id}):",
        f"  client_id:     {DEMO_CLIENT_ID}",
        f"  client_secret: {secret}",
        f"  Discovery:     {settings.issuer}/.well-known/openid-configuration",
        f"  Sign in:       {base}/authorize?{query}",
        "  Admit:         the waiting page moves on once the serving counter passes your place "
        "(admin API increment_serving_counter, or the demo inlet).",
    ]


cli._DEMO_HOOKS.append(demo_client)
