"""Admission tokens over real stores: the AWS token set, idempotency, expiry, sessions and rotation."""

from __future__ import annotations

import json
import threading
from typing import Any

import jwt as pyjwt
import pytest
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt
from sqlalchemy import func, select, text

from idp.storage.models import OutboxEntry, TokenRecord
from idp.tokens.issuer import TokenService
from tests.conftest import all_backends

pytestmark = pytest.mark.integration

ISSUER = "http://127.0.0.1:8000"
T0 = 1_800_000_000


def admitted(services: Any, event_id: str = "sale") -> str:
    """Join the queue and move the serving counter to the new place; return its request id."""
    _event, entry = services.room.join(event_id)
    serving = services.room.counters(event_id, fresh=True).serving
    if serving < entry.position:
        services.room.increment_serving(event_id, entry.position - serving)
    return entry.request_id


def generate(client: Any, request_id: str, event_id: str = "sale") -> Any:
    return client.post("/api/generate_token", json={"event_id": event_id, "request_id": request_id})


def header(token: str) -> dict[str, Any]:
    return pyjwt.get_unverified_header(token)


# The injected clock is not the libraries' clock: they check signature, audience and issuer here; the
# time claims are checked by our verifier at the injected time and by the end-to-end tests at real time.
NO_TIME = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}


def pyjwt_verify(client: Any, token: str, audience: str = "sale") -> dict[str, Any]:
    """Verify with PyJWT against the JWKS the app publishes."""
    jwks = pyjwt.PyJWKSet.from_dict(client.get("/jwks.json").get_json())
    kid = header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    return pyjwt.decode(token, key, algorithms=["RS256", "ES256"], audience=audience, issuer=ISSUER, options=NO_TIME)


def jwcrypto_verify(client: Any, token: str) -> dict[str, Any]:
    keyset = jwcrypto_jwk.JWKSet.from_json(client.get("/jwks.json").get_data(as_text=True))
    verified = jwcrypto_jwt.JWT(jwt=token, key=keyset, expected_type="JWS", check_claims=False)
    claims = json.loads(verified.claims)
    assert claims["aud"] == "sale" and claims["iss"] == ISSUER
    return claims


# --- the token set -------------------------------------------------------------------------------


