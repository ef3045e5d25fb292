"""Malformed input on every OpenID Connect endpoint never gives a 5xx (nor a redirect to an unchecked URI)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.oidc_flow import REDIRECT, auth_params, basic, make_client

pytestmark = [
    pytest.mark.integration,
    # PostgreSQL refuses what SQLite stores (NUL characters), so it is the stricter backend here.
    pytest.mark.parametrize("backend_settings", ["postgres"], indirect=True),
]

WEIRD = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "%",
    "%ff",
    "é" * 3000,
    "a" * 20000,
    "[]",
    "{}",
    "null",
    "-1",
    "1e999",
    "a.b.c",
    "eyJhbGciOiJub25lIn0.e30.",
    "../../etc",
    "<script>",
    '"\\',
]
PATHS = [
    "/authorize",
    "/token",
    "/userinfo",
    "/revoke",
    "/introspect",
    "/logout",
    "/.well-known/openid-configuration",
    "/authorize/wait/x",
    "/authorize/status/x",
]


def _ok(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.data[:300])
    assert b"Traceback" not in response.data
    location = response.headers.get("Location", "")
    # "/authorize?": a POST without the visitor cookie is answered with a same-site GET of itself.
    assert not location or location.startswith(("/authorize/wait/", "/authorize?", REDIRECT)), location


@pytest.fixture
def rp(services: Any, event: Any) -> tuple[str, str]:
    config, secret = make_client(services)
    return config.client_id, secret


def test_every_method_on_every_path(client: Any, rp: Any) -> None:
    for path in PATHS:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
            _ok(client.open(path, method=method))


def test_authorize_with_weird_values(client: Any, rp: Any) -> None:
    names = [
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "nonce",
        "prompt",
        "max_age",
        "id_token_hint",
        "code_challenge",
        "code_challenge_method",
        "request",
        "request_uri",
        "display",
        "ui_locales",
        "acr_values",
        "login_hint",
        "claims",
        "response_mode",
    ]
    for name in names:
        for value in WEIRD:
            params = auth_params(**{name: value})
            _ok(client.get("/authorize", query_string=params))
            _ok(client.post("/authorize", data=params))
    _ok(client.get("/authorize?client_id=rp&client_id=rp&redirect_uri=" + REDIRECT))
    _ok(client.get("/authorize?client_id=rp&redirect_uri=" + REDIRECT + "&state=a&state=b&response_type=code"))
    raw = "/authorize?client_id=rp&response_type=code&scope=openid&redirect_uri=" + REDIRECT
    _ok(client.get(raw + "&state=%ff%fe%00"))
    _ok(client.get("/authorize?client_id=%ff&redirect_uri=%fe"))
    _ok(client.post("/authorize", data=b"\xff\xfe", content_type="application/x-www-form-urlencoded"))
    _ok(client.post("/authorize", json={"client_id": "rp"}))


def test_token_endpoints_with_weird_values(client: Any, rp: Any) -> None:
    good_basic = basic(*rp)
    headers_list = [
        {},
        good_basic,
        {"Authorization": "Basic"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"rp").decode()},
        {"Authorization": "Bearer x"},
        {"Authorization": "Basic " + base64.b64encode(b"%zz:%zz").decode()},
    ]
    fields = [
        "grant_type",
        "code",
        "redirect_uri",
        "refresh_token",
        "code_verifier",
        "client_id",
        "client_secret",
        "token",
        "token_type_hint",
        "scope",
        "access_token",
    ]
    for path in ("/token", "/revoke", "/introspect", "/userinfo"):
        for headers in headers_list:
            for name in fields:
                for value in WEIRD[:12]:
                    data = {"grant_type": "authorization_code", "code": "x" * 43, "redirect_uri": REDIRECT, name: value}
                    _ok(client.post(path, data=data, headers=headers))
            _ok(client.post(path, data=b"\xff", headers=headers, content_type="application/x-www-form-urlencoded"))
            _ok(client.post(path, json={"grant_type": "authorization_code"}, headers=headers))
    for grant_type in ("refresh_token", "password", "client_credentials", "implicit", ""):
        _ok(client.post("/token", data={"grant_type": grant_type, "refresh_token": "r" * 43}, headers=good_basic))


def test_userinfo_and_logout_with_weird_values(client: Any, rp: Any) -> None:
    for value in WEIRD:
        header = "Bearer " + value.encode("utf-8", "replace").decode("latin-1")
        _ok(client.get("/userinfo", headers={"Authorization": header}))
        names = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "confirm", "csrf")
        for name in names:
            _ok(client.get("/logout", query_string={name: value}))
            _ok(client.post("/logout", data={name: value, "confirm": "yes"}))
    for value in WEIRD:
        _ok(client.get("/authorize/wait/" + value.replace("/", "_").replace("%", "p")[:300] + "x"))
        _ok(client.get("/authorize/status/" + value.replace("/", "_").replace("%", "p")[:600] + "x"))
