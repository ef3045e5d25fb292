"""Apache HTTP Server with mod_auth_openidc (Debian's packages) signs a browser in through a real wait.

The client registration and the Apache directives are read from README.md's Apache section; only the
host and port (and the secret and passphrase the README leaves as placeholders) are replaced. Apache runs
in the foreground as a child of the test, on a free loopback port, from a configuration folder of its
own; headless Chromium visits the protected page, waits on the waiting page while others are ahead, is
admitted by the admin API, and lands on the protected page with the waiting room's claims. Then the
initiate-login path (a parked request older than ``max_parked_seconds``) and logout.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import service_missing
from tests.e2e.server import free_port, log_tail

pytestmark = pytest.mark.e2e

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
APACHE = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
README_ISSUER = "https://queue.example.com"
README_SITE = "https://shop.example.com"


def readme_section(title: str) -> str:
    start = README.index(f"### {title}")
    end = README.find("\n## ", start)
    following = README.find("\n### ", start + 4)
    if following != -1 and (end == -1 or following < end):
        end = following
    return README[start:end]


def code_block(section: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", section, flags=re.S)
    assert match, f"no {language} block"
    return match.group(1)


def _substitute(text: str, issuer: str, site: str) -> str:
    return text.replace(README_ISSUER, issuer).replace(README_SITE, site)


class Apache:
    """apache2 in the foreground, from a folder of its own, on a loopback port."""

    def __init__(self, directives: str) -> None:
        if not Path(APACHE).exists() or not (MODULES / "mod_auth_openidc.so").exists():
            service_missing("apache2 with mod_auth_openidc", FileNotFoundError(APACHE))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # World-readable, so the unprivileged child processes can serve the page when started as root.
        self.root = Path(tempfile.mkdtemp(prefix="idp-apache-"))
        self.root.chmod(0o755)
        (self.root / "htdocs" / "protected").mkdir(parents=True)
        (self.root / "htdocs" / "index.html").write_text("<!doctype html><title>Shop</title><p>Shop home</p>\n")
        (self.root / "htdocs" / "protected" / "index.html").write_text(
            "<!doctype html><title>Protected</title><h1>Welcome to the sale</h1>\n"
        )
        for path in self.root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        self.directives = directives
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        modules = {
            "mpm_event_module": "mod_mpm_event.so",
            "authz_core_module": "mod_authz_core.so",
            "authz_user_module": "mod_authz_user.so",
            "authn_core_module": "mod_authn_core.so",
            "mime_module": "mod_mime.so",
            "dir_module": "mod_dir.so",
            "headers_module": "mod_headers.so",
            "auth_openidc_module": "mod_auth_openidc.so",
        }
        lines = [f"LoadModule {name} {MODULES / so}" for name, so in modules.items()]
        lines += [
            f'ServerRoot "{self.root}"',
            f"Listen 127.0.0.1:{self.port}",
            "ServerName 127.0.0.1",
            f'PidFile "{self.root / "apache2.pid"}"',
            f'ErrorLog "{self.root / "error.log"}"',
            "LogLevel warn auth_openidc:info",
            f'DocumentRoot "{self.root / "htdocs"}"',
            "DirectoryIndex index.html",
            "TypesConfig /etc/mime.types",
            f"Mutex file:{self.root} default",
            f'<Directory "{self.root / "htdocs"}">\n    Require all granted\n</Directory>',
        ]
        if os.geteuid() == 0:
            lines += ["User www-data", "Group www-data"]
        # The test reads the claims mod_auth_openidc hands the application from response headers.
        lines += [
            self.directives,
            "<Location /protected/>",
            '    Header always set X-Claim-Sub "%{OIDC_CLAIM_sub}e"',
            '    Header always set X-Claim-Queue-Position "%{OIDC_CLAIM_queue_position}e"',
            '    Header always set X-Claim-Event-Id "%{OIDC_CLAIM_event_id}e"',
            "</Location>",
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        conf = self.root / "apache2.conf"
        conf.write_text(self.config())
        conf.chmod(0o644)
        check = subprocess.run([APACHE, "-t", "-f", str(conf)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen([APACHE, "-DFOREGROUND", "-f", str(conf)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("apache2 exited: " + log_tail(self.root / "error.log"))
            try:
                with urllib.request.urlopen(self.url + "/", timeout=2):  # noqa: S310 - loopback only
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise AssertionError("apache2 did not answer: " + log_tail(self.root / "error.log"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def _start_shop(
    live_server: Any,
    *,
    without: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    client_changes: dict[str, Any] | None = None,
) -> tuple[Any, Apache, dict[str, str], Any]:
    """The waiting room, the README's client registered, and Apache configured as the README says
    (less the directives named in ``without``, plus ``extra`` ones; ``client_changes`` patch the client)."""
    from idp.admin.keys import AdminKeyService

    server = live_server("redis", IDP_WORKERS=2)
    services = server.services()
    services.events.create({"event_id": "sale", "name": "Sale"})
    _record, admin_key = AdminKeyService(services.db, services.clock).create("apache-e2e", ["admin"])
    admin = {"Authorization": f"Bearer {admin_key}"}

    section = readme_section("Apache HTTP Server")
    apache = Apache("")
    registration = json.loads(_substitute(code_block(section, "json"), server.url, apache.url))
    created = requests.post(server.url + "/admin/api/clients", json=registration, headers=admin, timeout=10)
    assert created.status_code == 201, created.text
    directives = _substitute(code_block(section, "apache"), server.url, apache.url)
    directives = directives.replace("CLIENT_SECRET", created.json()["client_secret"])
    directives = directives.replace("CRYPTO_PASSPHRASE", secrets.token_urlsafe(32))
    for name in without:
        assert name + " " in directives
        directives = "\n".join(line for line in directives.splitlines() if not line.startswith(name + " "))
    apache.directives = "\n".join([directives, *extra])
    if client_changes:
        patched = requests.patch(
            server.url + f"/admin/api/clients/{registration['client_id']}",
            json=client_changes,
            headers=admin,
            timeout=10,
        )
        assert patched.status_code == 200, patched.text
    apache.start()
    return server, apache, admin, registration


@pytest.fixture
def shop(live_server: Any) -> Any:
    server, apache, admin, registration = _start_shop(live_server)
    try:
        yield server, apache, admin, registration
    finally:
        apache.stop()


def _admit(server: Any, admin: dict[str, str], by: int) -> None:
    response = requests.post(
        server.url + "/admin/api/increment_serving_counter",
        json={"event_id": "sale", "increment_by": by},
        headers=admin,
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_apache_mod_auth_openidc_signs_in_after_a_real_wait(shop, browser):
    from playwright.sync_api import expect

    server, apache, admin, registration = shop
    for _ in range(2):  # two people are ahead of the browser
        assert requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=10).ok
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(apache.url + "/protected/")
        # mod_auth_openidc sent the browser to the waiting room, which parked it third in line.
        expect(page).to_have_url(re.compile(re.escape(server.url) + r"/authorize/wait/"))
        _admit(server, admin, 2)
        page.wait_for_timeout(3000)
        assert page.url.startswith(server.url + "/authorize/wait/"), "admitted before its turn"
        _admit(server, admin, 1)
        page.wait_for_url(apache.url + "/protected/", timeout=30_000)
        expect(page.locator("h1")).to_have_text("Welcome to the sale")

        # The claims mod_auth_openidc verified and handed on.
        answer = context.request.get(apache.url + "/protected/")
        assert answer.status == 200
        assert answer.headers["x-claim-queue-position"] == "3"
        assert answer.headers["x-claim-event-id"] == "sale"
        sub = answer.headers["x-claim-sub"]
        assert sub

        # Logout through mod_auth_openidc: the waiting room completes the session and returns the browser.
        logout_to = registration["post_logout_redirect_uris"][0]
        page.goto(apache.url + "/protected/redirect_uri?logout=" + requests.utils.quote(logout_to, safe=""))
        page.wait_for_url(logout_to, timeout=30_000)
        expect(page.locator("p")).to_have_text("Shop home")
        stats = requests.get(server.url + "/admin/api/events/sale/stats", headers=admin, timeout=10).json()
        assert stats["completed"] == 1
        # Signed out: the protected page needs a new login.
        again = context.request.get(apache.url + "/protected/", max_redirects=0)
        assert again.status == 302 and again.headers["location"].startswith(server.url + "/authorize?")
    finally:
        context.close()


def _wait_too_long(server: Any, apache: Apache, admin: dict[str, str], registration: Any, browser: Any) -> Any:
    """A visitor parked longer than ``max_parked_seconds`` and then admitted; returns the open page."""
    from playwright.sync_api import expect

    patched = requests.patch(
        server.url + f"/admin/api/clients/{registration['client_id']}",
        json={"max_parked_seconds": 1},
        headers=admin,
        timeout=10,
    )
    assert patched.status_code == 200, patched.text
    assert requests.post(server.url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=10).ok
    context = browser.new_context()
    page = context.new_page()
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if r.is_navigation_request() else None)
    page.goto(apache.url + "/protected/")
    expect(page).to_have_url(re.compile(re.escape(server.url) + r"/authorize/wait/"))
    page.wait_for_timeout(2500)  # the parked request grows older than max_parked_seconds (1 s)
    _admit(server, admin, 2)
    page.wait_for_url(re.compile(re.escape(apache.url) + "/"), timeout=30_000)
    page.wait_for_load_state()
    initiated = [u for u in seen if u.startswith(apache.url + "/protected/redirect_uri?iss=")]
    assert initiated, seen
    assert "code=" not in initiated[0]
    return context, page


def test_a_login_that_waited_too_long_restarts_at_the_initiate_login_uri(shop, browser):
    """Admitted after ``max_parked_seconds``, the visitor goes to the initiate-login URI (the redirect
    URI, with only ``iss``); mod_auth_openidc starts a fresh login that the waiting room answers at
    once, and lands on ``OIDCDefaultURL``."""
    from playwright.sync_api import expect

    server, apache, admin, registration = shop
    context, page = _wait_too_long(server, apache, admin, registration, browser)
    try:
        page.wait_for_url(apache.url + "/protected/", timeout=30_000)
        expect(page.locator("h1")).to_have_text("Welcome to the sale")
    finally:
        context.close()


def test_without_oidc_default_url_the_initiated_login_fails(live_server, browser):
    """What the README warns about: without ``OIDCDefaultURL``, mod_auth_openidc cannot finish a login
    the waiting room initiated (it has no page to return to)."""
    server, apache, admin, registration = _start_shop(live_server, without=("OIDCDefaultURL",))
    try:
        context, page = _wait_too_long(server, apache, admin, registration, browser)
        try:
            page.wait_for_timeout(2000)
            assert not page.url.startswith(apache.url + "/protected/?") and page.url != apache.url + "/protected/"
            assert "Welcome to the sale" not in page.content()
        finally:
            context.close()
    finally:
        apache.stop()


def test_client_secret_post_pkce_and_es256_work_as_the_readme_says(live_server, browser):
    """The README's other options: the secret posted, PKCE (S256) and an ES256-signed ID token."""
    from playwright.sync_api import expect

    server, apache, admin, registration = _start_shop(
        live_server,
        extra=("OIDCProviderTokenEndpointAuth client_secret_post", "OIDCPKCEMethod S256"),
        client_changes={
            "token_endpoint_auth_methods": ["client_secret_post"],
            "require_pkce": True,
            "id_token_signed_response_alg": "ES256",
        },
    )
    try:
        # The ES256 key must be in every web process's JWKS before it signs: made on demand at the first
        # ES256 signature, one gunicorn worker would sign while another still serves a JWKS without it.
        # Make it first and wait until the JWKS carries it, as a deployment that uses ES256 would.
        rotated = requests.post(server.url + "/admin/api/keys/rotate", json={"alg": "ES256"}, headers=admin, timeout=10)
        assert rotated.status_code == 201, rotated.text
        kid = rotated.json()["kid"]
        deadline = time.monotonic() + 30
        streak = 0
        while streak < 8:
            assert time.monotonic() < deadline, "the JWKS never published the ES256 key"
            kids = {k["kid"] for k in requests.get(server.url + "/jwks.json", timeout=10).json()["keys"]}
            streak = streak + 1 if kid in kids else 0
            time.sleep(0.2)
        context = browser.new_context()
        try:
            page = context.new_page()
            seen: list[str] = []
            page.on("request", lambda r: seen.append(r.url) if r.is_navigation_request() else None)
            page.goto(apache.url + "/protected/")
            expect(page).to_have_url(re.compile(re.escape(server.url) + r"/authorize/wait/"))
            authorize = next(u for u in seen if u.startswith(server.url + "/authorize?"))
            assert "code_challenge_method=S256" in authorize
            _admit(server, admin, 1)
            try:
                page.wait_for_url(apache.url + "/protected/", timeout=30_000)
            except Exception as exc:  # noqa: BLE001 - the module's own log says why
                raise AssertionError(log_tail(apache.root / "error.log")) from exc
            expect(page.locator("h1")).to_have_text("Welcome to the sale")
            answer = context.request.get(apache.url + "/protected/")
            assert answer.headers["x-claim-queue-position"] == "1"
        finally:
            context.close()
    finally:
        apache.stop()
