"""The forward-auth verifier ``/verify``: accepts a good access token, refuses everything else with 401."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import event as sa_event

from idp.tokens.issuer import TokenService, sign_jwt
from idp.tokens.keys import KeyManager
from tests.conftest import all_backends
from tests.integration.test_tokens import admitted, generate

pytestmark = pytest.mark.integration

T0 = 1_800_000_000


def b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def verify(client: Any, token: str | None = None, *, query: str = "?event_id=sale", **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.get("/verify" + query, headers=headers, **kwargs)


@pytest.fixture
def issued(client: Any, services: Any, event: Any) -> dict[str, Any]:
    rid = admitted(services)
    body = generate(client, rid).get_json()
    return {"request_id": rid, **body}


def refused(answer: Any, words: str | None = None) -> None:
    assert answer.status_code == 401, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["error"] == "invalid_token"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    if words:
        assert words in body["message"]


@all_backends
def test_a_good_access_token_passes_with_the_visitor_headers(client, issued, services):
    place = services.tokens.place_reference("sale", issued["request_id"])
    answer = verify(client, issued["access_token"])
    assert answer.status_code == 200
    assert answer.headers["X-Queue-Place"] == place and len(place) == 32
    assert answer.headers["X-Queue-Position"] == "1"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.get_json() == {"place": place, "event_id": "sale", "queue_position": 1}
    # The request id is the place's bearer secret: it never reaches the origin.
    assert issued["request_id"] not in str(answer.headers) + answer.get_data(as_text=True)


def test_the_accepted_events_are_explicit(client, issued, backend_settings, clock):
    from idp.app import create_app

    # A guard that names no event is refused: any event's token would otherwise open the origin.
    refused(verify(client, issued["access_token"], query=""), "IDP_VERIFY_EVENTS")
    for events, accepted in ((("other", "sale"), True), (("other",), False)):
        listed = create_app(dataclasses.replace(backend_settings, verify_events=events), clock=clock)
        try:
            answer = verify(listed.test_client(), issued["access_token"], query="")
            if accepted:
                assert answer.status_code == 200
            else:
                refused(answer, "another event")
        finally:
            listed.extensions["idp"].close()


def test_the_token_may_come_in_the_configured_cookie(client, issued, services):
    client.set_cookie(services.settings.verify_cookie, issued["access_token"])
    assert verify(client).status_code == 200
    client.delete_cookie(services.settings.verify_cookie)
    refused(verify(client), "required")


def test_forward_auth_answers_whatever_method_the_guarded_request_used(client, issued):
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        ok = client.open(
            "/verify?event_id=sale", method=method, headers={"Authorization": f"Bearer {issued['access_token']}"}
        )
        assert ok.status_code == 200, method
        assert client.open("/verify", method=method).status_code == 401, method


@all_backends
def test_expired_and_not_yet_valid_tokens_are_refused(client, services, issued, clock):
    clock.set(T0 + 3599)
    assert verify(client, issued["access_token"]).status_code == 200
    clock.set(T0 + 3600)
    refused(verify(client, issued["access_token"]), "expired")
    clock.set(T0 - 1)
    refused(verify(client, issued["access_token"]), "not valid yet")


def test_refresh_and_id_tokens_do_not_open_the_door(client, issued):
    refused(verify(client, issued["id_token"]), "not an access token")
    refused(verify(client, issued["refresh_token"]), "not an access token")


def test_a_token_for_another_event_is_refused(client, services, issued):
    services.events.create({"event_id": "other"})
    refused(verify(client, issued["access_token"], query="?event_id=other"), "another event")
    refused(verify(client, issued["access_token"], query="?event_id=" + "x" * 300))


@all_backends
def test_a_finished_session_is_refused(client, services, issued):
    services.tokens.update_session("sale", issued["request_id"], 1)
    refused(verify(client, issued["access_token"]), "finished")


def test_forged_tokens_are_refused(client, services, issued):
    head, payload, signature = issued["access_token"].split(".")
    claims = claims_of(issued["access_token"])
    # A changed claim under the original signature.
    refused(verify(client, f"{head}.{b64(dict(claims, queue_position=0))}.{signature}"), "signature")
    # A changed signature.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    refused(verify(client, f"{head}.{payload}.{flipped}"), "signature")
    # No signature at all.
    refused(verify(client, f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."))
    kid = services.keys.public_jwk()["kid"]
    refused(verify(client, f"{b64({'alg': 'none', 'kid': kid})}.{payload}."))
    # HS256 keyed with the public key (algorithm confusion).
    public_pem = services.keys.verification_key(kid).as_pem()
    signing_input = f"{b64({'alg': 'HS256', 'kid': kid})}.{payload}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    refused(verify(client, f"{signing_input}.{b64(mac)}"))
    # ES256 named in the header of an RSA key id.
    refused(verify(client, f"{b64({'alg': 'ES256', 'kid': kid})}.{payload}.{signature}"), "unknown key")


def test_tokens_signed_by_unknown_keys_are_refused(client, services, issued):
    claims = claims_of(issued["access_token"])
    kid = services.keys.public_jwk()["kid"]
    for alg, stranger in (
        ("RS256", RSAKey.generate_key(2048, private=True)),
        ("ES256", ECKey.generate_key("P-256", private=True)),
    ):
        # A key nobody published.
        unknown = jws.serialize_compact(
            {"typ": "JWT", "alg": alg, "kid": "not-a-published-key"}, json.dumps(claims), stranger, algorithms=[alg]
        )
        refused(verify(client, unknown), "unknown key")
        # A stranger's key pretending to be ours.
        if alg == "RS256":
            impostor = jws.serialize_compact(
                {"typ": "JWT", "alg": alg, "kid": kid}, json.dumps(claims), stranger, algorithms=[alg]
            )
            refused(verify(client, impostor), "signature")


def test_tokens_we_signed_with_wrong_claims_are_refused(client, services, issued):
    claims = claims_of(issued["access_token"])
    cases = [
        (dict(claims, iss="https://elsewhere.example"), "issuer"),
        (dict(claims, aud="other"), "no known session"),
        (dict(claims, sub="00000000-0000-4000-8000-000000000000"), "no known session"),
        (dict(claims, sub="not-a-uuid"), "subject"),
        (dict(claims, sub=5), "subject"),
        ({k: v for k, v in claims.items() if k != "exp"}, "exp"),
        (dict(claims, exp="soon"), "exp"),
        (dict(claims, exp=True), "exp"),
        (dict(claims, nbf=None), "nbf"),
        (dict(claims, token_use=None), "not an access token"),
    ]
    for changed, words in cases:
        aud = changed.get("aud")
        query = f"?event_id={aud}" if isinstance(aud, str) and aud else "?event_id=sale"
        refused(verify(client, sign_jwt(changed, services.keys), query=query), words)
    # A validly signed payload that is not a JSON object.
    key = services.keys.signing_key()
    for payload in (b"[1, 2]", b"not json", b"\xff\xfe", b'"text"'):
        token = jws.serialize_compact({"alg": "RS256", "kid": key.kid}, payload, key, algorithms=["RS256"])
        refused(verify(client, token))


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer ...",
        "Bearer " + b64([1, 2]) + ".e30.sig",
        "Bearer " + b64("text") + ".e30.sig",
        "Bearer " + b64({"alg": "RS256"}) + ".e30.sig",
        "Bearer " + b64({"alg": "RS256", "kid": 5}) + ".e30.sig",
        "Bearer " + b64({"alg": ["RS256"], "kid": "k"}) + ".e30.sig",
        "Bearer " + b64({"alg": "RS256", "kid": "k", "crit": ["exp"]}) + ".e30.sig",
        "Bearer " + b64(b"\xff\xfe") + ".e30.sig",
        "Bearer %%%.%%%.%%%",
        "Bearer " + "a" * 100_000,
        "Bearer " + ("a." * 5000),
        "Basic dXNlcjpwYXNz",
        "bearer",
        "\u00e9",
    ],
)
def test_malformed_authorization_headers_are_401_not_500(client, issued, authorization):
    answer = client.get("/verify", headers={"Authorization": authorization})
    assert answer.status_code == 401
    assert answer.get_json()["error"] == "invalid_token"


def test_a_valid_unfinished_session_costs_no_database_read(services, issued, backend_settings, clock):
    settings = dataclasses.replace(backend_settings, session_cache_seconds=60)
    keys = KeyManager(services.db, settings.secret_key, clock, 60, refresh_seconds=3600)
    tokens = TokenService(services.db, services.room, keys, clock, settings)
    token = issued["access_token"]
    assert tokens.verify_access_token(token, "sale")["sub"] == issued["request_id"]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engines = {id(services.db.engine): services.db.engine, id(services.db.read_engine): services.db.read_engine}
    for engine in engines.values():
        sa_event.listen(engine, "before_cursor_execute", count)
    try:
        # The counter sees reads: the app's own service has no session cache in these tests.
        services.tokens.verify_access_token(token, "sale")
        assert statements
        statements.clear()
        for _ in range(20):
            assert tokens.verify_access_token(token, "sale")["queue_position"] == 1
    finally:
        for engine in engines.values():
            sa_event.remove(engine, "before_cursor_execute", count)
    assert statements == []
    # Finishing the session through this service drops its cached state at once.
    tokens.update_session("sale", issued["request_id"], -1)
    from idp.tokens.issuer import InvalidTokenError

    with pytest.raises(InvalidTokenError):
        tokens.verify_access_token(token, "sale")


def test_an_empty_or_repeated_event_id_fails_closed(client, issued):
    refused(verify(client, issued["access_token"], query="?event_id="), "once")
    refused(verify(client, issued["access_token"], query="?event_id=sale&event_id=sale"), "once")
    assert verify(client, issued["access_token"], query="?event_id=sale").status_code == 200
