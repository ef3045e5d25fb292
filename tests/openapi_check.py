"""Hold HTTP answers to ``idp/admin/openapi.yaml`` with openapi-core.

``check_exchange(...)`` validates one request/response pair: the operation must exist in the spec (a 404
or 405 for a path or method the spec does not list must carry the JSON error body), the status must be one
the operation documents, and the headers and body must match its schema. ``ValidatingClient`` wraps a
Flask test client so every request a test makes is checked, and ``validating_session`` does the same for
``requests`` against a live server.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.testing import MockRequest, MockResponse

SPEC_PATH = Path(__file__).resolve().parents[1] / "idp" / "admin" / "openapi.yaml"
HOST = "http://localhost"


@functools.cache
def spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC_PATH))


class SpecMismatch(AssertionError):
    pass


def _error_body(status: int, body: bytes) -> None:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise SpecMismatch(f"{status} without a JSON error body: {body[:200]!r}") from exc
    if not (
        isinstance(payload, dict) and isinstance(payload.get("error"), str) and isinstance(payload.get("message"), str)
    ):
        raise SpecMismatch(f"{status} with a body that is not an error: {payload!r}")


def check_exchange(
    method: str,
    url: str,
    *,
    request_headers: dict[str, str] | None,
    request_body: bytes | None,
    status: int,
    response_headers: dict[str, str],
    response_body: bytes,
) -> None:
    """Raise SpecMismatch unless the answer is one the spec documents for this request."""
    parts = urlsplit(url)
    args = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    content_type = response_headers.get("Content-Type") or response_headers.get("content-type") or ""
    request = MockRequest(
        HOST,
        method.lower(),
        parts.path,
        args=args,
        headers=request_headers or {},
        data=request_body or b"",
        content_type=(request_headers or {}).get("Content-Type", "application/json"),
    )
    response = MockResponse(
        response_body,
        status_code=status,
        headers=dict(response_headers),
        content_type=content_type.split(";")[0].strip() or "application/octet-stream",
    )
    try:
        spec().validate_response(request, response)
    except (PathNotFound, OperationNotFound) as exc:
        # Paths and methods the service does not serve: only a JSON 404/405 is a proper answer.
        if status not in (404, 405):
            raise SpecMismatch(f"{method} {parts.path} answered {status} but is not in openapi.yaml") from exc
        _error_body(status, response_body)
    except Exception as exc:  # noqa: BLE001 - every validation failure becomes one readable assertion
        cause = exc.__cause__ or exc
        detail = "; ".join(str(e) for e in getattr(cause, "schema_errors", [])) or str(cause)
        raise SpecMismatch(
            f"{method} {parts.path} -> {status} does not match openapi.yaml: {type(exc).__name__}: {detail}\n"
            f"body: {response_body[:300]!r}"
        ) from exc


class ValidatingClient:
    """A Flask test client whose every answer is checked against openapi.yaml."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.checked = 0

    def open(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", None) or {})
        if "json" in kwargs:
            kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
            headers.setdefault("Content-Type", "application/json")
        query = kwargs.pop("query_string", None)
        if query:
            from urllib.parse import urlencode

            path = path + ("&" if "?" in path else "?") + urlencode(query)
        data = kwargs.get("data")
        body = data.encode() if isinstance(data, str) else data
        response = self.client.open(path, method=method, headers=headers, **kwargs)
        check_exchange(
            method,
            path,
            request_headers=headers,
            request_body=body,
            status=response.status_code,
            response_headers=dict(response.headers),
            response_body=response.get_data(),
        )
        self.checked += 1
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.open(path, "GET", **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.open(path, "POST", **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.open(path, "PATCH", **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.open(path, "PUT", **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.open(path, "DELETE", **kwargs)


class ValidatingSession:
    """``requests`` against a live server, every answer checked against openapi.yaml."""

    def __init__(self, base_url: str) -> None:
        import requests

        self.base_url = base_url
        self.session = requests.Session()
        self.checked = 0

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", None) or {})
        if "json" in kwargs:
            kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
            headers.setdefault("Content-Type", "application/json")
        response = self.session.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)
        target = urlsplit(response.request.url)
        check_exchange(
            method,
            target.path + ("?" + target.query if target.query else ""),
            request_headers=headers,
            request_body=kwargs.get("data"),
            status=response.status_code,
            response_headers=dict(response.headers),
            response_body=response.content,
        )
        self.checked += 1
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self.session.close()
