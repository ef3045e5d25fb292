"""Human checks by a captcha provider (Cloudflare Turnstile, hCaptcha, Google reCAPTCHA).

The page renders the provider's widget with the event's ``site_key``; the widget yields a token that the
server checks with the provider's siteverify API (``POST secret, response, remoteip`` -> JSON
``{"success": bool}``; the three providers speak the same protocol). A verification that cannot be
completed (timeout, connection error, an answer that is not JSON) is an *outage*: the event's
``fail_open`` decides whether the visitor joins anyway (logged and counted) or is asked to retry (503).
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import requests

from idp.targets import Outbound

log = logging.getLogger("idp.abuse")

PROVIDERS: dict[str, dict[str, str]] = {
    "turnstile": {
        "verify_url": "https://challenges.cloudflare.com/turnstile/v0/siteverify",
        "script": "https://challenges.cloudflare.com/turnstile/v0/api.js",
        "widget_class": "cf-turnstile",
        "field": "cf-turnstile-response",
        "origin": "https://challenges.cloudflare.com",
    },
    "hcaptcha": {
        "verify_url": "https://api.hcaptcha.com/siteverify",
        "script": "https://js.hcaptcha.com/1/api.js",
        "widget_class": "h-captcha",
        "field": "h-captcha-response",
        "origin": "https://hcaptcha.com https://*.hcaptcha.com",
    },
    "recaptcha": {
        "verify_url": "https://www.google.com/recaptcha/api/siteverify",
        "script": "https://www.google.com/recaptcha/api.js",
        "widget_class": "g-recaptcha",
        "field": "g-recaptcha-response",
        "origin": "https://www.google.com https://www.gstatic.com",
    },
}
DEFAULT_TIMEOUT_SECONDS = 3.0
MAX_RESPONSE_CHARS = 4096


class Verdict(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class CaptchaConfig:
    provider: str
    site_key: str
    secret: str
    verify_url: str
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    fail_open: bool = False


class CaptchaVerifier:
    """Ask the provider's siteverify API whether a widget token is genuine."""

    def __init__(self, outbound: Outbound | None = None) -> None:
        # In production the verify URL, which an operator may set, must resolve to a public address.
        self.outbound = outbound or Outbound(public_only=False)

    def verify(self, config: CaptchaConfig, response: object, address: str) -> Verdict:
        if not isinstance(response, str) or not response or len(response) > MAX_RESPONSE_CHARS:
            return Verdict.FAILED
        try:
            status, body = self.outbound.fetch(
                "POST",
                config.verify_url,
                urlencode({"secret": config.secret, "response": response, "remoteip": address}).encode(),
                {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                config.timeout,
            )
            payload = json.loads(body) if status == 200 else None
        except (requests.RequestException, ValueError) as exc:
            log.warning("captcha verification failed", extra={"provider": config.provider, "error": type(exc).__name__})
            return Verdict.UNAVAILABLE
        if not isinstance(payload, dict):
            log.warning("captcha verification answered badly", extra={"provider": config.provider})
            return Verdict.UNAVAILABLE
        return Verdict.PASSED if payload.get("success") is True else Verdict.FAILED
