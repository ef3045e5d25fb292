"""IDP_SECRET_KEY rotates without losing anything: keys, webhook secrets, captcha secrets, ``sub``.

The service starts under secret A and stores signing keys, a webhook subscriber's secret and a
captcha secret, and a visitor signs in at a relying party. It restarts with IDP_SECRET_KEY=B and
IDP_PREVIOUS_SECRET_KEYS=A: tokens still sign with the same keys, the JWKS is the same, the webhook is
signed with the same subscriber secret, and the visitor's ``sub`` has not changed. After the start
sealed everything again under B, A can be dropped.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select

from idp.abuse.sealing import open_captcha_secret
from idp.app import create_app
from idp.config import Settings
from idp.notify.webhooks import SecretCipher, verify
from idp.storage.models import Event, LookupKeyRecord, SigningKey, WebhookSubscription
from idp.tokens.keys import KeyCipher
from tests.conftest import TEST_SECRET
from tests.leaks import urls_in_html
from tests.oidc_flow import REDIRECT, admit_everyone, auth_params, decode_id_token, exchange, login, make_client
from tests.worker_support import admitted_with_tokens, make_worker, webhook_receiver

SECRET_B = "the-next-secret-key-of-this-service-0123456789abcdef"

pytestmark = pytest.mark.parametrize("backend_settings", ["sqlite", "postgres"], indirect=True)


@contextmanager
def running(settings: Settings, clock: Any) -> Iterator[Any]:
    app = create_app(settings, clock=clock)
    try:
        yield app
    finally:
        app.extensions["idp"].close()


def old_sub(secret: str, visitor_id: str, client_id: str) -> str:
    """``sub`` as earlier releases computed it, straight from the secret."""
    key = hmac.new(secret.encode(), b"idp pairwise subject v1", hashlib.sha256).digest()
    digest = hmac.new(key, f"{visitor_id}\x00{client_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_in(app: Any, visitor_id: str | None, client_id: str, secret: str) -> tuple[str, dict[str, Any]]:
    """A whole sign-in of one browser; returns its visitor cookie and the ID token's claims."""
    client = app.test_client()
    services = app.extensions["idp"]
    if visitor_id is not None:
        client.set_cookie("idp_visitor", visitor_id)
    params = auth_params(client_id, prompt="login")
    code = login(client, services, params)["code"]
    tokens = exchange(client, code, client_id, secret).get_json()
    _, claims = decode_id_token(client, tokens["id_token"])
    cookie = client.get_cookie("idp_visitor")
    assert cookie is not None
    return cookie.value, claims


