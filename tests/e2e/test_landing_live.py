"""What ``make run`` starts (``idp serve --demo`` with no configuration) answers ``GET /`` with the landing
page, and its demo sign-in link parks a browser in the demo event's queue; the demo prints the address it
binds, ``--port`` or ``IDP_BIND``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from tests.e2e.server import free_port, idp_serve

pytestmark = pytest.mark.e2e


def test_idp_serve_demo_answers_the_landing_page(tmp_path: Path) -> None:
    port = free_port()
    # The defaults of `make run`, in a folder of the test's own instead of ./instance.
    with idp_serve(tmp_path, port, "--demo", "--port", str(port), IDP_WORKERS="2") as (base, log):
        printed = log.read_text(errors="replace")
        assert f"Console:  {base}/admin/console" in printed and f"Start:    {base}/" in printed
        landing = requests.get(base + "/", timeout=10)
        assert landing.status_code == 200
        assert landing.headers["Content-Type"].startswith("text/html")
        html = landing.text
        assert "OpenID Connect identity provider" in html
        links = dict(re.findall(r'<a id="([a-z-]+)" href="([^"]+)"', html))
        assert {"demo-sign-in", "demo-wait", "console", "discovery", "api-spec"} <= set(links)
        # The demo's issuer is the address it listens on, so its discovery names reachable endpoints.
        discovery = requests.get(base + links["discovery"], timeout=10).json()
        assert discovery["issuer"] == base and discovery["token_endpoint"].startswith(base + "/")
        assert requests.get(base + links["console"], timeout=10).status_code == 200
        assert requests.get(base + links["api-spec"], timeout=10).text.startswith("openapi:")
        # The demo sign-in is a real authorization request of the demo client: it parks the browser.
        sign_in = requests.get(base + links["demo-sign-in"].replace("&amp;", "&"), timeout=10, allow_redirects=False)
        assert sign_in.status_code in (302, 303), sign_in.text[:300]
        assert "/authorize/wait/" in sign_in.headers["Location"]


def test_idp_serve_demo_prints_the_address_idp_bind_names(tmp_path: Path) -> None:
    port = free_port()
    with idp_serve(tmp_path, port, "--demo", IDP_BIND=f"0.0.0.0:{port}", IDP_WORKERS="1") as (base, log):  # noqa: S104
        printed = log.read_text(errors="replace")
        assert f"{base}/api/serving_num?event_id=demo" in printed and ":8000" not in printed
        serving = requests.get(f"{base}/api/serving_num", params={"event_id": "demo"}, timeout=10)
        assert serving.status_code == 200
        assert requests.get(base + "/.well-known/openid-configuration", timeout=10).json()["issuer"] == base