def test_token_set_has_the_aws_shape_and_verifies_with_pyjwt_and_jwcrypto(client, services, event):
    rid = admitted(services)
    answer = generate(client, rid)
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers["Cache-Control"] == "private, no-store"
    body = answer.get_json()
    assert set(body) == {"access_token", "refresh_token", "id_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    active_kid = services.keys.public_jwk()["kid"]
    jtis = set()
    for use in ("access", "refresh", "id"):
        token = body[f"{use}_token"]
        assert header(token) == {"typ": "JWT", "alg": "RS256", "kid": active_kid}
        claims = pyjwt_verify(client, token)
        assert claims == jwcrypto_verify(client, token)
        assert claims["aud"] == "sale" and claims["sub"] == rid and claims["queue_position"] == 1
        assert claims["token_use"] == use
        assert claims["iat"] == claims["nbf"] == T0
        assert claims["exp"] == T0 + 3600
        assert claims["iss"] == ISSUER
        jtis.add(claims["jti"])
    assert len(jtis) == 3


def test_es256_tokens_verify_with_pyjwt_and_jwcrypto(client, services, event, backend_settings, clock):
    es = TokenService(services.db, services.room, services.keys, clock, backend_settings, alg="ES256")
    rid = admitted(services)
    body = es.issue("sale", rid)
    kid = services.keys.public_jwk("ES256")["kid"]
    published = {k["kid"]: k for k in client.get("/jwks.json").get_json()["keys"]}
    assert published[kid]["kty"] == "EC" and published[kid]["crv"] == "P-256" and published[kid]["alg"] == "ES256"
    for use in ("access", "refresh", "id"):
        token = body[f"{use}_token"]
        assert header(token)["alg"] == "ES256" and header(token)["kid"] == kid
        assert pyjwt_verify(client, token)["token_use"] == use
        assert jwcrypto_verify(client, token)["sub"] == rid
    ok = client.get("/verify?event_id=sale", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ok.status_code == 200


def test_public_key_returns_the_active_jwk_of_a_known_event(client, services, event):
    answer = client.get("/api/public_key?event_id=sale")
    assert answer.status_code == 200
    key = answer.get_json()
    assert key == services.keys.public_jwk()
    assert set(key) == {"kty", "kid", "use", "alg", "n", "e"}
    assert key in client.get("/jwks.json").get_json()["keys"]
    assert client.get("/api/public_key?event_id=nope").status_code == 404
    assert client.get("/api/public_key").status_code == 400


def test_jwks_is_public_and_briefly_cacheable_and_holds_no_private_parts(client, services):
    answer = client.get("/jwks.json")
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    keys = answer.get_json()["keys"]
    # Both algorithms' keys exist from the start, so an ES256 client signs with a published key at once.
    assert sorted((k["kty"], k["alg"]) for k in keys) == [("EC", "ES256"), ("RSA", "RS256")]
    for key in keys:
        assert key["use"] == "sig" and key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


# --- 202 / 404 / 410 and the boundaries -----------------------------------------------------------


@all_backends
def test_not_served_unknown_and_expired_positions(client, services, event, clock):
    _e, waiting = services.room.join("sale")
    answer = generate(client, waiting.request_id)
    assert answer.status_code == 202
    assert answer.get_json()["error"] == "not_served_yet"
    assert generate(client, "00000000-0000-4000-8000-000000000000").status_code == 404
    assert generate(client, waiting.request_id, event_id="other").status_code == 404
    assert generate(client, "not-a-uuid").status_code == 400

    services.room.increment_serving("sale", 1)
    late = services.room.join("sale")[1]
    services.room.increment_serving("sale", 1)
    # Claimable up to exactly queue_position_expiry_period (900 s) after admission, not a second more.
    clock.advance(900)
    assert generate(client, waiting.request_id).status_code == 200
    clock.advance(1)
    gone = generate(client, late.request_id)
    assert gone.status_code == 410
    assert gone.get_json()["error"] == "queue_position_expired"
    # The claimed place keeps its token after the claim window.
    assert generate(client, waiting.request_id).status_code == 200
    counters = services.room.counters("sale", fresh=True)
    assert counters.tokens == 1


def test_a_request_id_of_another_event_is_unknown_here(client, services, event):
    services.events.create({"event_id": "other"})
    rid = admitted(services, "other")
    assert generate(client, rid, event_id="other").status_code == 200
    assert generate(client, rid, event_id="sale").status_code == 404


@all_backends
def test_repeated_calls_return_the_same_tokens_with_falling_expires_in_until_exp(client, services, event, clock):
    rid = admitted(services)
    first = generate(client, rid).get_json()
    clock.advance(3599)
    later = generate(client, rid).get_json()
    assert later["expires_in"] == 1
    assert {k: v for k, v in later.items() if k != "expires_in"} == {
        k: v for k, v in first.items() if k != "expires_in"
    }
    ok = client.get("/verify?event_id=sale", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert ok.status_code == 200
    clock.advance(1)  # now == exp: the token is no longer valid (RFC 7519: "on or after")
    expired = generate(client, rid)
    assert expired.status_code == 410
    assert expired.get_json()["error"] == "token_expired"
    refused = client.get("/verify?event_id=sale", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert refused.status_code == 401
    assert "expired" in refused.get_json()["message"]
    assert services.room.counters("sale", fresh=True).tokens == 1
    with services.db.session(readonly=True) as session:
        kinds = session.execute(select(OutboxEntry.kind)).scalars().all()
    assert kinds.count("token_generated") == 1


def test_overrides_apply_to_the_first_issuance_only(services, event, clock):
    rid = admitted(services)
    first = services.tokens.issue("sale", rid, issuer="https://rooms.example.com/private", validity=60)
    assert first["expires_in"] == 60
    again = services.tokens.issue("sale", rid, validity=7200)
    assert again == first
    claims = pyjwt.decode(first["access_token"], options={"verify_signature": False})
    assert claims["iss"] == "https://rooms.example.com/private"
    assert claims["exp"] == T0 + 60
    # The overridden issuer is the one this service recorded, so the verifier accepts it.
    assert services.tokens.verify_access_token(first["access_token"])["sub"] == rid


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"validity": 0}, "invalid_validity"),
        ({"validity": 1.5}, "invalid_validity"),
        ({"validity": True}, "invalid_validity"),
        ({"validity": "60"}, "invalid_validity"),
        ({"issuer": "ftp://x"}, "invalid_issuer"),
        ({"issuer": "https://x/"}, "invalid_issuer"),
        ({"issuer": "https://x y"}, "invalid_issuer"),
        ({"issuer": 5}, "invalid_issuer"),
    ],
)
def test_bad_overrides_are_refused(services, event, kwargs, code):
    from idp.errors import ValidationError

    rid = admitted(services)
    with pytest.raises(ValidationError) as caught:
        services.tokens.issue("sale", rid, **kwargs)
    assert caught.value.code == code
    assert services.room.counters("sale", fresh=True).tokens == 0


