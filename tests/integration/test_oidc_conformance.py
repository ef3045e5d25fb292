"""OpenID Connect conformance behaviour (Basic OP plan), tokens, refresh, revocation, introspection, logout."""

from __future__ import annotations

from typing import Any

import pytest

from tests.oidc_flow import (
    ISSUER,
    REDIRECT,
    admit_everyone,
    auth_params,
    basic,
    decode_id_token,
    exchange,
    login,
    make_client,
    pkce_pair,
    query_of,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def rp(services: Any, event: Any) -> tuple[str, str]:
    config, secret = make_client(services, post_logout_redirect_uris=["https://rp.example/bye?x=1"])
    return config.client_id, secret


def _tokens(client: Any, services: Any, rp: Any, **params: Any) -> dict[str, Any]:
    callback = login(client, services, auth_params(**params))
    response = exchange(client, callback["code"], *rp)
    assert response.status_code == 200, response.data
    return response.get_json()  # type: ignore[no-any-return]


# --- discovery -------------------------------------------------------------------------------------


def test_discovery_document(client: Any, rp: Any) -> None:
    response = client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["issuer"] == ISSUER
    for name in ("authorization", "token", "userinfo", "revocation", "introspection", "end_session"):
        assert doc[f"{name}_endpoint"].startswith(ISSUER + "/")
    assert doc["jwks_uri"] == ISSUER + "/jwks.json"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert doc["request_parameter_supported"] is False and doc["request_uri_parameter_supported"] is False
    # "none": public clients (browser and native apps) with PKCE.
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "client_secret_post", "none"}
    assert doc["subject_types_supported"] == ["pairwise"]
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert {"sub", "email", "preferred_username", "auth_time"} <= set(doc["claims_supported"])
    assert client.get("/jwks.json").status_code == 200
    assert client.get("/demo/callback").status_code == 404  # only under idp serve --demo


# --- item 6: conformance behaviour ------------------------------------------------------------------


def test_state_round_trips_byte_for_byte(client: Any, services: Any, rp: Any) -> None:
    state = "ü/+?&=%20 #x~'\"<>"
    callback = login(client, services, auth_params(state=state))
    assert callback["state"] == state
    again = client.get("/authorize", query_string=auth_params(state=state))
    assert query_of(again.headers["Location"])["state"] == state


def test_nonce_echoed_and_request_without_nonce_succeeds(client: Any, services: Any, rp: Any) -> None:
    with_nonce = _tokens(client, services, rp, nonce="abc-123")
    assert decode_id_token(client, with_nonce["id_token"])[1]["nonce"] == "abc-123"
    without = _tokens(client, services, rp)
    assert "nonce" not in decode_id_token(client, without["id_token"])[1]


def test_prompt_none_without_admission_is_login_required(client: Any, services: Any, rp: Any) -> None:
    response = client.get("/authorize", query_string=auth_params(prompt="none", state="s1"))
    assert response.status_code == 303
    callback = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(REDIRECT)
    assert callback == {**callback, "error": "login_required", "state": "s1", "iss": ISSUER}
    assert services.room.counters("sale", fresh=True).queue == 0  # no UI, no queueing


def test_prompt_none_when_admitted_answers_at_once(client: Any, services: Any, rp: Any) -> None:
    first = _tokens(client, services, rp)
    response = client.get("/authorize", query_string=auth_params(prompt="none"))
    callback = query_of(response.headers["Location"])
    assert "code" in callback and "error" not in callback
    second = exchange(client, callback["code"], *rp).get_json()
    one, two = decode_id_token(client, first["id_token"])[1], decode_id_token(client, second["id_token"])[1]
    assert one["sub"] == two["sub"] and one["auth_time"] == two["auth_time"]


