"""The landing page at ``/`` in each of its modes, and admin actions whose fields are all optional
accepting a request with no body at all."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

import pytest

from idp.app import create_app
from tests.admin_support import bearer, make_key
from tests.openapi_check import ValidatingClient

pytestmark = pytest.mark.integration


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.hrefs[values.get("id") or str(values["href"])] = str(values["href"])


def _links(html: str) -> dict[str, str]:
    parser = _Links()
    parser.feed(html)
    return parser.hrefs


def _app(settings, clock, **changes):
    return create_app(dataclasses.replace(settings, **changes), clock=clock)


def test_the_landing_page_says_what_the_service_is_and_links_to_what_works(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    assert "OpenID Connect identity provider" in html
    links = _links(html)
    for name in ("discovery", "api-spec", "console"):
        target = links[name]
        assert client.get(target).status_code in (200, 302), target
    # Without --demo there is no demo relying party to sign in with.
    assert "demo-sign-in" not in links
    css = [line for line in html.splitlines() if "stylesheet" in line]
    href = css[0].split('href="')[1].split('"')[0]
    assert client.get(href).status_code == 200


def test_with_the_demo_the_landing_page_signs_in_through_the_queue(backend_settings, clock):
    app = _app(backend_settings, clock, demo=True)
    try:
        svc = app.extensions["idp"]
        event = svc.events.ensure("demo", "Demo sale")
        svc.clients.create(
            {
                "client_id": "demo-rp",
                "event_id": event.event_id,
                "redirect_uris": ["http://127.0.0.1:8000/demo/callback"],
            }
        )
        client = app.test_client()
        links = _links(client.get("/").get_data(as_text=True))
        sign_in = client.get(links["demo-sign-in"])
        # The sign-in link is a valid authorization request: the browser is parked in the queue.
        assert sign_in.status_code in (200, 302, 303), sign_in.get_data(as_text=True)[:300]
        if sign_in.status_code != 200:
            assert "/authorize/wait/" in sign_in.headers["Location"]
        assert client.get(links["demo-wait"]).status_code == 200
        assert client.get(links["demo-dashboard"]).status_code == 200
    finally:
        app.extensions["idp"].close()


@pytest.mark.parametrize(
    ("env", "landing_page", "status", "has_api_link"),
    [
        ("test", "", 200, True),
        ("test", "minimal", 200, False),
        ("test", "off", 404, False),
        ("production", "", 200, False),
        ("production", "full", 200, True),
        ("production", "off", 404, False),
    ],
)
def test_the_operator_chooses_how_much_the_landing_page_says(
    backend_settings, clock, env, landing_page, status, has_api_link
):
    issuer = "https://queue.example.com" if env == "production" else backend_settings.issuer
    app = _app(backend_settings, clock, env=env, landing_page=landing_page, issuer=issuer)
    try:
        response = app.test_client().get("/")
        assert response.status_code == status
        if status == 404:
            assert response.get_json()["error"] == "not_found"
            return
        links = _links(response.get_data(as_text=True))
        assert links["discovery"] == "/.well-known/openid-configuration"
        assert ("api-spec" in links) is has_api_link
    finally:
        app.extensions["idp"].close()


def test_an_unknown_landing_page_mode_is_refused_at_start(backend_settings, clock):
    from idp.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="IDP_LANDING_PAGE"):
        _app(backend_settings, clock, landing_page="loud")
    assert Settings.from_env({"IDP_LANDING_PAGE": " OFF "}).landing_mode == "off"


# --- actions whose fields are all optional -------------------------------------------------------


@pytest.fixture
def api(client):
    return ValidatingClient(client)


@pytest.fixture
def admin(services):
    return bearer(make_key(services, "admin"))


def test_rotating_the_signing_key_needs_no_body(api, services, admin):
    before = {k["kid"] for k in api.get("/admin/api/keys", headers=admin).get_json()["keys"]}
    response = api.post("/admin/api/keys/rotate", headers=admin)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["alg"] == "RS256"
    assert body["kid"] not in before
    entries = api.get("/admin/api/audit", headers=admin).get_json()["entries"]
    assert any(e["action"] == "keys.rotate" and e["target"] == body["kid"] for e in entries)


def _optional_body_operations() -> list[tuple[str, str]]:
    """Operations whose request body the API description marks optional, with sample path values."""
    import yaml

    from tests.openapi_check import SPEC_PATH

    spec = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            if body is not None and body.get("required") is False:
                found.append((method.upper(), path.replace("{event_id}", "sale").replace("{client_id}", "shop")))
    return found


OPTIONAL_BODY = _optional_body_operations()


def test_the_description_marks_the_all_optional_actions():
    assert {
        ("PATCH", "/admin/api/events/sale"),
        ("PATCH", "/admin/api/clients/shop"),
        ("PUT", "/admin/api/events/sale/inlet"),
        ("POST", "/admin/api/events/sale/inlet/max_size"),
        ("POST", "/admin/api/keys/rotate"),
    } <= set(OPTIONAL_BODY)


@pytest.mark.parametrize(("method", "path"), OPTIONAL_BODY)
@pytest.mark.parametrize("content_type", [None, "application/json"])
def test_every_all_optional_action_accepts_an_empty_body(api, services, event, admin, method, path, content_type):
    services.clients.create({"client_id": "shop", "event_id": "sale", "redirect_uris": ["https://shop.example/cb"]})
    services.inlets.update("sale", {"max_size": 5})
    headers = dict(admin)
    if content_type:
        headers["Content-Type"] = content_type
    response = api.open(path, method=method, headers=headers)
    assert 200 <= response.status_code < 300, response.get_json()
    # An empty body changes nothing: the resource reads back as it was.
    if path == "/admin/api/events/sale":
        assert response.get_json()["name"] == "Big sale"
    if path.endswith("/inlet"):
        assert response.get_json()["periodic"]["enabled"] is False


@pytest.mark.parametrize("body", [b" ", b"null", b"[]", b"{"])
def test_a_body_that_is_not_empty_must_still_be_a_json_object(api, admin, body):
    response = api.post("/admin/api/keys/rotate", data=body, headers={**admin, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"] in {"malformed_json", "invalid_body"}


def test_actions_with_required_fields_still_want_a_body(api, event, admin):
    response = api.post("/admin/api/increment_serving_counter", headers=admin)
    assert response.status_code == 400
    assert response.get_json()["error"] == "missing_body"
