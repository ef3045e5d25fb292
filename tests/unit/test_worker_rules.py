"""Rules of the worker's domain that need no service: signatures, backoff, secrets at rest, inlet
settings, the periodic window and the MaxSize arithmetic (with fakes of our own interfaces)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.exceptions import InvalidTag

from idp.errors import ConflictError, NotFoundError, ValidationError
from idp.inlet.max_size import MaxSizeInlet, MaxSizeNotConfiguredError, MaxSizeRequest
from idp.inlet.settings import InletConfig, PeriodicConfig, clean_update
from idp.notify.webhooks import BACKOFF_CAP_SECONDS, SecretCipher, backoff, sign, verify

pytestmark = pytest.mark.unit


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"id":1,"kind":"token_generated"}'
    expected = hmac.new(b"whsec_abc", b"1800000000." + body, hashlib.sha256).hexdigest()
    assert sign("whsec_abc", "1800000000", body) == "sha256=" + expected
    assert verify("whsec_abc", "1800000000", body, "sha256=" + expected)
    assert not verify("whsec_abc", "1800000001", body, "sha256=" + expected)
    assert not verify("whsec_abd", "1800000000", body, "sha256=" + expected)
    assert not verify("whsec_abc", "1800000000", body + b"\n", "sha256=" + expected)


def test_subscriber_secrets_of_earlier_releases_and_previous_secrets_open_and_ask_to_be_sealed_again():
    import os

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    old_secret, new_secret = "a-server-secret-key-long-enough-0123456789", "the-next-server-secret-0123456789abcdef"
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"idp webhook subscriber secrets")
    nonce = os.urandom(12)
    legacy = nonce + AESGCM(key.derive(old_secret.encode())).encrypt(nonce, b"whsec_plain", b"wh_1")
    rotated = SecretCipher([new_secret, old_secret])
    assert rotated.unseal(legacy, "wh_1") == ("whsec_plain", True)
    assert rotated.unseal(SecretCipher(old_secret).encrypt("whsec_plain", "wh_1"), "wh_1") == ("whsec_plain", True)
    assert rotated.unseal(rotated.encrypt("whsec_plain", "wh_1"), "wh_1") == ("whsec_plain", False)
    with pytest.raises(InvalidTag):
        SecretCipher(new_secret).decrypt(legacy, "wh_1")


def test_backoff_doubles_and_is_capped():
    assert [backoff(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 64, 128]
    assert backoff(20) == BACKOFF_CAP_SECONDS
    assert backoff(10_000) == BACKOFF_CAP_SECONDS


def test_subscriber_secrets_are_encrypted_and_bound_to_their_subscription():
    cipher = SecretCipher("a-server-secret-key-long-enough-0123456789")
    blob = cipher.encrypt("whsec_plain", "wh_1")
    assert b"whsec_plain" not in blob
    assert cipher.decrypt(blob, "wh_1") == "whsec_plain"
    with pytest.raises(InvalidTag):
        cipher.decrypt(blob, "wh_2")
    with pytest.raises(InvalidTag):
        SecretCipher("another-server-secret-key-0123456789").decrypt(blob, "wh_1")


@pytest.mark.parametrize(
    ("start", "end", "now", "inside"),
    [
        (None, None, 0, True),
        (100, None, 99, False),
        (100, None, 100, True),
        (100, 200, 199, True),
        (100, 200, 200, False),
        (None, 200, 10**9, False),
    ],
)
def test_periodic_window(start, end, now, inside):
    assert PeriodicConfig(enabled=True, start_time=start, end_time=end).in_window(now) is inside


def test_inlet_updates_are_partial_and_validated():
    current = InletConfig("sale", PeriodicConfig(enabled=True, increment_by=5, health_url="http://h/ok"))
    paused = clean_update(current, {"periodic": {"paused": True}})
    assert paused.periodic == PeriodicConfig(enabled=True, increment_by=5, health_url="http://h/ok", paused=True)
    cleared = clean_update(paused, {"periodic": {"health_url": None}, "max_size": 50})
    assert cleared.periodic.health_url is None and cleared.max_size == 50 and cleared.periodic.paused
    for bad in (
        {"periodic": {"increment_by": 0}},
        {"periodic": {"start_time": 5, "end_time": 5}},
        {"max_size": -3},
        {"metrics_notifications": "yes"},
        {"other": 1},
        [],
    ):
        with pytest.raises(ValidationError):
            clean_update(current, bad)


class FakeTokens:
    """Sessions by request id: 0 active, 1/-1 finished (the TokenService interface the inlet uses)."""

    def __init__(self, active: int) -> None:
        self.sessions = {f"rid-{i}": 0 for i in range(active)}

    def update_session(self, event_id, request_id, status):
        if request_id not in self.sessions:
            raise NotFoundError()
        if self.sessions[request_id] != 0:
            raise ConflictError()
        self.sessions[request_id] = status
        return {}

    def active_count(self, event_id):
        return sum(1 for s in self.sessions.values() if s == 0)


class FakeRoom:
    def __init__(self) -> None:
        self.serving = 0
        self.increments: list[int] = []

    def increment_serving(self, event_id, by):
        assert isinstance(by, int) and by > 0, "the inlet never asks for a zero or negative increment"
        self.increments.append(by)
        self.serving += by
        return self.serving

    def counters(self, event_id, fresh=False):
        return type("C", (), {"serving": self.serving})()


def apply(inlet, max_size, **body):
    return inlet.apply("sale", max_size, MaxSizeRequest.parse(body))


def test_max_size_aws_scenarios_with_fakes():
    room, tokens = FakeRoom(), FakeTokens(active=10)
    inlet = MaxSizeInlet(room, tokens)
    assert apply(inlet, 10, exited=5).increment == 0
    report = apply(inlet, 10, completed=[f"rid-{i}" for i in range(5)])
    assert (report.updated, report.active, report.increment) == (5, 5, 5)
    assert room.increments == [5]


def test_max_size_is_never_negative_and_keeps_nothing_between_calls():
    room, tokens = FakeRoom(), FakeTokens(active=12)
    inlet = MaxSizeInlet(room, tokens)
    report = apply(inlet, 10, exited=3, abandoned=["rid-0", "rid-0", "missing"])
    assert (report.updated, report.not_updated, report.capacity, report.increment) == (1, 1, 0, 0)
    assert apply(inlet, 10).increment == 0
    assert apply(inlet, 20).increment == 0, "nothing freed, nothing admitted, however much room"
    assert room.increments == []
    with pytest.raises(MaxSizeNotConfiguredError):
        apply(inlet, None, exited=1)


@pytest.mark.parametrize(
    "body",
    [
        {"exited": -1},
        {"exited": 1.5},
        {"exited": True},
        {"exited": "2"},
        {"completed": "rid"},
        {"completed": [1]},
        {"abandoned": {}},
        {"abandoned": ["x"] * 1001},
        {"other": 1},
    ],
)
def test_max_size_requests_are_validated(body):
    with pytest.raises(ValidationError):
        MaxSizeRequest.parse(body)
