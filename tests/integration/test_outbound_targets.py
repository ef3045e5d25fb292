"""Outbound requests in production reach public addresses only, checked when each request is sent.

A webhook or health URL is checked when an operator registers it, but its name may later resolve to
an internal address (DNS rebinding): every request resolves the name again, refuses a non-public
answer, and connects to the very address it checked, with the name as Host and TLS server name.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idp.inlet.periodic import health_checker
from idp.targets import Outbound, PrivateTargetError
from tests.worker_support import admitted_with_tokens, health_server, make_worker, webhook_receiver

pytestmark = pytest.mark.integration

PUBLIC = "93.184.215.14"


class Resolver:
    """A DNS stub: answers the given address lists in turn (the last one from then on)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_a_name_rebound_to_loopback_is_not_contacted(services: Any) -> None:
    with webhook_receiver() as receiver, health_server() as health:
        port = receiver.url.rsplit(":", 1)[1].split("/")[0]
        for answer in (["127.0.0.1"], ["10.0.0.7"], ["169.254.169.254"], [PUBLIC, "127.0.0.1"], ["::1"]):
            outbound = Outbound(public_only=True, resolver=Resolver(answer))
            with pytest.raises(PrivateTargetError):
                outbound.send("POST", f"http://hooks.example:{port}/hook", b"{}", {}, 2.0)
            assert health_checker(outbound)(health.url.replace("127.0.0.1", "status.example"), 2.0) is False
        assert receiver.received == [] and health.hits == 0
        # Outside production (or with IDP_ALLOW_PRIVATE_TARGETS) loopback receivers keep working.
        assert Outbound(public_only=False).send("POST", receiver.url, b"{}", {}, 2.0) == 204


def test_each_request_connects_to_the_address_it_checked(monkeypatch: Any) -> None:
    # The name answers a public address to the check and loopback right after: the connection must
    # go to the checked address, from a single resolution per request.
    resolver = Resolver([PUBLIC], ["127.0.0.1"])
    outbound = Outbound(public_only=True, resolver=resolver)
    connected: list[str] = []

    def pinned(method: str, url: str, address: str, *rest: Any) -> tuple[int, bytes]:
        connected.append(address)
        return 204, b""

    monkeypatch.setattr(outbound, "_pinned", pinned)
    assert outbound.send("POST", "https://hooks.example/hook", b"{}", {}, 2.0) == 204
    assert connected == [PUBLIC] and resolver.asked == ["hooks.example"]
    with pytest.raises(PrivateTargetError):
        outbound.send("POST", "https://hooks.example/hook", b"{}", {}, 2.0)
    assert connected == [PUBLIC]


def test_the_pinned_connection_carries_the_name_as_host() -> None:
    with webhook_receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
        status, _body = Outbound(public_only=True)._pinned(
            "POST", f"http://hooks.example:{port}/hook?x=1", "127.0.0.1", b'{"id": 1}', {"X-Test": "yes"}, 2.0
        )
        assert status == 204
        (item,) = receiver.received
        assert item.headers["Host"] == f"hooks.example:{port}" and item.headers["X-Test"] == "yes"
        assert item.body == b'{"id": 1}'


@contextmanager
def _tls_server(tmp: Path, name: str) -> Iterator[tuple[int, str, list[str | None]]]:
    """An https server on 127.0.0.1 whose self-signed certificate names ``name``; records SNI and Host."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            seen.append(self.headers.get("Host"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda sock, server_name, ctx: seen.append(f"sni:{server_name}") and None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], str(cert_file), seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_pinned_tls_connection_verifies_the_name(tmp_path: Path) -> None:
    with _tls_server(tmp_path, "hooks.example") as (port, ca, seen):
        outbound = Outbound(public_only=True, ca_certs=ca)
        assert outbound._pinned("GET", f"https://hooks.example:{port}/up", "127.0.0.1", None, {}, 2.0)[0] == 200
        assert seen == ["sni:hooks.example", f"hooks.example:{port}"]
        # A certificate for another name is refused, although the address is the same.
        with pytest.raises(requests.ConnectionError):
            outbound._pinned("GET", f"https://other.example:{port}/up", "127.0.0.1", None, {}, 2.0)


def test_a_production_worker_checks_webhook_targets_at_delivery(services: Any, event: Any, clock: Any) -> None:
    production = dataclasses.replace(services.settings, env="production", allow_private_targets=False)
    with webhook_receiver() as receiver:
        # Registered while it resolved to a public address (the check passed then); now it is loopback.
        subscription, _secret = services.webhooks.create(
            "sale", {"url": receiver.url.replace("127.0.0.1", "localhost")}
        )
        admitted_with_tokens(services, "sale", 1)
        worker = make_worker(dataclasses.replace(services, settings=production))
        worker.tick()
        assert receiver.received == []
        (delivery,) = services.webhooks.deliveries("sale", subscription["id"])
        assert delivery["error"] == "PrivateTargetError"
        # After its back-off, the same subscription reaches a worker allowed to use private targets.
        clock.advance(3600)
        make_worker(services).tick()
        assert len(receiver.received) == 1


def test_a_captcha_verify_url_rebound_to_loopback_is_not_asked() -> None:
    from idp.abuse.captcha import CaptchaConfig, CaptchaVerifier, Verdict

    with health_server() as provider:
        provider.status = 200  # answers {} to a GET; a POST that reached it would be counted too
        port = provider.url.rsplit(":", 1)[1].split("/")[0]
        config = CaptchaConfig("turnstile", "site", "secret", f"http://verify.example:{port}/siteverify")
        production = CaptchaVerifier(Outbound(public_only=True, resolver=Resolver(["127.0.0.1"])))
        assert production.verify(config, "widget-token", "203.0.113.9") is Verdict.UNAVAILABLE
        assert provider.hits == 0