def test_a_rotated_secret_keeps_keys_webhooks_captcha_and_subjects(backend_settings: Settings, clock: Any) -> None:
    settings_a = backend_settings
    with running(settings_a, clock) as app, webhook_receiver() as receiver:
        services = app.extensions["idp"]
        services.events.create({"event_id": "sale"})
        services.events.create(
            {
                "event_id": "gated",
                "challenge": {"kind": "captcha", "provider": "turnstile", "site_key": "site", "secret": "cap-s3cret"},
            }
        )
        subscription, hook_secret = services.webhooks.create("sale", {"url": receiver.url})
        _, rp_secret = make_client(services, "rp")
        visitor, claims = sign_in(app, None, "rp", rp_secret)
        assert claims["sub"] == old_sub(TEST_SECRET, visitor, "rp")
        rid = admitted_with_tokens(services, "sale", 1)[0]
        first_tokens = services.tokens.issue("sale", rid)
        place_value = services.tokens.place_reference("sale", rid)
        # A second browser is parked on its waiting page when the secret changes.
        services.room.join("sale")  # someone ahead, so it waits
        waiting = app.test_client()
        parked = waiting.get("/authorize", query_string=auth_params("rp"))
        wait_url = parked.headers["Location"]
        page = waiting.get(wait_url)
        assert wait_url.startswith("/authorize/wait/") and page.status_code == 200
        status_url = next(u for u in urls_in_html(page.get_data(as_text=True)) if u.startswith("/authorize/status/"))
        assert waiting.get(status_url).status_code == 200
        waiting_visitor = waiting.get_cookie("idp_visitor").value
        jwks = app.test_client().get("/jwks.json").get_json()
        make_worker(services).tick()
        assert receiver.received and verify(
            hook_secret,
            receiver.received[0].headers["X-Idp-Timestamp"],
            receiver.received[0].body,
            receiver.received[0].headers["X-Idp-Signature"],
        )

    settings_b = dataclasses.replace(settings_a, secret_key=SECRET_B, previous_secret_keys=(TEST_SECRET,))
    with running(settings_b, clock) as app, webhook_receiver() as receiver:
        services = app.extensions["idp"]
        with services.db.session() as session:
            session.get(WebhookSubscription, subscription["id"]).url = receiver.url
        assert app.test_client().get("/jwks.json").get_json() == jwks
        assert services.tokens.place_reference("sale", rid) == place_value, "X-Queue-Place stays the same"
        # The waiting page signed under A still belongs to its browser and finishes the sign-in.
        waiting = app.test_client()
        waiting.set_cookie("idp_visitor", waiting_visitor)
        assert waiting.get(wait_url).status_code == 200
        assert waiting.get(status_url).status_code == 200, "the status ticket signed under A still reads"
        admit_everyone(services)
        finished = waiting.get(wait_url)
        assert finished.status_code == 303 and finished.headers["Location"].startswith(REDIRECT)
        # The same row signs the same claims again: RS256 is deterministic, so the bytes are equal.
        assert services.tokens.issue("sale", rid)["id_token"] == first_tokens["id_token"]
        again_visitor, claims = sign_in(app, visitor, "rp", rp_secret)
        assert again_visitor == visitor
        assert claims["sub"] == old_sub(TEST_SECRET, visitor, "rp"), "sub must not change with the secret"
        services.tokens.update_session("sale", rid, 1)
        clock.advance(60)  # the first worker's lease has run out
        make_worker(services).tick()
        assert receiver.received, "the webhook is still delivered"
        for item in receiver.received:
            assert verify(hook_secret, item.headers["X-Idp-Timestamp"], item.body, item.headers["X-Idp-Signature"])

    # The start (idp serve / idp db upgrade: idp.tokens.cli.prepare_keys) seals everything again under B.
    with running(settings_b, clock) as app:
        services = app.extensions["idp"]
        services.keys.reseal_all()
        services.webhooks.reseal_all()
        services.events.reseal_secrets()
        with services.db.session(readonly=True) as session:
            keys = session.execute(select(SigningKey)).scalars().all()
            hooks = session.execute(select(WebhookSubscription)).scalars().all()
            event = session.get(Event, "gated")
            lookup_row = session.get(LookupKeyRecord, 1)
            only_b_keys = KeyCipher(SECRET_B)
            for row in keys:
                assert only_b_keys.decrypt(bytes(row.private_key_encrypted), row.kid, row.alg)
            for hook in hooks:
                assert SecretCipher(SECRET_B).decrypt(bytes(hook.secret_encrypted), hook.id) == hook_secret
            assert event is not None and event.challenge is not None
            captcha = open_captcha_secret(SECRET_B, "gated", event.challenge["secret_encrypted"])
            assert captcha == "cap-s3cret"
            assert lookup_row is not None

    settings_b_only = dataclasses.replace(settings_b, previous_secret_keys=())
    with running(settings_b_only, clock) as app:
        services = app.extensions["idp"]
        assert app.test_client().get("/jwks.json").get_json() == jwks
        new_rid = admitted_with_tokens(services, "sale", 1)[0]
        header, _ = decode_id_token(app.test_client(), services.tokens.issue("sale", new_rid)["id_token"])
        assert header["kid"] in {key["kid"] for key in jwks["keys"]}
        _, claims = sign_in(app, visitor, "rp", rp_secret)
        assert claims["sub"] == old_sub(TEST_SECRET, visitor, "rp")


def test_without_the_previous_secret_the_stored_keys_do_not_open(backend_settings: Settings, clock: Any) -> None:
    """The negative control: B alone cannot read what A sealed, so the rotation above proves something."""
    with running(backend_settings, clock) as app:
        app.extensions["idp"].keys.ensure_all()
        with app.extensions["idp"].db.session(readonly=True) as session:
            rows = session.execute(select(SigningKey)).scalars().all()
            assert rows
            for row in rows:
                with pytest.raises(Exception, match="cannot be decrypted"):
                    KeyCipher(SECRET_B).decrypt(bytes(row.private_key_encrypted), row.kid, row.alg)