def test_prompt_none_with_login_is_invalid_request(client: Any, services: Any, rp: Any) -> None:
    response = client.get("/authorize", query_string=auth_params(prompt="none login"))
    assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_prompt_login_queues_again_and_auth_time_shows_it(client: Any, services: Any, clock: Any, rp: Any) -> None:
    first = decode_id_token(client, _tokens(client, services, rp)["id_token"])[1]
    clock.advance(30)
    response = client.get("/authorize", query_string=auth_params(prompt="login"))
    assert response.headers["Location"].startswith("/authorize/wait/")
    assert services.room.counters("sale", fresh=True).queue == 2
    admit_everyone(services)
    callback = query_of(client.get(response.headers["Location"]).headers["Location"])
    second = decode_id_token(client, exchange(client, callback["code"], *rp).get_json()["id_token"])[1]
    assert second["auth_time"] == first["auth_time"] + 30
    assert second["sub"] == first["sub"] and second["queue_position"] == 2


def test_stale_max_age_queues_again_fresh_max_age_does_not(client: Any, services: Any, clock: Any, rp: Any) -> None:
    first = decode_id_token(client, _tokens(client, services, rp)["id_token"])[1]
    clock.advance(5)
    fresh = client.get("/authorize", query_string=auth_params(max_age="10000"))
    callback = query_of(fresh.headers["Location"])
    same = decode_id_token(client, exchange(client, callback["code"], *rp).get_json()["id_token"])[1]
    assert same["auth_time"] == first["auth_time"]
    stale = client.get("/authorize", query_string=auth_params(max_age="1"))
    assert stale.headers["Location"].startswith("/authorize/wait/")
    admit_everyone(services)
    callback = query_of(client.get(stale.headers["Location"]).headers["Location"])
    later = decode_id_token(client, exchange(client, callback["code"], *rp).get_json()["id_token"])[1]
    assert later["auth_time"] > first["auth_time"]
    # prompt=none with a stale max_age cannot queue: login_required.
    clock.advance(5)
    none = client.get("/authorize", query_string=auth_params(max_age="1", prompt="none"))
    assert query_of(none.headers["Location"])["error"] == "login_required"
    bad = client.get("/authorize", query_string=auth_params(max_age="-3"))
    assert query_of(bad.headers["Location"])["error"] == "invalid_request"


def test_id_token_hint_honoured(app: Any, client: Any, services: Any, rp: Any) -> None:
    id_token = _tokens(client, services, rp)["id_token"]
    sub = decode_id_token(client, id_token)[1]["sub"]
    response = client.get("/authorize", query_string=auth_params(prompt="none", id_token_hint=id_token))
    callback = query_of(response.headers["Location"])
    tokens = exchange(client, callback["code"], *rp).get_json()
    assert decode_id_token(client, tokens["id_token"])[1]["sub"] == sub
    # Another browser (another subject) holding the hint is not logged in as that visitor.
    other = app.test_client()
    login(other, services, auth_params())
    refused = other.get("/authorize", query_string=auth_params(prompt="none", id_token_hint=id_token))
    assert query_of(refused.headers["Location"])["error"] == "login_required"
    forged = client.get("/authorize", query_string=auth_params(id_token_hint="a.b.c"))
    assert query_of(forged.headers["Location"])["error"] == "invalid_request"


def test_optional_parameters_accepted(client: Any, services: Any, rp: Any) -> None:
    callback = login(
        client,
        services,
        auth_params(
            acr_values="urn:mace:incommon:iap:silver",
            ui_locales="fr-CA fr en",
            login_hint="someone@example.com",
            display="popup",
            claims_locales="de",
            extra="foobar",
            claims='{"id_token":{"name":{"essential":true}}}',
        ),
    )
    assert "code" in callback


def test_post_authorize_and_reversed_parameter_order(client: Any, services: Any, rp: Any) -> None:
    params = dict(reversed(list(auth_params(scope="email openid").items())))
    callback = login(client, services, params, method="POST")
    assert exchange(client, callback["code"], *rp).status_code == 200


def test_request_objects_are_refused(client: Any, services: Any, rp: Any) -> None:
    for name, error in (("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")):
        params = auth_params(**{name: "eyJhbGciOiJub25lIn0.e30.", "state": "q"})
        response = client.get("/authorize", query_string=params)
        callback = query_of(response.headers["Location"])
        assert callback["error"] == error and callback["state"] == "q" and callback["iss"] == ISSUER