# --- idempotency under concurrency ----------------------------------------------------------------


@all_backends
def test_fifty_concurrent_first_calls_get_one_token_set(services, event):
    rid = admitted(services)
    barrier = threading.Barrier(50)
    results: list[Any] = [None] * 50

    def call(index: int) -> None:
        barrier.wait()
        try:
            results[index] = services.tokens.issue("sale", rid)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors[:3]
    assert all(r == results[0] for r in results)
    with services.db.session(readonly=True) as session:
        assert session.execute(select(func.count()).select_from(TokenRecord)).scalar_one() == 1
        generated = session.execute(
            select(func.count()).select_from(OutboxEntry).where(OutboxEntry.kind == "token_generated")
        ).scalar_one()
    assert generated == 1
    assert services.room.counters("sale", fresh=True).tokens == 1


def test_concurrent_http_first_calls_get_byte_identical_answers(app, services, event):
    rid = admitted(services)
    barrier = threading.Barrier(20)
    bodies: list[bytes] = [b""] * 20

    def call(index: int) -> None:
        client = app.test_client()
        barrier.wait()
        bodies[index] = generate(client, rid).get_data()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(bodies)) == 1
    assert json.loads(bodies[0])["token_type"] == "Bearer"
    assert services.room.counters("sale", fresh=True).tokens == 1


# --- sessions ----------------------------------------------------------------------------------


