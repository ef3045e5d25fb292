"""The browser's cookies, read from a plain mapping and set on a Werkzeug response (no Flask app)."""

from __future__ import annotations

from http.cookies import SimpleCookie

import pytest
from werkzeug.wrappers import Response

from idp.config import Settings
from idp.oidc.claims import Admission
from idp.oidc.cookies import (
    admission_cookie_events,
    admission_cookie_name,
    clear_admission_cookie,
    read_admission_cookie,
    read_visitor_cookie,
    set_admission_cookie,
    set_visitor_cookie,
)
from idp.pages.cookies import holds_a_cookie, place_cookie_name, read_place, set_place_cookie

pytestmark = pytest.mark.unit

SECRET = "k" * 40
VISITOR = "v" * 43
REQUEST_ID = "12345678-1234-4234-8234-123456789012"


def _settings(issuer: str = "http://127.0.0.1:8000") -> Settings:
    return Settings(env="test", secret_key=SECRET, issuer=issuer)


def _jar(response: Response) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        jar.load(header)
    return {name: morsel.value for name, morsel in jar.items()}


def test_the_visitor_cookie_round_trips_and_is_host_prefixed_under_https() -> None:
    for issuer, prefix in (("http://127.0.0.1:8000", ""), ("https://idp.example", "__Host-")):
        settings = _settings(issuer)
        response = Response()
        set_visitor_cookie(response, settings, VISITOR)
        header = response.headers["Set-Cookie"]
        assert header.startswith(f"{prefix}{settings.visitor_cookie}=")
        assert "HttpOnly" in header and "SameSite=Lax" in header and ("Secure" in header) is bool(prefix)
        assert read_visitor_cookie(_jar(response), settings) == (VISITOR, False)


def test_a_visitor_cookie_under_its_name_before_host_prefixes_is_kept_and_set_again() -> None:
    settings = _settings("https://idp.example")
    assert read_visitor_cookie({settings.visitor_cookie: VISITOR}, settings) == (VISITOR, True)
    assert read_visitor_cookie({settings.visitor_cookie: "short"}, settings) == (None, False)


def test_the_admitted_cookie_round_trips_and_refuses_a_forgery() -> None:
    settings = _settings()
    admission = Admission(VISITOR, "sale", REQUEST_ID, 7, 1_700_000_000)
    response = Response()
    set_admission_cookie(response, settings, admission, 600)
    cookies = _jar(response)
    assert read_admission_cookie(cookies, settings, "sale") == {
        "v": VISITOR,
        "e": "sale",
        "r": REQUEST_ID,
        "q": 7,
        "t": 1_700_000_000,
    }
    assert admission_cookie_events({**cookies, "other": "x"}, settings) == ["sale"]
    forged = {admission_cookie_name(settings, "sale"): cookies[admission_cookie_name(settings, "sale")] + "x"}
    assert read_admission_cookie(forged, settings, "sale") is None
    assert read_admission_cookie({admission_cookie_name(settings, "sale"): "x" * 2001}, settings, "sale") is None
    other_key = Settings(env="test", secret_key="o" * 40, issuer="http://127.0.0.1:8000")
    assert read_admission_cookie(cookies, other_key, "sale") is None
    cleared = Response()
    clear_admission_cookie(cleared, settings, "sale")
    assert "Max-Age=0" in cleared.headers["Set-Cookie"] or "expires=Thu, 01 Jan 1970" in cleared.headers["Set-Cookie"]


def test_the_place_cookie_carries_a_signed_position() -> None:
    settings = _settings()
    response = Response()
    set_place_cookie(response, settings, "sale", REQUEST_ID, 42)
    cookies = _jar(response)
    assert read_place(cookies, settings, "sale") == (REQUEST_ID, 42)
    name = place_cookie_name(settings, "sale")
    assert read_place({name: f"{REQUEST_ID}.43.{cookies[name].rsplit('.', 1)[1]}"}, settings, "sale") == (
        REQUEST_ID,
        None,
    )
    assert read_place({name: REQUEST_ID}, settings, "sale") == (REQUEST_ID, None)
    assert read_place({name: "not-a-request-id"}, settings, "sale") == (None, None)
    assert holds_a_cookie(cookies, settings, "sale")
    assert not holds_a_cookie(cookies, settings, "other")
