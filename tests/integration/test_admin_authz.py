"""Every admin endpoint refuses no key, a wrong key, a revoked key and a key without its scope.

``ROUTES`` lists every route under /admin/api with the scope it needs; a test compares it with the app's
URL map, so a new admin route fails here until it is added (with the scope it should need).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest

from idp.admin.keys import IMPLIED, SCOPES
from tests.admin_support import bearer, make_key
from tests.openapi_check import ValidatingClient

pytestmark = pytest.mark.integration

RID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Route:
    method: str
    rule: str
    scope: str | None  # None: public
    url: str
    body: Any = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.rule}"


ROUTES: list[Route] = [
    Route(
        "POST",
        "/admin/api/increment_serving_counter",
        "events:write",
        "/admin/api/increment_serving_counter",
        {"event_id": "sale", "increment_by": 1},
    ),
    Route(
        "POST",
        "/admin/api/update_session",
        "events:write",
        "/admin/api/update_session",
        {"event_id": "sale", "request_id": RID, "status": 1},
    ),
    Route("GET", "/admin/api/num_active_tokens", "events:read", "/admin/api/num_active_tokens?event_id=sale"),
    Route("GET", "/admin/api/expired_tokens", "events:read", "/admin/api/expired_tokens?event_id=sale"),
    Route(
        "POST", "/admin/api/reset_initial_state", "events:write", "/admin/api/reset_initial_state", {"event_id": "sale"}
    ),
    Route(
        "POST",
        "/admin/api/generate_token",
        "events:write",
        "/admin/api/generate_token",
        {"event_id": "sale", "request_id": RID},
    ),
    Route("GET", "/admin/api/events", "events:read", "/admin/api/events"),
    Route("POST", "/admin/api/events", "events:write", "/admin/api/events", {"event_id": "new-event"}),
    Route("GET", "/admin/api/events/<event_id>", "events:read", "/admin/api/events/sale"),
    Route("PATCH", "/admin/api/events/<event_id>", "events:write", "/admin/api/events/sale", {"name": "Renamed"}),
    Route("DELETE", "/admin/api/events/<event_id>", "events:write", "/admin/api/events/sale"),
    Route("GET", "/admin/api/events/<event_id>/stats", "events:read", "/admin/api/events/sale/stats"),
    Route("GET", "/admin/api/events/<event_id>/abuse", "events:read", "/admin/api/events/sale/abuse"),
    Route("GET", "/admin/api/clients", "clients:write", "/admin/api/clients"),
    Route(
        "POST",
        "/admin/api/clients",
        "clients:write",
        "/admin/api/clients",
        {"event_id": "sale", "redirect_uris": ["https://rp.example/cb"]},
    ),
    Route("GET", "/admin/api/clients/<client_id>", "clients:write", "/admin/api/clients/shop"),
    Route("PATCH", "/admin/api/clients/<client_id>", "clients:write", "/admin/api/clients/shop", {"name": "Shop"}),
    Route("DELETE", "/admin/api/clients/<client_id>", "clients:write", "/admin/api/clients/shop"),
    Route(
        "POST", "/admin/api/clients/<client_id>/rotate_secret", "clients:write", "/admin/api/clients/shop/rotate_secret"
    ),
    Route("GET", "/admin/api/keys", "keys:write", "/admin/api/keys"),
    Route("POST", "/admin/api/keys/rotate", "keys:write", "/admin/api/keys/rotate", {}),
    Route("GET", "/admin/api/admin_keys", "admin", "/admin/api/admin_keys"),
    Route("POST", "/admin/api/admin_keys", "admin", "/admin/api/admin_keys", {"name": "x", "scopes": ["admin"]}),
    Route("DELETE", "/admin/api/admin_keys/<key_id>", "admin", "/admin/api/admin_keys/0123456789abcdef"),
    Route("GET", "/admin/api/audit", "admin", "/admin/api/audit"),
    Route("GET", "/admin/api/openapi.yaml", None, "/admin/api/openapi.yaml"),
    # Inlet strategies, webhooks and the dashboard's data.
    Route("GET", "/admin/api/events/<event_id>/inlet", "events:read", "/admin/api/events/sale/inlet"),
    Route("PUT", "/admin/api/events/<event_id>/inlet", "events:write", "/admin/api/events/sale/inlet", {}),
    Route("POST", "/admin/api/events/<event_id>/inlet/pause", "events:write", "/admin/api/events/sale/inlet/pause"),
    Route("POST", "/admin/api/events/<event_id>/inlet/resume", "events:write", "/admin/api/events/sale/inlet/resume"),
    Route(
        "POST",
        "/admin/api/events/<event_id>/inlet/max_size",
        "events:write",
        "/admin/api/events/sale/inlet/max_size",
        {"exited": 0},
    ),
    Route("GET", "/admin/api/events/<event_id>/webhooks", "events:read", "/admin/api/events/sale/webhooks"),
    Route(
        "POST",
        "/admin/api/events/<event_id>/webhooks",
        "events:write",
        "/admin/api/events/sale/webhooks",
        {"url": "https://hooks.example/in"},
    ),
    Route(
        "GET",
        "/admin/api/events/<event_id>/webhooks/<webhook_id>",
        "events:read",
        "/admin/api/events/sale/webhooks/wh_000000000000000000000000",
    ),
    Route(
        "DELETE",
        "/admin/api/events/<event_id>/webhooks/<webhook_id>",
        "events:write",
        "/admin/api/events/sale/webhooks/wh_000000000000000000000000",
    ),
    Route(
        "GET",
        "/admin/api/events/<event_id>/webhooks/<webhook_id>/deliveries",
        "events:read",
        "/admin/api/events/sale/webhooks/wh_000000000000000000000000/deliveries",
    ),
    Route("GET", "/admin/api/events/<event_id>/dashboard", "events:read", "/admin/api/events/sale/dashboard"),
]
GUARDED = [r for r in ROUTES if r.scope is not None]


def _without(scope: str) -> list[str]:
    """Every scope that does not grant ``scope`` (the strongest key that must still be refused)."""
    return [s for s in SCOPES if s != "admin" and s != scope and scope not in IMPLIED.get(s, ())]


@pytest.fixture
def api(client: Any) -> ValidatingClient:
    return ValidatingClient(client)


@pytest.fixture
def world(services: Any, event: Any) -> Any:
    services.clients.create({"client_id": "shop", "event_id": "sale", "redirect_uris": ["https://rp.example/cb"]})
    return services


def _call(api: ValidatingClient, route: Route, headers: dict[str, str]) -> Any:
    kwargs: dict[str, Any] = {"headers": headers}
    if route.body is not None:
        kwargs["json"] = route.body
    return api.open(route.url, route.method, **kwargs)


def _nothing_written(services: Any) -> None:
    entries, _ = services.audit.list(limit=10)
    assert entries == []
    assert [e.event_id for e in services.events.list()] == ["sale"]
    assert [c.client_id for c in services.clients.list()] == ["shop"]


def test_the_table_covers_every_admin_route(app: Any) -> None:
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin/api/"):
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                served.add((method, rule.rule))
    listed = {(r.method, r.rule) for r in ROUTES}
    assert served - listed == set(), "add these routes (with their scope) to ROUTES in this module"
    assert listed - served == set(), "these ROUTES rows name routes the app no longer serves"
    # And the scope each view demands is the one the table expects.
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/admin/api/"):
            view = app.view_functions[rule.endpoint]
            expected = {r.scope for r in ROUTES if r.rule == rule.rule and r.method in (rule.methods or ())}
            assert expected == {getattr(view, "required_scope", None)}, rule.rule


@pytest.mark.parametrize("route", GUARDED, ids=lambda r: r.id)
def test_refuses_requests_without_a_usable_key(api: ValidatingClient, world: Any, route: Route) -> None:
    good = make_key(world, "admin", name="good")
    key_id = good.split("_")[1]
    revoked_record, revoked = world.admin_keys.create("revoked", ["admin"])
    world.admin_keys.revoke(revoked_record.key_id)
    attempts: dict[str, dict[str, str]] = {
        "no key": {},
        "empty bearer": {"Authorization": "Bearer "},
        "not a key": bearer("nope"),
        "unknown key": bearer(f"idpk_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"),
        "wrong secret": bearer(f"idpk_{key_id}_{secrets.token_urlsafe(32)}"),
        "truncated key": bearer(good[:-1]),
        "key with extra": bearer(good + "x"),
        "basic scheme": {"Authorization": f"Basic {good}"},
        "key without scheme": {"Authorization": good},
        "revoked key": bearer(revoked),
    }
    for label, headers in attempts.items():
        response = _call(api, route, headers)
        assert response.status_code == 401, f"{label}: {response.status_code} {response.get_data()[:200]!r}"
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), label
        assert response.get_json()["error"] == "unauthorized", label
    _nothing_written(world)


@pytest.mark.parametrize("route", GUARDED, ids=lambda r: r.id)
def test_refuses_a_key_without_the_scope(api: ValidatingClient, world: Any, route: Route) -> None:
    assert route.scope is not None
    others = _without(route.scope)
    keys = [make_key(world, *others, name="others")] + [make_key(world, s, name=s) for s in others]
    for key in keys:
        response = _call(api, route, bearer(key))
        assert response.status_code == 403, response.get_data()[:200]
        assert response.get_json()["error"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    _nothing_written(world)


@pytest.mark.parametrize("route", GUARDED, ids=lambda r: r.id)
@pytest.mark.parametrize("holder", ["exact", "admin"])
def test_admits_a_key_with_the_scope(api: ValidatingClient, world: Any, route: Route, holder: str) -> None:
    assert route.scope is not None
    key = make_key(world, route.scope if holder == "exact" else "admin")
    response = _call(api, route, bearer(key))
    assert response.status_code not in (401, 403), response.get_data()[:300]
    assert response.status_code < 500


def test_write_scope_implies_read_and_lowercase_scheme_works(api: ValidatingClient, world: Any) -> None:
    writer = make_key(world, "events:write")
    assert api.get("/admin/api/events", headers={"Authorization": f"bearer {writer}"}).status_code == 200
    assert api.get("/admin/api/clients", headers=bearer(writer)).status_code == 403


def test_the_openapi_document_needs_no_key(api: ValidatingClient) -> None:
    assert api.get("/admin/api/openapi.yaml").status_code == 200