def test_missing_or_unknown_response_type(client: Any, services: Any, rp: Any) -> None:
    for value in (None, "token", "id_token"):
        response = client.get("/authorize", query_string=auth_params(response_type=value))
        assert response.status_code == 303
        assert query_of(response.headers["Location"])["error"] in {"unsupported_response_type", "invalid_request"}


# --- PKCE ------------------------------------------------------------------------------------------


def test_pkce_enforced_when_challenge_sent(client: Any, services: Any, rp: Any) -> None:
    verifier, challenge = pkce_pair()
    params = {"code_challenge": challenge, "code_challenge_method": "S256"}
    code = login(client, services, auth_params(**params))["code"]
    assert exchange(client, code, *rp).get_json()["error"] == "invalid_request"  # verifier missing
    code = login(client, services, auth_params(**params))["code"]
    wrong = exchange(client, code, *rp, code_verifier=pkce_pair()[0])
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"
    code = login(client, services, auth_params(**params))["code"]
    assert exchange(client, code, *rp, code_verifier=verifier).status_code == 200


def test_verifier_without_challenge_refused(client: Any, services: Any, rp: Any) -> None:
    code = login(client, services, auth_params())["code"]
    response = exchange(client, code, *rp, code_verifier=pkce_pair()[0])
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_plain_and_methodless_challenges_refused(client: Any, services: Any, rp: Any) -> None:
    _, challenge = pkce_pair()
    for method in ("plain", None):
        response = client.get(
            "/authorize", query_string=auth_params(code_challenge=challenge, code_challenge_method=method)
        )
        assert query_of(response.headers["Location"])["error"] == "invalid_request"


def test_client_requiring_pkce(client: Any, services: Any, event: Any) -> None:
    config, secret = make_client(services, client_id="strict", require_pkce=True)
    response = client.get("/authorize", query_string=auth_params("strict"))
    assert query_of(response.headers["Location"])["error"] == "invalid_request"
    verifier, challenge = pkce_pair()
    params = auth_params("strict", code_challenge=challenge, code_challenge_method="S256")
    code = login(client, services, params)["code"]
    assert exchange(client, code, "strict", secret, code_verifier=verifier).status_code == 200


# --- codes and client authentication ----------------------------------------------------------------


def test_code_reuse_after_30_seconds_is_invalid_grant_and_revokes(
    client: Any, services: Any, clock: Any, rp: Any
) -> None:
    code = login(client, services, auth_params())["code"]
    first = exchange(client, code, *rp).get_json()
    clock.advance(30)
    again = exchange(client, code, *rp)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    bearer = {"Authorization": "Bearer " + first["access_token"]}
    assert client.get("/userinfo", headers=bearer).status_code == 401
    assert client.get("/verify?event_id=sale", headers=bearer).status_code == 401
    refresh = client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, headers=basic(*rp)
    )
    assert refresh.get_json()["error"] == "invalid_grant"


def test_code_expires_after_60_seconds(client: Any, services: Any, clock: Any, rp: Any) -> None:
    code = login(client, services, auth_params())["code"]
    clock.advance(61)
    assert exchange(client, code, *rp).get_json()["error"] == "invalid_grant"


def test_code_bound_to_client_and_redirect_uri(client: Any, services: Any, rp: Any) -> None:
    other, other_secret = make_client(services, client_id="other")
    code = login(client, services, auth_params())["code"]
    assert exchange(client, code, "other", other_secret).get_json()["error"] == "invalid_grant"
    code = login(client, services, auth_params())["code"]
    wrong_uri = exchange(client, code, *rp, redirect_uri="https://rp.example/other")
    assert wrong_uri.get_json()["error"] == "invalid_grant"


def test_client_authentication(client: Any, services: Any, rp: Any) -> None:
    client_id, secret = rp
    code = login(client, services, auth_params())["code"]
    bad = exchange(client, code, client_id, secret + "x")
    assert bad.status_code == 401 and bad.get_json()["error"] == "invalid_client"
    narrowed, narrowed_secret = make_client(
        services, client_id="postonly", token_endpoint_auth_methods=["client_secret_post"]
    )
    code = login(client, services, auth_params("postonly"))["code"]
    assert exchange(client, code, "postonly", narrowed_secret, method="basic").status_code == 401
    code = login(client, services, auth_params("postonly"))["code"]
    assert exchange(client, code, "postonly", narrowed_secret, method="post").status_code == 200


