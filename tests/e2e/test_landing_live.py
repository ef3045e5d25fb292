"""What ``make run`` starts (``idp serve --demo`` with no configuration) answers ``GET /`` with the landing
page, and its demo sign-in link parks a browser in the demo event's queue."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.server import free_port, log_tail

pytestmark = pytest.mark.e2e

IDP = Path(sys.executable).with_name("idp")


def test_idp_serve_demo_answers_the_landing_page(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_", "PROMETHEUS_"))}
    # The defaults of `make run`, in a folder of the test's own instead of ./instance.
    env.update(IDP_INSTANCE_PATH=str(tmp_path / "instance"), IDP_WORKERS="2")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(IDP), "serve", "--demo", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_tail(log)
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except (requests.RequestException, OSError):
                pass
            assert time.monotonic() < deadline, log_tail(log)
            time.sleep(0.2)

        printed = log.read_text(errors="replace")
        assert f"Console:  {base}/admin/console" in printed and f"Start:    {base}/" in printed
        landing = requests.get(base + "/", timeout=10)
        assert landing.status_code == 200
        assert landing.headers["Content-Type"].startswith("text/html")
        html = landing.text
        assert "OpenID Connect identity provider" in html
        links = dict(re.findall(r'<a id="([a-z-]+)" href="([^"]+)"', html))
        assert {"demo-sign-in", "demo-wait", "console", "discovery", "api-spec"} <= set(links)
        assert requests.get(base + links["discovery"], timeout=10).json()["issuer"] == "http://127.0.0.1:8000"
        assert requests.get(base + links["console"], timeout=10).status_code == 200
        assert requests.get(base + links["api-spec"], timeout=10).text.startswith("openapi:")
        # The demo sign-in is a real authorization request of the demo client: it parks the browser.
        sign_in = requests.get(base + links["demo-sign-in"].replace("&amp;", "&"), timeout=10, allow_redirects=False)
        assert sign_in.status_code in (302, 303), sign_in.text[:300]
        assert "/authorize/wait/" in sign_in.headers["Location"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
