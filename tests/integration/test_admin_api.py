"""The admin REST API through HTTP (Flask test client); every answer is held to openapi.yaml."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate as validate_spec

from tests.admin_support import all_pages, bearer, claims, make_key
from tests.conftest import all_backends
from tests.openapi_check import SPEC_PATH, SpecMismatch, ValidatingClient, check_exchange

pytestmark = pytest.mark.integration


@pytest.fixture
def api(client: Any) -> ValidatingClient:
    return ValidatingClient(client)


@pytest.fixture
def admin(services: Any) -> dict[str, str]:
    return bearer(make_key(services, "admin", name="operator"))


def _join(api: ValidatingClient, event_id: str) -> dict[str, Any]:
    response = api.post("/api/assign_queue_num", json={"event_id": event_id})
    assert response.status_code == 200
    return dict(response.get_json())


@all_backends
def test_a_whole_event_through_the_admin_api(
    api: ValidatingClient, admin: dict[str, str], clock: Any, services: Any
) -> None:
    # Create the event and register a relying party for it.
    created = api.post(
        "/admin/api/events",
        headers=admin,
        # More than the default 100 joins a minute come from this one test client.
        json={"event_id": "tour", "name": "Tour", "token_validity_period": 600, "rate_limits": {"join": "1000/minute"}},
    )
    assert created.status_code == 201 and created.headers["Location"] == "/admin/api/events/tour"
    client = api.post(
        "/admin/api/clients",
        headers=admin,
        json={
            "event_id": "tour",
            "redirect_uris": ["https://shop.example/cb"],
            "name": "Shop",
        },
    )
    assert client.status_code == 201 and len(client.get_json()["client_secret"]) >= 32

    # 100 visitors join, in order.
    joined = [_join(api, "tour") for _ in range(100)]
    assert [j["queue_number"] for j in joined] == list(range(1, 101))
    ids = [j["api_request_id"] for j in joined]

    # Nobody is served yet: a token request is "not yet".
    assert (
        api.post(
            "/admin/api/generate_token", headers=admin, json={"event_id": "tour", "request_id": ids[0]}
        ).status_code
        == 202
    )
    served = api.post(
        "/admin/api/increment_serving_counter", headers=admin, json={"event_id": "tour", "increment_by": 20}
    )
    assert served.get_json() == {"serving_num": 20}
    assert api.post(
        "/admin/api/increment_serving_counter", headers=admin, json={"event_id": "tour", "increment_by": 10}
    ).get_json() == {"serving_num": 30}

    # The first 30 fetch tokens (half through the admin API, half through the public one).
    tokens: dict[str, dict[str, Any]] = {}
    for i, rid in enumerate(ids[:30]):
        path = "/admin/api/generate_token" if i % 2 else "/api/generate_token"
        response = api.post(path, headers=admin if i % 2 else {}, json={"event_id": "tour", "request_id": rid})
        assert response.status_code == 200, response.get_json()
        tokens[rid] = response.get_json()
        assert claims(tokens[rid]["access_token"])["queue_position"] == i + 1
    assert (
        api.post(
            "/admin/api/generate_token", headers=admin, json={"event_id": "tour", "request_id": ids[30]}
        ).status_code
        == 202
    )

    # 10 complete, 5 abandon; a second update of the same session is a conflict.
    for rid in ids[:10]:
        done = api.post(
            "/admin/api/update_session", headers=admin, json={"event_id": "tour", "request_id": rid, "status": 1}
        )
        assert done.status_code == 200 and done.get_json()["status"] == 1
    for rid in ids[10:15]:
        assert (
            api.post(
                "/admin/api/update_session", headers=admin, json={"event_id": "tour", "request_id": rid, "status": -1}
            ).status_code
            == 200
        )
    again = api.post(
        "/admin/api/update_session", headers=admin, json={"event_id": "tour", "request_id": ids[0], "status": -1}
    )
    assert again.status_code == 409
    assert (
        api.post(
            "/admin/api/update_session", headers=admin, json={"event_id": "tour", "request_id": ids[50], "status": 1}
        ).status_code
        == 404
    )
    # A finished session's token can no longer be fetched, and no longer passes forward auth.
    assert api.post("/api/generate_token", json={"event_id": "tour", "request_id": ids[0]}).status_code == 410
    assert api.get("/verify?event_id=tour", headers=bearer(tokens[ids[0]]["access_token"])).status_code == 401
    assert api.get("/verify?event_id=tour", headers=bearer(tokens[ids[20]]["access_token"])).status_code == 200

    stats = api.get("/admin/api/events/tour/stats", headers=admin).get_json()
    # The Redis store also reports its loss record (none here).
    assert stats.pop("queue_store", {"losses": 0})["losses"] == 0
    assert stats == {
        "event_id": "tour",
        "queue": 100,
        "serving": 30,
        "waiting": 70,
        "tokens": 30,
        "expired": 0,
        "completed": 10,
        "abandoned": 5,
        "max_expired": 0,
        "active_tokens": 15,
        "lost": 0,
    }
    assert api.get("/admin/api/num_active_tokens?event_id=tour", headers=admin).get_json() == {"active_tokens": 15}
    assert api.get("/admin/api/expired_tokens?event_id=tour", headers=admin).get_json() == []

    # After the tokens' lifetime every one of them is listed as expired, page by page.
    clock.advance(601)
    expired, pages = all_pages(api, "/admin/api/expired_tokens?event_id=tour&limit=7", admin)
    assert sorted(expired) == sorted(ids[:30]) and len(expired) == 30 and pages == 5
    assert api.get("/admin/api/num_active_tokens?event_id=tour", headers=admin).get_json() == {"active_tokens": 0}

    # Reset: synchronous; counters zero, earlier ids unknown, earlier tokens inactive, joins start at 1.
    clock.advance(-601)
    assert api.get("/verify?event_id=tour", headers=bearer(tokens[ids[20]]["access_token"])).status_code == 200
    reset = api.post("/admin/api/reset_initial_state", headers=admin, json={"event_id": "tour"})
    assert reset.status_code == 200 and reset.get_json()["event_id"] == "tour"
    stats = api.get("/admin/api/events/tour/stats", headers=admin).get_json()
    assert {k: v for k, v in stats.items() if k != "event_id"} == dict.fromkeys(
        (
            "queue",
            "serving",
            "waiting",
            "tokens",
            "expired",
            "completed",
            "abandoned",
            "max_expired",
            "active_tokens",
            "lost",
        ),
        0,
    )
    assert api.get(f"/api/queue_num?event_id=tour&request_id={ids[20]}").status_code == 404
    assert (
        api.post(
            "/admin/api/generate_token", headers=admin, json={"event_id": "tour", "request_id": ids[20]}
        ).status_code
        == 404
    )
    assert (
        api.post(
            "/admin/api/update_session", headers=admin, json={"event_id": "tour", "request_id": ids[20], "status": 1}
        ).status_code
        == 404
    )
    assert api.get("/verify?event_id=tour", headers=bearer(tokens[ids[20]]["access_token"])).status_code == 401
    assert api.get("/admin/api/expired_tokens?event_id=tour", headers=admin).get_json() == []
    again_joined = [_join(api, "tour") for _ in range(3)]
    assert [j["queue_number"] for j in again_joined] == [1, 2, 3]
    # The event's settings and clients survive a reset.
    assert api.get("/admin/api/events/tour", headers=admin).get_json()["token_validity_period"] == 600
    assert len(api.get("/admin/api/clients?event_id=tour", headers=admin).get_json()["clients"]) == 1
    assert api.checked > 150


@pytest.mark.parametrize("value", [0, -1, -(2**63), 1.5, 1.0, "1", "", True, False, None, [], {}, 2**63, 2**64, 1e308])
def test_increment_by_must_be_a_positive_json_integer(
    api: ValidatingClient, admin: dict[str, str], event: Any, value: Any
) -> None:
    response = api.post(
        "/admin/api/increment_serving_counter", headers=admin, json={"event_id": "sale", "increment_by": value}
    )
    assert response.status_code == 400
    assert api.get("/api/serving_num?event_id=sale").get_json() == {"serving_counter": 0}


def test_increment_refuses_a_total_beyond_int64(api: ValidatingClient, admin: dict[str, str], event: Any) -> None:
    first = api.post(
        "/admin/api/increment_serving_counter", headers=admin, json={"event_id": "sale", "increment_by": 2**63 - 2}
    )
    assert first.get_json() == {"serving_num": 2**63 - 2}
    over = api.post("/admin/api/increment_serving_counter", headers=admin, json={"event_id": "sale", "increment_by": 2})
    assert over.status_code == 400
    last = api.post("/admin/api/increment_serving_counter", headers=admin, json={"event_id": "sale", "increment_by": 1})
    assert last.get_json() == {"serving_num": 2**63 - 1}


def test_increment_of_an_unknown_event_is_404(api: ValidatingClient, admin: dict[str, str]) -> None:
    response = api.post(
        "/admin/api/increment_serving_counter", headers=admin, json={"event_id": "nope", "increment_by": 1}
    )
    assert response.status_code == 404 and response.get_json()["error"] == "event_not_found"


@pytest.mark.parametrize("status", [0, 2, -2, 1.0, "1", True, None, [1]])
def test_update_session_accepts_only_1_or_minus_1(
    api: ValidatingClient, admin: dict[str, str], services: Any, event: Any, status: Any
) -> None:
    _event, entry = services.room.join("sale")
    services.room.increment_serving("sale", 1)
    assert (
        api.post(
            "/admin/api/generate_token", headers=admin, json={"event_id": "sale", "request_id": entry.request_id}
        ).status_code
        == 200
    )
    response = api.post(
        "/admin/api/update_session",
        headers=admin,
        json={"event_id": "sale", "request_id": entry.request_id, "status": status},
    )
    assert response.status_code == 400
    ok = api.post(
        "/admin/api/update_session",
        headers=admin,
        json={"event_id": "sale", "request_id": entry.request_id, "status": -1},
    )
    assert ok.status_code == 200


def test_generate_token_overrides_apply_to_that_call_only(
    api: ValidatingClient, admin: dict[str, str], services: Any, event: Any
) -> None:
    first = services.room.join("sale")[1].request_id
    second = services.room.join("sale")[1].request_id
    services.room.increment_serving("sale", 2)
    override = api.post(
        "/admin/api/generate_token",
        headers=admin,
        json={
            "event_id": "sale",
            "request_id": first,
            "issuer": "https://other.example/rooms",
            "validity_period": 60,
        },
    )
    assert override.status_code == 200
    got = claims(override.get_json()["id_token"])
    assert got["iss"] == "https://other.example/rooms" and got["exp"] - got["iat"] == 60
    plain = api.post("/admin/api/generate_token", headers=admin, json={"event_id": "sale", "request_id": second})
    got = claims(plain.get_json()["access_token"])
    assert got["iss"] == services.settings.issuer and got["exp"] - got["iat"] == 3600
    # A repeat returns the stored token set unchanged.
    repeat = api.post("/admin/api/generate_token", headers=admin, json={"event_id": "sale", "request_id": first})
    assert repeat.get_json()["access_token"] == override.get_json()["access_token"]


@pytest.mark.parametrize(
    "body",
    [
        {"issuer": "not a url"},
        {"issuer": "ftp://x.example"},
        {"issuer": 5},
        {"issuer": "https://" + "a" * 400},
        {"validity_period": 0},
        {"validity_period": -5},
        {"validity_period": 1.5},
        {"validity_period": "60"},
        {"validity_period": True},
        {"validity_period": 2**64},
    ],
)
def test_generate_token_refuses_bad_overrides(
    api: ValidatingClient, admin: dict[str, str], services: Any, event: Any, body: dict[str, Any]
) -> None:
    rid = services.room.join("sale")[1].request_id
    services.room.increment_serving("sale", 1)
    response = api.post(
        "/admin/api/generate_token", headers=admin, json={"event_id": "sale", "request_id": rid, **body}
    )
    assert response.status_code == 400
    assert services.room.counters("sale", fresh=True).tokens == 0


def test_events_resource(api: ValidatingClient, admin: dict[str, str]) -> None:
    for event_id in ("b-event", "a-event", "c-event"):
        assert api.post("/admin/api/events", headers=admin, json={"event_id": event_id}).status_code == 201
    assert api.post("/admin/api/events", headers=admin, json={"event_id": "a-event"}).status_code == 409
    first = api.get("/admin/api/events?limit=2", headers=admin).get_json()
    assert [e["event_id"] for e in first["events"]] == ["a-event", "b-event"] and first["next_cursor"] == "b-event"
    rest = api.get(f"/admin/api/events?limit=2&cursor={first['next_cursor']}", headers=admin).get_json()
    assert [e["event_id"] for e in rest["events"]] == ["c-event"] and rest["next_cursor"] is None

    patched = api.patch(
        "/admin/api/events/a-event",
        headers=admin,
        json={
            "name": "A",
            "queue_position_expiry_period": 120,
            "branding": {"title": "Hello", "primary_color": "#112233"},
        },
    )
    assert patched.status_code == 200
    got = api.get("/admin/api/events/a-event", headers=admin).get_json()
    assert got["name"] == "A" and got["queue_position_expiry_period"] == 120 and got["branding"]["title"] == "Hello"
    assert api.patch("/admin/api/events/a-event", headers=admin, json={"colour": "red"}).status_code == 400
    assert api.patch("/admin/api/events/nope", headers=admin, json={"name": "x"}).status_code == 404
    assert api.get("/admin/api/events/nope", headers=admin).status_code == 404
    assert api.get("/admin/api/events/bad%20id", headers=admin).status_code == 400

    # An event with clients cannot be deleted; without them it goes, with its queue.
    client_id = api.post(
        "/admin/api/clients",
        headers=admin,
        json={
            "event_id": "a-event",
            "redirect_uris": ["https://rp.example/cb"],
        },
    ).get_json()["client_id"]
    _join(api, "a-event")
    refused = api.delete("/admin/api/events/a-event", headers=admin)
    assert refused.status_code == 409 and refused.get_json()["error"] == "event_has_clients"
    assert api.delete(f"/admin/api/clients/{client_id}", headers=admin).status_code == 204
    assert api.delete("/admin/api/events/a-event", headers=admin).status_code == 204
    assert api.get("/admin/api/events/a-event", headers=admin).status_code == 404
    assert api.delete("/admin/api/events/a-event", headers=admin).status_code == 404
    # Created again, it starts from an empty queue.
    api.post("/admin/api/events", headers=admin, json={"event_id": "a-event"})
    assert _join(api, "a-event")["queue_number"] == 1


def test_clients_resource_shows_the_secret_only_at_creation_and_rotation(
    api: ValidatingClient, admin: dict[str, str], services: Any, event: Any
) -> None:
    created = api.post(
        "/admin/api/clients",
        headers=admin,
        json={
            "client_id": "shop",
            "event_id": "sale",
            "redirect_uris": ["https://shop.example/cb"],
            "initiate_login_uri": "https://shop.example/login",
            "post_logout_redirect_uris": ["https://shop.example/"],
            "token_endpoint_auth_methods": ["client_secret_post"],
            "max_parked_seconds": 120,
            "name": "Shop",
        },
    )
    assert created.status_code == 201
    secret = created.get_json()["client_secret"]
    assert services.clients.get("shop").check_secret(secret)
    shown = api.get("/admin/api/clients/shop", headers=admin).get_json()
    assert "client_secret" not in shown and shown["initiate_login_uri"] == "https://shop.example/login"
    listed = api.get("/admin/api/clients", headers=admin).get_json()
    assert [c["client_id"] for c in listed["clients"]] == ["shop"] and secret not in str(listed)
    assert (
        api.post(
            "/admin/api/clients",
            headers=admin,
            json={"client_id": "shop", "event_id": "sale", "redirect_uris": ["https://shop.example/cb"]},
        ).status_code
        == 409
    )
    assert (
        api.post(
            "/admin/api/clients", headers=admin, json={"event_id": "nope", "redirect_uris": ["https://shop.example/cb"]}
        ).status_code
        == 404
    )

    patched = api.patch("/admin/api/clients/shop", headers=admin, json={"max_parked_seconds": 60})
    assert patched.status_code == 200 and patched.get_json()["max_parked_seconds"] == 60
    assert api.patch("/admin/api/clients/shop", headers=admin, json={"redirect_uris": []}).status_code == 400
    assert api.patch("/admin/api/clients/nope", headers=admin, json={"name": "x"}).status_code == 404

    rotated = api.post("/admin/api/clients/shop/rotate_secret", headers=admin)
    assert rotated.status_code == 200
    new_secret = rotated.get_json()["client_secret"]
    assert new_secret != secret
    assert services.clients.get("shop").check_secret(new_secret)
    assert not services.clients.get("shop").check_secret(secret)
    assert api.post("/admin/api/clients/nope/rotate_secret", headers=admin).status_code == 404
    assert api.delete("/admin/api/clients/shop", headers=admin).status_code == 204
    assert api.get("/admin/api/clients/shop", headers=admin).status_code == 404


def test_signing_keys_resource(api: ValidatingClient, admin: dict[str, str], services: Any, clock: Any) -> None:
    before = api.get("/jwks.json").get_json()["keys"]
    listed = api.get("/admin/api/keys", headers=admin).get_json()["keys"]
    assert sorted(k["kid"] for k in listed) == sorted(k["kid"] for k in before)
    rotated = api.post("/admin/api/keys/rotate", headers=admin, json={})
    assert rotated.status_code == 201 and rotated.get_json()["alg"] == "RS256"
    new_kid = rotated.get_json()["kid"]
    after = {k["kid"] for k in api.get("/jwks.json").get_json()["keys"]}
    old_rs = next(k["kid"] for k in before if k["alg"] == "RS256")
    assert new_kid in after and old_rs in after  # published at once; the old key still signs
    assert rotated.get_json()["active_from"] == services.keys.active_from(new_kid) > clock.now()
    states = {k["kid"]: k["status"] for k in api.get("/admin/api/keys", headers=admin).get_json()["keys"]}
    assert states[new_kid] == "next" and states[old_rs] == "active"
    clock.advance(services.keys.activation_delay)
    states = {k["kid"]: k["status"] for k in api.get("/admin/api/keys", headers=admin).get_json()["keys"]}
    assert states[new_kid] == "active" and states[old_rs] == "retiring"
    es = api.post("/admin/api/keys/rotate", headers=admin, json={"alg": "ES256"})
    assert es.status_code == 201 and es.get_json()["alg"] == "ES256"
    for body in ({"alg": "HS256"}, {"alg": None}, {"alg": 1}, {"size": 4096}):
        assert api.post("/admin/api/keys/rotate", headers=admin, json=body).status_code == 400
    # No body at all: the only field is optional, so this is a rotation with the default algorithm.
    empty = api.post("/admin/api/keys/rotate", headers=admin)
    assert empty.status_code == 201 and empty.get_json()["alg"] == "RS256"


def test_admin_keys_resource(api: ValidatingClient, admin: dict[str, str], clock: Any, services: Any) -> None:
    created = api.post("/admin/api/admin_keys", headers=admin, json={"name": "reader", "scopes": ["events:read"]})
    assert created.status_code == 201
    body = created.get_json()
    key, key_id = body["key"], body["key_id"]
    assert key.startswith(f"idpk_{key_id}_") and body["scopes"] == ["events:read"]
    listed = api.get("/admin/api/admin_keys", headers=admin).get_json()["admin_keys"]
    assert key_id in {k["key_id"] for k in listed} and key not in str(listed)
    # The stored record holds a hash, never the key.
    from sqlalchemy import select

    from idp.storage.models import AdminKey

    with services.db.session(readonly=True) as session:
        stored = session.execute(select(AdminKey).where(AdminKey.key_id == key_id)).scalar_one()
        assert key.split("_", 2)[2] not in stored.key_hash

    # The reader reads, may not write; its use is recorded at most once a minute.
    assert api.get("/admin/api/events", headers=bearer(key)).status_code == 200
    assert api.post("/admin/api/events", headers=bearer(key), json={"event_id": "x"}).status_code == 403
    first_use = services.admin_keys.get(key_id).last_used_at
    assert first_use == int(clock.now())
    clock.advance(30)
    api.get("/admin/api/events", headers=bearer(key))
    assert services.admin_keys.get(key_id).last_used_at == first_use
    clock.advance(31)
    api.get("/admin/api/events", headers=bearer(key))
    assert services.admin_keys.get(key_id).last_used_at == first_use + 61

    for bad in (
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "scopes": []},
        {"name": "", "scopes": ["admin"]},
        {"name": "x"},
        {"scopes": ["admin"]},
        {"name": "x", "scopes": "admin", "extra": 1},
        {"name": "a\nb", "scopes": ["admin"]},
        {"name": 5, "scopes": ["admin"]},
    ):
        assert api.post("/admin/api/admin_keys", headers=admin, json=bad).status_code == 400, bad

    revoked = api.delete(f"/admin/api/admin_keys/{key_id}", headers=admin)
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"] == int(clock.now())
    refused = api.get("/admin/api/events", headers=bearer(key))
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.delete("/admin/api/admin_keys/0000000000000000", headers=admin).status_code == 404
    assert api.delete("/admin/api/admin_keys/not-a-key-id", headers=admin).status_code == 404


def test_every_admin_write_is_audited_without_secrets(api: ValidatingClient, services: Any) -> None:
    _record, plaintext = services.admin_keys.create("auditor", ["admin"])
    key_id = _record.key_id
    admin = bearer(plaintext)
    api.post("/admin/api/events", headers=admin, json={"event_id": "gig", "name": "Gig"})
    client = api.post(
        "/admin/api/clients",
        headers=admin,
        json={"client_id": "rp", "event_id": "gig", "redirect_uris": ["https://rp.example/cb"]},
    ).get_json()
    rotated = api.post("/admin/api/clients/rp/rotate_secret", headers=admin).get_json()
    made = api.post("/admin/api/admin_keys", headers=admin, json={"name": "ci", "scopes": ["events:write"]}).get_json()
    api.delete(f"/admin/api/admin_keys/{made['key_id']}", headers=admin)
    rid = _join(api, "gig")["api_request_id"]
    api.post("/admin/api/increment_serving_counter", headers=admin, json={"event_id": "gig", "increment_by": 1})
    token = api.post("/admin/api/generate_token", headers=admin, json={"event_id": "gig", "request_id": rid}).get_json()
    api.post("/admin/api/update_session", headers=admin, json={"event_id": "gig", "request_id": rid, "status": 1})
    api.patch("/admin/api/events/gig", headers=admin, json={"name": "Gig 2"})
    api.post("/admin/api/keys/rotate", headers=admin, json={})
    api.post("/admin/api/reset_initial_state", headers=admin, json={"event_id": "gig"})
    api.delete("/admin/api/clients/rp", headers=admin)
    api.delete("/admin/api/events/gig", headers=admin)
    # Reads and refused writes leave no record.
    api.get("/admin/api/events", headers=admin)
    api.post("/admin/api/events", headers=admin, json={"event_id": "bad id"})

    page = api.get("/admin/api/audit?limit=100", headers=admin).get_json()
    actions = [e["action"] for e in reversed(page["entries"])]
    assert actions == [
        "event.create",
        "client.create",
        "client.rotate_secret",
        "admin_key.create",
        "admin_key.revoke",
        "increment_serving_counter",
        "generate_token",
        "update_session",
        "event.update",
        "keys.rotate",
        "reset_initial_state",
        "client.delete",
        "event.delete",
    ]
    assert {e["key_id"] for e in page["entries"]} == {key_id}
    assert all(isinstance(e["at"], int) for e in page["entries"])
    text = str(page)
    for secret in (client["client_secret"], rotated["client_secret"], made["key"], rid, token["access_token"]):
        assert secret not in text

    first = api.get("/admin/api/audit?limit=5", headers=admin).get_json()
    second = api.get(f"/admin/api/audit?limit=5&cursor={first['next_cursor']}", headers=admin).get_json()
    assert [e["id"] for e in first["entries"] + second["entries"]] == [e["id"] for e in page["entries"][:10]]
    assert api.get("/admin/api/audit?cursor=abc", headers=admin).status_code == 400
    assert api.get("/admin/api/audit?limit=0", headers=admin).status_code == 400


def test_the_openapi_document_is_served_and_valid(api: ValidatingClient) -> None:
    response = api.get("/admin/api/openapi.yaml")
    assert response.status_code == 200 and response.mimetype == "text/yaml"
    document = yaml.safe_load(response.get_data(as_text=True))
    assert document == yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    validate_spec(document)


def test_every_route_of_the_app_is_in_the_openapi_document(app: Any) -> None:
    """A new route without a description fails here."""
    document = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", "{" + arg + "}")
            for converter in ("string", "path", "int"):
                path = path.replace(f"<{converter}:{arg}>", "{" + arg + "}")
        item = document["paths"].get(path)
        for method in sorted((rule.methods or set()) - {"OPTIONS", "HEAD"}):
            if item is None or method.lower() not in item:
                missing.append(f"{method} {path}")
    assert missing == [], "describe these routes in idp/admin/openapi.yaml"


def test_the_spec_check_can_fail() -> None:
    """The validating client would notice an answer that strays from the document."""
    with pytest.raises(SpecMismatch):
        check_exchange(
            "GET",
            "/admin/api/events/x/stats",
            request_headers={},
            request_body=None,
            status=200,
            response_headers={"Content-Type": "application/json"},
            response_body=b'{"queue": -1}',
        )
    with pytest.raises(SpecMismatch):
        check_exchange(
            "GET",
            "/admin/api/events",
            request_headers={},
            request_body=None,
            status=418,
            response_headers={"Content-Type": "application/json"},
            response_body=b'{"error": "x", "message": "y"}',
        )
    with pytest.raises(SpecMismatch):
        check_exchange(
            "GET",
            "/admin/api/events",
            request_headers={},
            request_body=None,
            status=401,
            response_headers={"Content-Type": "application/json"},
            response_body=b'{"error": "x", "message": "y"}',
        )  # no WWW-Authenticate
    with pytest.raises(SpecMismatch):
        check_exchange(
            "GET",
            "/not/described",
            request_headers={},
            request_body=None,
            status=200,
            response_headers={"Content-Type": "application/json"},
            response_body=b"{}",
        )