def test_unknown_token_parameters_ignored(client: Any, services: Any, rp: Any) -> None:
    code = login(client, services, auth_params())["code"]
    response = exchange(client, code, *rp, method="post", scope="openid profile email", extra="1")
    assert response.status_code == 200 and response.get_json()["id_token"]


def test_es256_client(client: Any, services: Any, event: Any) -> None:
    _, secret = make_client(services, client_id="ec", id_token_signed_response_alg="ES256")
    code = login(client, services, auth_params("ec"))["code"]
    header, _ = decode_id_token(client, exchange(client, code, "ec", secret).get_json()["id_token"])
    assert header["alg"] == "ES256" and header["kid"]


# --- refresh, revocation, introspection, logout -----------------------------------------------------


def test_refresh_keeps_auth_time_and_stops_when_session_finishes(
    client: Any, services: Any, clock: Any, rp: Any
) -> None:
    tokens = _tokens(client, services, rp)
    original = decode_id_token(client, tokens["id_token"])[1]
    clock.advance(120)
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    refreshed = client.post("/token", data=data, headers=basic(*rp))
    assert refreshed.status_code == 200 and refreshed.headers["Cache-Control"] == "no-store"
    body = refreshed.get_json()
    claims = decode_id_token(client, body["id_token"])[1]
    assert claims["auth_time"] == original["auth_time"] and claims["iat"] == original["iat"] + 120
    assert claims["sub"] == original["sub"]
    assert client.get("/userinfo", headers={"Authorization": "Bearer " + body["access_token"]}).status_code == 200
    other, other_secret = make_client(services, client_id="other")
    assert client.post("/token", data=data, headers=basic("other", other_secret)).get_json()["error"] == "invalid_grant"
    services.tokens.update_session("sale", _request_id(services, body["access_token"]), 1)
    assert client.post("/token", data=data, headers=basic(*rp)).get_json()["error"] == "invalid_grant"


def _request_id(services: Any, access_token: str) -> str:
    """The place behind a relying party's access token: its grant knows it, the token does not."""
    import base64
    import json

    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(services.oidc_records.grant(claims["gid"]).request_id)


def test_refresh_stops_when_session_expires(client: Any, services: Any, clock: Any, rp: Any) -> None:
    tokens = _tokens(client, services, rp)
    clock.advance(3601)
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert client.post("/token", data=data, headers=basic(*rp)).get_json()["error"] == "invalid_grant"


def test_introspection_and_revocation(client: Any, services: Any, rp: Any) -> None:
    tokens = _tokens(client, services, rp)
    for kind in ("access_token", "refresh_token"):
        body = client.post("/introspect", data={"token": tokens[kind]}, headers=basic(*rp)).get_json()
        assert body["active"] is True and body["client_id"] == "rp" and body["sub"]
    _, other_secret = make_client(services, client_id="other")
    foreign = client.post("/introspect", data={"token": tokens["access_token"]}, headers=basic("other", other_secret))
    assert foreign.get_json() == {"active": False}
    unknown = client.post("/introspect", data={"token": "nope"}, headers=basic(*rp))
    assert unknown.get_json() == {"active": False}
    assert client.post("/introspect", data={"token": "x"}).status_code == 401
    assert client.post("/revoke", data={"token": "unknown-token"}, headers=basic(*rp)).status_code == 200
    bad_hint = client.post("/revoke", data={"token": "x", "token_type_hint": "id_token"}, headers=basic(*rp))
    assert bad_hint.get_json()["error"] == "unsupported_token_type"
    revoked = client.post(
        "/revoke", data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}, headers=basic(*rp)
    )
    assert revoked.status_code == 200
    for kind in ("access_token", "refresh_token"):
        body = client.post("/introspect", data={"token": tokens[kind]}, headers=basic(*rp)).get_json()
        assert body == {"active": False}
    bearer = {"Authorization": "Bearer " + tokens["access_token"]}
    assert client.get("/userinfo", headers=bearer).status_code == 401
    assert client.get("/verify?event_id=sale", headers=bearer).status_code == 401


