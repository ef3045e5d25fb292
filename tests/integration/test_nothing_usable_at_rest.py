"""A database dump holds no visitor id and no request id: nothing in it signs in or opens a place.

After whole journeys (a sign-in with code exchange, refresh and userinfo; a forced re-login that
replaces the browser's place; an AWS-style join with its token set, finished and listed as expired),
every column of every row of every table is read and searched for each visitor id and request id:
raw, as hex, as its 16 UUID bytes, base64 of either. Every value found in the dump that has the shape
of a visitor cookie or a request id is then tried as one: it signs in as nobody and mints nothing.

A database migrated from a release that kept them in plain text is converted, and the visitor's
``sub`` (computed here as earlier releases did) stays the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from typing import Any

import pytest
from sqlalchemy import MetaData, select, text

from idp.crypto import LookupKey
from idp.storage.db import Database, upgrade_database
from tests.conftest import TEST_SECRET
from tests.oidc_flow import REDIRECT, admit_everyone, auth_params, basic, decode_id_token, exchange, login, make_client

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
VISITOR_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def old_sub(secret: str, visitor_id: str, client_id: str) -> str:
    """``sub`` as earlier releases computed it, straight from IDP_SECRET_KEY."""
    key = hmac.new(secret.encode(), b"idp pairwise subject v1", hashlib.sha256).digest()
    digest = hmac.new(key, f"{visitor_id}\x00{client_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def forms(secret: str) -> list[bytes]:
    """Every way a leaked id could be written: raw, hex, raw UUID bytes, base64 and base64url of those."""
    raw = secret.encode()
    found = [raw, raw.lower(), raw.upper()]
    if UUID_RE.fullmatch(secret):
        packed = uuid.UUID(secret).bytes
        found += [packed, packed.hex().encode(), secret.replace("-", "").encode()]
    for value in list(found):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            found.append(encode(value).rstrip(b"="))
    return found


def dump(db: Database, *, skip: set[str]) -> dict[str, list[bytes]]:
    """Every value of every row of every table, as bytes, by table."""
    metadata = MetaData()
    metadata.reflect(db.engine)
    rows: dict[str, list[bytes]] = {}
    with db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in skip or table.name == "alembic_version":
                continue
            values = rows.setdefault(table.name, [])
            for row in conn.execute(select(table)):
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        values.append(bytes(value))
                    elif value is not None:
                        values.append(str(value).encode("utf-8", "surrogatepass"))
    return rows


def leaks(rows: dict[str, list[bytes]], secrets: dict[str, str]) -> list[str]:
    found = []
    for table, values in rows.items():
        for name, secret in secrets.items():
            for form in forms(secret):
                if any(form in value for value in values):
                    found.append(f"{name} in {table}")
                    break
    return found


def journeys(client: Any, services: Any, rp_secret: str) -> dict[str, str]:
    """A full sign-in, a re-login that replaces the place, an AWS join with tokens; their ids."""
    params = auth_params("rp")
    callback = login(client, services, params)
    tokens = exchange(client, callback["code"], "rp", rp_secret).get_json()
    refreshed = client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic("rp", rp_secret),
    ).get_json()
    assert client.get("/userinfo", headers={"Authorization": "Bearer " + refreshed["access_token"]}).status_code == 200
    visitor = client.get_cookie(services.settings.visitor_cookie).value
    first_place = services.oidc_records.place(visitor, "sale").request_id
    # A forced re-login after the admission was used: a new place, the old one remembered until admitted.
    services.room.join("sale")  # someone ahead, so the new place waits
    relogin = client.get("/authorize", query_string=auth_params("rp", prompt="login"))
    assert relogin.status_code == 303
    second_place = services.oidc_records.place(visitor, "sale")
    assert second_place.request_id != first_place and second_place.previous_request_id == first_place
    joined = client.post("/api/assign_queue_num", json={"event_id": "sale"}).get_json()["api_request_id"]
    expired = client.post("/api/assign_queue_num", json={"event_id": "sale"}).get_json()["api_request_id"]
    admit_everyone(services)
    for rid in (joined, expired):
        assert client.post("/api/generate_token", json={"event_id": "sale", "request_id": rid}).status_code == 200
    services.tokens.update_session("sale", joined, 1)
    return {
        "visitor id": visitor,
        "first place": first_place,
        "second place": second_place.request_id,
        "api place": joined,
        "expired place": expired,
    }


@pytest.mark.parametrize("backend_settings", ["sqlite", "postgres", "redis"], indirect=True)
def test_no_visitor_id_or_request_id_is_in_any_row(client: Any, services: Any, event: Any) -> None:
    _, rp_secret = make_client(services, "rp")
    ids = journeys(client, services, rp_secret)
    rows = dump(services.db, skip=set())
    assert rows["oidc_places"] and rows["oidc_grants"] and rows["tokens"] and rows["oidc_codes"]
    assert leaks(rows, ids) == []
    # The negative control: the scan finds an id when one is there.
    assert leaks({"x": [b"..." + ids["first place"].encode()]}, ids) == ["first place in x"]
    assert leaks({"x": [uuid.UUID(ids["api place"]).bytes]}, ids) == ["api place in x"]


@pytest.mark.parametrize("backend_settings", ["sqlite", "postgres"], indirect=True)
def test_nothing_copied_from_the_database_signs_in_or_mints_tokens(
    client: Any, app: Any, services: Any, event: Any
) -> None:
    _, rp_secret = make_client(services, "rp")
    ids = journeys(client, services, rp_secret)
    victim_sub = old_sub(TEST_SECRET, ids["visitor id"], "rp")
    values = {value.decode("utf-8", "replace") for table in dump(services.db, skip=set()).values() for value in table}
    candidates = set()
    for value in values:
        candidates.update(VISITOR_RE.findall(value))
        candidates.update(re.findall(r"[0-9a-f]{32}", value))
    assert candidates, "the dump holds tags and hashes to try"
    tried = 0
    for candidate in sorted(candidates)[:40]:
        # As a visitor cookie: at best a new visitor at the back of the queue, never the victim's sub.
        attacker = app.test_client()
        attacker.set_cookie(services.settings.visitor_cookie, candidate)
        answer = attacker.get("/authorize", query_string=auth_params("rp"))
        location = answer.headers.get("Location", "")
        if location.startswith(REDIRECT) and "code=" in location:
            code = location.split("code=")[1].split("&")[0]
            got = exchange(attacker, code, "rp", rp_secret).get_json()
            assert decode_id_token(attacker, got["id_token"])[1]["sub"] != victim_sub
        # As a request id (a tag, or a tag dressed as a UUID): no token set.
        for rid in (candidate, str(uuid.UUID(candidate)) if re.fullmatch(r"[0-9a-f]{32}", candidate) else candidate):
            minted = attacker.post("/api/generate_token", json={"event_id": "sale", "request_id": rid})
            assert minted.status_code in (400, 404), (rid, minted.status_code)
        tried += 1
    assert tried
    # The control: the victim's real cookie does sign in as the victim.
    victim = app.test_client()
    victim.set_cookie(services.settings.visitor_cookie, ids["visitor id"])
    admit_everyone(services)
    callback = login(victim, services, auth_params("rp"))
    got = exchange(victim, callback["code"], "rp", rp_secret).get_json()
    assert decode_id_token(victim, got["id_token"])[1]["sub"] == victim_sub


# --- rows of an earlier release are converted ------------------------------------------------------


VISITOR = "Vv" * 21 + "V"
PLACE = "0b5e3f7c-8d0a-4c1e-9a55-3f6a2d7c9e10"
PREVIOUS = "6f1d2c3b-4a59-4b8c-8d7e-0f1a2b3c4d5e"
REFRESH = "refresh-token-of-an-earlier-release-0123456789"


def _old_rows(url: str, now: int) -> None:
    """Rows as the release before hashing stored them: plain visitor ids and request ids."""
    db = Database(url)
    refresh_hash = hashlib.sha256(REFRESH.encode()).hexdigest()
    statements = [
        (
            "INSERT INTO oidc_places (visitor_id, event_id, request_id, queue_position, generation, created_at,"
            " previous_request_id) VALUES (:v, 'sale', :r, 1, 1, :now, :p)",
            {"v": VISITOR, "r": PLACE, "p": PREVIOUS},
        ),
        (
            "INSERT INTO oidc_interactions (interaction_id, client_id, event_id, visitor_id, request_id,"
            " queue_position, params, state, created_at, updated_at) VALUES"
            " ('interaction-0123456789', 'rp', 'sale', :v, :r, 1, '{}', 'waiting', :now, :now)",
            {"v": VISITOR, "r": PLACE},
        ),
        (
            "INSERT INTO oidc_codes (code_hash, client_id, redirect_uri, scope, visitor_id, event_id, request_id,"
            " queue_position, auth_time, created_at, expires_at) VALUES"
            " ('c0de', 'rp', :u, 'openid', :v, 'sale', :r, 1, :now, :now, :later)",
            {"v": VISITOR, "r": PLACE, "u": REDIRECT},
        ),
        (
            "INSERT INTO oidc_grants (grant_id, client_id, visitor_id, event_id, request_id, queue_position,"
            " scope, auth_time, refresh_hash, created_at, expires_at) VALUES"
            " ('grant-1', 'rp', :v, 'sale', :r, 1, 'openid email', :now, :h, :now, :later)",
            {"v": VISITOR, "r": PLACE, "h": refresh_hash},
        ),
        (
            "INSERT INTO tokens (request_id, event_id, queue_position, issued_at, not_before, expires_at, issuer,"
            " kid, jti, session_status) VALUES"
            " (:r, 'sale', 1, :now, :now, :later, 'http://127.0.0.1:8000', 'none', 'jti-1', 0),"
            " (:p, 'sale', 2, :now, :now, :now, 'http://127.0.0.1:8000', 'none', 'jti-2', 0)",
            {"r": PLACE, "p": PREVIOUS},
        ),
    ]
    try:
        with db.engine.begin() as conn:
            for sql, params in statements:
                conn.execute(text(sql), {"now": now, "later": now + 3600, **params})
    finally:
        db.dispose()


@pytest.mark.parametrize("backend_settings", ["sqlite", "postgres"], indirect=True)
def test_the_migration_hides_existing_ids_and_keeps_every_sub(
    backend_settings: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from idp.app import create_app

    url = backend_settings.database_url
    # The fixture migrated to head: start again from the release before (tables dropped and re-made).
    _drop_everything(url)
    upgrade_database(url, "0011_lookup_key")
    now = int(clock.now())
    _old_rows(url, now)
    monkeypatch.setenv("IDP_SECRET_KEY", TEST_SECRET)
    upgrade_database(url)

    app = create_app(backend_settings, clock=clock)
    services = app.extensions["idp"]
    try:
        services.events.create({"event_id": "sale"})
        rows = dump(services.db, skip=set())
        assert leaks(rows, {"visitor": VISITOR, "place": PLACE, "previous": PREVIOUS}) == []
        place = services.oidc_records.place(VISITOR, "sale")
        assert place is not None and (place.request_id, place.previous_request_id) == (PLACE, PREVIOUS)
        assert services.oidc_records.interaction("interaction-0123456789", VISITOR).request_id == PLACE
        assert services.oidc_records.interaction("interaction-0123456789", "x" * 43).visitor_id == ""
        assert services.tokens.expired_request_ids("sale")[0] == [PREVIOUS]
        assert services.oidc_records.session_state(PLACE).active
        # The grant of the earlier release refreshes, and its ID token has the sub it always had.
        _, rp_secret = make_client(services, "rp")
        services.keys.ensure_all()
        client = app.test_client()
        refreshed = client.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": REFRESH}, headers=basic("rp", rp_secret)
        )
        assert refreshed.status_code == 200, refreshed.get_data(as_text=True)
        claims = decode_id_token(client, refreshed.get_json()["id_token"])[1]
        assert claims["sub"] == old_sub(TEST_SECRET, VISITOR, "rp")
        # And the same browser signing in afresh gets that sub too (the lookup key is the old subject key).
        assert services.lookup.root == LookupKey.from_secret(TEST_SECRET).root
    finally:
        services.close()


def _drop_everything(url: str) -> None:
    db = Database(url)
    try:
        metadata = MetaData()
        metadata.reflect(db.engine)
        with db.engine.begin() as conn:
            metadata.drop_all(conn)
    finally:
        db.dispose()
