"""Helpers shared by the admin API tests: keys, headers, and a whole event driven through HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(services: Any, *scopes: str, name: str = "test") -> str:
    _record, plaintext = services.admin_keys.create(name, list(scopes or ("admin",)))
    return str(plaintext)


def claims(jwt: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (the token tests verify signatures)."""
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def all_pages(api: Any, path: str, headers: dict[str, str]) -> tuple[list[str], int]:
    """Follow X-Next-Cursor through expired_tokens; returns every id and the number of pages."""
    ids: list[str] = []
    pages = 0
    url = path
    while True:
        response = api.get(url, headers=headers)
        flask_style = hasattr(response, "get_json")
        assert response.status_code == 200, response.get_data(as_text=True) if flask_style else response.text
        body = response.get_json() if flask_style else response.json()
        assert isinstance(body, list)
        ids.extend(body)
        pages += 1
        cursor = response.headers.get("X-Next-Cursor")
        if not cursor:
            assert "Link" not in response.headers
            return ids, pages
        link = response.headers["Link"]
        assert link.startswith("</admin/api/expired_tokens?") and link.endswith('>; rel="next"')
        url = link[1 : link.index(">")]
        assert "cursor=" in url