@all_backends
@pytest.mark.parametrize(("status", "label"), [(1, "completed"), (-1, "abandoned")])
def test_finished_sessions_end_their_tokens_once(client, services, event, status, label):
    rid = admitted(services)
    other = admitted(services)
    token = generate(client, rid).get_json()["access_token"]
    generate(client, other)
    assert services.tokens.active_count("sale") == 2
    result = services.tokens.update_session("sale", rid, status)
    assert result["status"] == status
    assert services.tokens.active_count("sale") == 1
    counters = services.room.counters("sale", fresh=True)
    assert (counters.completed, counters.abandoned) == ((1, 0) if status == 1 else (0, 1))
    gone = generate(client, rid)
    assert gone.status_code == 410
    assert gone.get_json()["error"] == "session_finished"
    refused = client.get("/verify?event_id=sale", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    from idp.errors import ConflictError

    with pytest.raises(ConflictError):
        services.tokens.update_session("sale", rid, -status)
    counters = services.room.counters("sale", fresh=True)
    assert counters.completed + counters.abandoned == 1
    with services.db.session(readonly=True) as session:
        notes = (
            session.execute(select(OutboxEntry.payload).where(OutboxEntry.kind == "session_updated")).scalars().all()
        )
    assert notes == [{"event_id": "sale", "place": services.tokens.place_reference("sale", rid), "status": label}]


def test_update_session_refuses_unknown_requests_and_bad_status(services, event):
    from idp.errors import NotFoundError, ValidationError

    _e, entry = services.room.join("sale")
    with pytest.raises(NotFoundError):
        services.tokens.update_session("sale", entry.request_id, 1)  # no token yet
    with pytest.raises(NotFoundError):
        services.tokens.update_session("nope", entry.request_id, 1)
    for bad in (0, 2, True, 1.0, "1", None):
        with pytest.raises(ValidationError):
            services.tokens.update_session("sale", entry.request_id, bad)
    rid = admitted(services)
    services.tokens.issue("sale", rid)
    services.events.create({"event_id": "other"})
    with pytest.raises(NotFoundError):
        services.tokens.update_session("other", rid, 1)


@all_backends
def test_active_count_and_expired_request_ids_page_by_expiry(services, event, clock):
    issued = []
    for _ in range(5):
        rid = admitted(services)
        services.tokens.issue("sale", rid)
        issued.append(rid)
        clock.advance(10)
    assert services.tokens.active_count("sale") == 5
    assert services.tokens.expired_request_ids("sale") == ([], None)
    # Tokens expire at T0+3600, +3610, ...; at T0+3620 the first three have expired.
    clock.set(T0 + 3620)
    assert services.tokens.active_count("sale") == 2
    page, cursor = services.tokens.expired_request_ids("sale", limit=2)
    assert page == issued[:2] and cursor is not None
    page, cursor = services.tokens.expired_request_ids("sale", limit=2, cursor=cursor)
    assert page == issued[2:3] and cursor is None
    clock.set(T0 + 10_000)
    assert services.tokens.active_count("sale") == 0
    everything, _ = services.tokens.expired_request_ids("sale", limit=1000)
    assert everything == issued


def test_expired_request_ids_refuses_bad_paging(services, event):
    from idp.errors import NotFoundError, ValidationError

    for limit in (0, 1001, -1, 1.5, True, "10"):
        with pytest.raises(ValidationError):
            services.tokens.expired_request_ids("sale", limit=limit)
    for cursor in ("x", "1:2", 5, "1800000000:not-a-uuid", "9" * 30 + ":" + "0" * 36):
        with pytest.raises(ValidationError):
            services.tokens.expired_request_ids("sale", cursor=cursor)
    with pytest.raises(NotFoundError):
        services.tokens.active_count("nope")


# --- signing keys --------------------------------------------------------------------------------


def test_rotation_keeps_old_tokens_valid_until_they_expire(client, services, event, clock):
    services.keys.grace_seconds = 60
    old_rid = admitted(services)
    old = generate(client, old_rid).get_json()
    old_kid = header(old["access_token"])["kid"]
    clock.advance(100)
    new_kid = services.keys.rotate()
    assert new_kid != old_kid
    # Published at once, signing only after every process re-read the keys and every JWKS cache expired.
    activation = T0 + 100 + services.keys.activation_delay
    assert services.keys.active_from(new_kid) == activation
    assert {k["kid"] for k in client.get("/jwks.json").get_json()["keys"]} >= {old_kid, new_kid}
    assert header(generate(client, admitted(services)).get_json()["access_token"])["kid"] == old_kid
    assert {k["kid"]: k["status"] for k in services.keys.list_keys()}[new_kid] == "next"
    clock.set(activation)
    # The old token still verifies through the published JWKS and through /verify.
    assert pyjwt_verify(client, old["access_token"])["sub"] == old_rid
    assert (
        client.get("/verify?event_id=sale", headers={"Authorization": f"Bearer {old['access_token']}"}).status_code
        == 200
    )
    # Asking again returns the very same tokens, still signed by the retiring key.
    assert generate(client, old_rid).get_json()["access_token"] == old["access_token"]
    new = generate(client, admitted(services)).get_json()
    assert header(new["access_token"])["kid"] == new_kid
    assert pyjwt_verify(client, new["access_token"])["token_use"] == "access"
    statuses = {k["kid"]: k for k in services.keys.list_keys()}
    assert statuses[old_kid]["status"] == "retiring" and statuses[new_kid]["status"] == "active"
    # Retire after: the new key's activation + the longest token lifetime (3600) + grace (60).
    retire_after = activation + 3600 + 60
    assert statuses[old_kid]["retiring_at"] == activation
    assert statuses[old_kid]["retire_after"] == retire_after

    def published() -> set[str]:
        return {k["kid"] for k in client.get("/jwks.json").get_json()["keys"]}

    es_kid = services.keys.ensure_active("ES256")
    clock.set(retire_after - 1)
    assert published() == {old_kid, new_kid, es_kid}
    clock.set(retire_after)
    assert published() == {new_kid, es_kid}
    assert services.keys.verification_key(old_kid) is None
    assert {k["kid"]: k["status"] for k in services.keys.list_keys()}[old_kid] == "retired"


def test_rotation_waits_for_the_longest_token_the_old_key_signed(services, event, clock):
    services.keys.grace_seconds = 0
    rid = admitted(services)
    services.tokens.issue("sale", rid, validity=10 * 86400)
    old_kid = services.keys.public_jwk()["kid"]
    new_kid = services.keys.rotate()
    info = {k["kid"]: k for k in services.keys.list_keys()}[old_kid]
    # The old key signs until the new one activates; its last token expires 10 days after issuance.
    assert services.keys.active_from(new_kid) == T0 + services.keys.activation_delay
    assert info["retire_after"] == T0 + 10 * 86400


def test_a_second_rotation_retires_keys_past_their_time(services, clock):
    services.keys.grace_seconds = 0
    first = services.keys.ensure_active()
    es = services.keys.ensure_active("ES256")
    second = services.keys.rotate()
    clock.advance(services.keys.activation_delay + 3600)
    third = services.keys.rotate()
    statuses = {k["kid"]: k["status"] for k in services.keys.list_keys()}
    assert statuses == {first: "retired", second: "active", third: "next", es: "active"}
    clock.advance(services.keys.activation_delay)
    statuses = {k["kid"]: k["status"] for k in services.keys.list_keys()}
    assert statuses == {first: "retired", second: "retiring", third: "active", es: "active"}
    with services.db.session(readonly=True) as session:
        stored = session.execute(text("SELECT status FROM signing_keys WHERE kid = :k"), {"k": first}).scalar_one()
    assert stored == "retired"


def test_another_process_sees_a_rotation(services, backend_settings, clock):
    from idp.tokens.keys import KeyManager

    other = KeyManager(services.db, backend_settings.secret_key, clock, 60, refresh_seconds=0)
    kid = services.keys.ensure_active()
    assert other.ensure_active() == kid
    new_kid = services.keys.rotate()
    # The other process publishes the new key before anyone signs with it, and switches at its time.
    assert other.verification_key(new_kid) is not None
    assert new_kid in {k["kid"] for k in other.jwks()["keys"]}
    assert other.signing_key().kid == kid
    clock.advance(services.keys.activation_delay)
    assert other.signing_key().kid == new_kid
    assert other.verification_key(kid) is not None


def test_the_database_holds_no_private_key_in_plain_text(services, backend_settings, clock):
    from idp.tokens.keys import KeyManager, KeyUnavailableError

    services.keys.ensure_active("RS256")
    services.keys.ensure_active("ES256")
    services.keys.rotate("RS256")
    privates = {}
    for info in services.keys.list_keys():
        if info["status"] in ("next", "active", "retiring"):
            key = services.keys.signing_key_for(info["kid"])
            assert key is not None
            privates[info["kid"]] = key.as_dict(private=True)
    assert len(privates) == 3
    with services.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT kid, private_key_encrypted, public_jwk FROM signing_keys")).all()
    assert len(rows) == 3
    for kid, blob, public in rows:
        raw = bytes(blob)
        public_text = public if isinstance(public, str) else json.dumps(public)
        for needle in (b"PRIVATE KEY", b"-----BEGIN", b'"d"'):
            assert needle not in raw
        private = privates[kid]
        secret_numbers = [private[name] for name in ("d", "p", "q", "dp", "dq", "qi") if name in private]
        assert secret_numbers
        for number in secret_numbers:
            assert number.encode() not in raw
            assert number not in public_text
        assert '"d"' not in public_text
    # Another secret cannot read the keys.
    stranger = KeyManager(services.db, "another-secret-entirely-0123456789abcdef", clock, 60)
    with pytest.raises(KeyUnavailableError):
        stranger.signing_key()


def _forget_keys(services: Any) -> None:
    with services.db.session() as session:
        session.execute(text("DELETE FROM signing_keys"))
    services.keys.invalidate()


def test_both_algorithms_have_a_key_from_the_start(services):
    # The app made them before answering: the first ES256 token is signed by a published key.
    started = {k["alg"]: k["kid"] for k in services.keys.list_keys()}
    assert set(started) == {"RS256", "ES256"}
    assert services.keys.ensure_all() == started


def test_a_key_is_created_on_first_use_and_only_once(services):
    _forget_keys(services)
    assert services.keys.list_keys() == []
    kid = services.keys.ensure_active()
    assert services.keys.ensure_active() == kid
    assert services.keys.signing_keyset().keys[0].kid == kid
    assert len(services.keys.signing_keyset().keys) == 1
    assert [k["kid"] for k in services.keys.list_keys()] == [kid]
    listed = services.keys.list_keys()[0]
    assert set(listed) == {"kid", "alg", "status", "created_at", "active_from", "retiring_at", "retire_after"}


@all_backends
def test_processes_starting_together_create_one_key(services, backend_settings, clock):
    from idp.tokens.keys import KeyManager

    _forget_keys(services)
    barrier = threading.Barrier(8)
    kids: list[Any] = [None] * 8

    def start(index: int) -> None:
        keys = KeyManager(services.db, backend_settings.secret_key, clock, 60, refresh_seconds=0)
        barrier.wait()
        try:
            kids[index] = keys.ensure_active()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            kids[index] = exc

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(kids)) == 1 and isinstance(kids[0], str), kids
    assert [k["kid"] for k in services.keys.list_keys()] == [kids[0]]
