"""``idp serve --demo`` registers a demo relying party that can sign in through the queue."""

from __future__ import annotations

from typing import Any

import pytest

from idp.oidc.cli import DEMO_CLIENT_ID, demo_client
from tests.oidc_flow import admit_everyone, basic

pytestmark = pytest.mark.integration


@pytest.fixture
def backend_settings(backend_settings: Any) -> Any:
    import dataclasses

    return dataclasses.replace(backend_settings, demo=True)


def test_demo_client_signs_in(client: Any, services: Any, event: Any) -> None:
    base = "http://127.0.0.1:8000"
    lines = demo_client(services.settings, services, event, base)
    again = demo_client(services.settings, services, event, base)  # a restart re-keys it
    secret = next(line for line in again if "client_secret" in line).split()[-1]
    assert any("/.well-known/openid-configuration" in line for line in lines)
    sign_in = next(line for line in lines if "Sign in" in line).split()[-1]
    wait = client.get(sign_in[len(base) :])
    admit_everyone(services, event.event_id)
    landing = client.get(wait.headers["Location"]).headers["Location"]
    assert landing.startswith(base + "/demo/callback?")
    page = client.get(landing[len(base) :])
    assert page.status_code == 200 and b"code" in page.data
    code = landing.split("code=")[1].split("&")[0]
    token = client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": base + "/demo/callback"},
        headers=basic(DEMO_CLIENT_ID, secret),
    )
    assert token.status_code == 200 and token.get_json()["id_token"]


def test_demo_landing_page_only_in_demo_mode(app: Any) -> None:
    assert "/demo/callback" in {rule.rule for rule in app.url_map.iter_rules()}