def test_logout_completes_session_and_redirects_with_state(client: Any, services: Any, rp: Any) -> None:
    tokens = _tokens(client, services, rp)
    before = services.room.counters("sale", fresh=True).completed
    response = client.get(
        "/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://rp.example/bye?x=1",
            "state": "bye state",
        },
    )
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith("https://rp.example/bye?") and query_of(location) == {"x": "1", "state": "bye state"}
    assert services.room.counters("sale", fresh=True).completed == before + 1
    bearer = {"Authorization": "Bearer " + tokens["access_token"]}
    assert client.get("/userinfo", headers=bearer).status_code == 401
    assert client.get("/verify?event_id=sale", headers=bearer).status_code == 401
    # The admitted cookie is gone: the next authorize queues again.
    again = client.get("/authorize", query_string=auth_params())
    assert again.headers["Location"].startswith("/authorize/wait/")


def test_logout_unregistered_post_logout_uri_does_not_redirect(client: Any, services: Any, rp: Any) -> None:
    tokens = _tokens(client, services, rp)
    response = client.get(
        "/logout",
        query_string={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example/"},
    )
    assert response.status_code == 200 and "Location" not in response.headers


def test_logout_without_hint_asks_for_confirmation(client: Any, services: Any, rp: Any) -> None:
    _tokens(client, services, rp)
    page = client.get(
        "/logout", query_string={"client_id": "rp", "post_logout_redirect_uri": "https://rp.example/bye?x=1"}
    )
    assert page.status_code == 200 and b'name="csrf"' in page.data
    assert "form-action 'self' https://rp.example;" in page.headers["Content-Security-Policy"]
    forged = client.post("/logout", data={"client_id": "rp", "confirm": "yes", "csrf": "0" * 64})
    assert forged.status_code == 200 and b"Sign out?" in forged.data
    html = page.data.decode()
    csrf = html.split('name="csrf" value="')[1].split('"')[0]
    done = client.post(
        "/logout",
        data={
            "client_id": "rp",
            "post_logout_redirect_uri": "https://rp.example/bye?x=1",
            "confirm": "yes",
            "csrf": csrf,
        },
    )
    assert done.status_code == 303 and done.headers["Location"].startswith("https://rp.example/bye")
    assert services.room.counters("sale", fresh=True).completed == 1


def test_logout_with_hint_from_another_browser_ends_nothing_without_confirmation(
    app: Any, client: Any, services: Any, rp: Any
) -> None:
    tokens = _tokens(client, services, rp)
    assert decode_id_token(client, tokens["id_token"])[1]["sid"]
    other = app.test_client()
    other.get("/authorize", query_string=auth_params())  # a browser of its own
    response = other.get("/logout", query_string={"id_token_hint": tokens["id_token"]})
    assert response.status_code == 200 and b'name="csrf"' in response.data
    assert services.room.counters("sale", fresh=True).completed == 0
    assert client.get("/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}).status_code == 200
    # Confirming there ends that browser's own admissions, never the session the hint names.
    csrf = response.data.decode().split('name="csrf" value="')[1].split('"')[0]
    done = other.post("/logout", data={"id_token_hint": tokens["id_token"], "confirm": "yes", "csrf": csrf})
    assert done.status_code == 200 and b"Signed out" in done.data
    assert client.get("/userinfo", headers={"Authorization": "Bearer " + tokens["access_token"]}).status_code == 200


@pytest.mark.parametrize("backend_settings", ["postgres"], indirect=True)
def test_unusual_values_complete_and_nul_is_refused_on_postgres(client: Any, services: Any, rp: Any) -> None:
    nonce, state = "é" * 500, "ü" * 500
    tokens = _tokens(client, services, rp, nonce=nonce, state=state, login_hint="x" * 2000)
    assert decode_id_token(client, tokens["id_token"])[1]["nonce"] == nonce
    refused = client.get("/authorize", query_string=auth_params(nonce="a\x00b", state="kept"))
    callback = query_of(refused.headers["Location"])
    assert callback["error"] == "invalid_request" and callback["state"] == "kept"
    assert client.get("/authorize/wait/%00").status_code == 404
