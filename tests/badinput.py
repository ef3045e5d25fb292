"""The bad-input table: every HTTP endpoint, and the malformed requests generated for it.

Each public endpoint is one :class:`Endpoint` row in ``ENDPOINTS``. :func:`cases` turns a row into many
requests that must all be refused: each required field missing, each field of the wrong type (numbers,
floats, negative and 2^64-sized numbers, lists, objects, booleans, null, empty and huge strings), unknown
and malformed ids, malformed and non-object JSON, wrong content, a 2 MB body, and every wrong method.
``tests/integration/test_bad_input.py`` (Flask test client, over several backends) and
``tests/e2e/test_bad_input_live.py`` (a real gunicorn) send them all and require a 4xx answer with a JSON
body ``{"error": str, "message": str}`` (or a status the row lists in ``also_ok``, e.g. 202 "not yet").

How to add an endpoint
----------------------
1. Append an ``Endpoint`` to ``ENDPOINTS`` (or to your own list and extend ``ENDPOINTS`` with it at the
   bottom of this module). ``where`` says where the fields go: ``"json"`` (a JSON object body),
   ``"form"`` (``application/x-www-form-urlencoded``, e.g. OAuth token requests) or ``"query"``.
2. List its ``fields``. A field's ``valid`` is a value the endpoint accepts, or a function of the
   :class:`Context` (``lambda ctx: ctx.request_id``); ``kind`` picks the wrong-type values
   (``"string"``, ``"int"``, ``"bool"``, ``"url"``, ``"list"``, ``"object"``); ``unknown`` is
   a well-formed value that names nothing; ``malformed`` adds values only this field refuses.
   ``required=False`` fields are not tested for absence. ``where="header"`` puts a field in a header.
3. If it needs credentials, give ``headers=lambda ctx: {...}``; if it needs records (a client, an admin
   key), add a function to ``CONTEXT_HOOKS`` that creates them with the services and stores them in
   ``ctx.extra`` (e.g. ``ctx.extra["client_id"]``).
4. ``also_ok`` lists non-4xx statuses a bad request may legitimately get (a 302 to an error page of an
   OIDC redirect, a 202 "not yet"); ``methods`` is the set of methods the path answers.
5. Run ``pytest tests/integration/test_bad_input.py -k <your path>``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
TWO_MB = 2 * 1024 * 1024
UNKNOWN_REQUEST_ID = "00000000-0000-4000-8000-000000000000"

Value = Any | Callable[["Context"], Any]


@dataclass
class Context:
    """Records the valid values point at: an event with one waiting place, plus anything hooks add."""

    event_id: str
    request_id: str
    services: Any
    extra: dict[str, Any] = field(default_factory=dict)


# Functions ``(services, ctx) -> None`` run after the base context is made (create clients, keys ...).
CONTEXT_HOOKS: list[Callable[[Any, Context], None]] = []


def make_context(services: Any) -> Context:
    """Create the event ``sale`` with one waiting place, then run ``CONTEXT_HOOKS``."""
    event = services.events.create({"event_id": "sale", "name": "Sale"})
    _event, entry = services.room.join(event.event_id)
    ctx = Context(event_id=event.event_id, request_id=entry.request_id, services=services)
    for hook in CONTEXT_HOOKS:
        hook(services, ctx)
    return ctx


@dataclass(frozen=True)
class Field:
    name: str
    valid: Value
    kind: str = "string"
    required: bool = True
    unknown: Value = None
    malformed: tuple[Any, ...] = ()
    where: str | None = None  # None: the endpoint's ``where``; "header": an HTTP header


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    where: str = "none"  # "json" | "form" | "query" | "none"
    fields: tuple[Field, ...] = ()
    methods: frozenset[str] = frozenset()  # methods the path answers; default {method}
    headers: Callable[[Context], dict[str, str]] | None = None
    also_ok: frozenset[int] = frozenset()

    @property
    def allowed_methods(self) -> frozenset[str]:
        return self.methods or frozenset({self.method})


@dataclass(frozen=True)
class Case:
    """One request: ``kwargs`` fit both ``werkzeug.test.Client.open`` and ``requests.request``."""

    id: str
    endpoint: Endpoint
    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    body: bytes | None

    def url(self) -> str:
        return self.path + ("?" + urlencode(self.query, doseq=True) if self.query else "")


# Wrong values by kind. JSON bodies get them as JSON values; queries and forms as their text.
HUGE = 2**64
_NUMBERS: tuple[Any, ...] = (0, 1, -1, 1.5, -0.5, HUGE, -HUGE, 2**63, 1e308)
_SHAPES: tuple[Any, ...] = (True, False, [], ["sale"], {}, {"event_id": "sale"})
WRONG_VALUES: dict[str, tuple[Any, ...]] = {
    "string": _NUMBERS + _SHAPES + ("", " ", "x" * 5000, "\x00", "sale\n", "../../etc/passwd", "é" * 10),
    "int": ("1", "", "abc", 1.5, -1, 0, HUGE, -HUGE, 2**63, 1e308, True, False, [], [1], {}, {"a": 1}),
    "bool": ("true", "1", 1, 0, -1, 1.5, HUGE, [], {}, ""),
    "url": ("", "not a url", "javascript:alert(1)", "ftp://x", "http://", 1, HUGE, [], {}, "x" * 5000),
    "list": ("a", 1, 1.5, HUGE, {}, True, [1], [None], [[]], [{}]),
    "object": ("a", 1, 1.5, HUGE, [], True, {"x": HUGE}),
}
# What a query string or form can carry (everything is text there).
_TEXT_WRONG: tuple[str, ...] = (
    "",
    " ",
    "0",
    "-1",
    "1.5",
    str(HUGE),
    str(-HUGE),
    "1e308",
    "true",
    "[]",
    "{}",
    "null",
    "x" * 1000,
    "\x00",
    "sale\n",
    "é" * 10,
    "%00",
    "../../etc/passwd",
)


def _resolve(value: Value, ctx: Context) -> Any:
    return value(ctx) if callable(value) else value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _label(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + f"..({len(text)})"


def _build(
    endpoint: Endpoint,
    ctx: Context,
    values: dict[str, Any],
    *,
    method: str | None = None,
    raw_body: bytes | None = None,
    content_type: str | None = None,
    case_id: str,
) -> Case:
    headers = dict(endpoint.headers(ctx)) if endpoint.headers else {}
    query: dict[str, Any] = {}
    body: bytes | None = None
    main: dict[str, Any] = {}
    for f in endpoint.fields:
        if f.name not in values:
            continue
        if f.where == "header":
            headers[f.name] = _text(values[f.name])
        else:
            main[f.name] = values[f.name]
    if endpoint.where == "json":
        body = json.dumps(main).encode()
        headers.setdefault("Content-Type", "application/json")
    elif endpoint.where == "form":
        body = urlencode({k: _text(v) for k, v in main.items()}).encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif endpoint.where == "query":
        query = {k: _text(v) for k, v in main.items()}
    if raw_body is not None:
        body = raw_body
    if content_type is not None:
        headers["Content-Type"] = content_type
    return Case(case_id, endpoint, method or endpoint.method, endpoint.path, query, headers, body)


def valid_values(endpoint: Endpoint, ctx: Context) -> dict[str, Any]:
    return {f.name: _resolve(f.valid, ctx) for f in endpoint.fields}


def cases(endpoint: Endpoint, ctx: Context) -> Iterator[Case]:
    """Every malformed request for one endpoint."""
    name = f"{endpoint.method} {endpoint.path}"
    valid = valid_values(endpoint, ctx)
    body_fields = [f for f in endpoint.fields if f.where != "header"]

    # Missing fields: each required one alone, then everything.
    for f in endpoint.fields:
        if f.required:
            values = {k: v for k, v in valid.items() if k != f.name}
            yield _build(endpoint, ctx, values, case_id=f"{name} missing {f.name}")
    if any(f.required for f in endpoint.fields):
        yield _build(endpoint, ctx, {}, case_id=f"{name} no fields")

    # Wrong types, unknown and malformed values, one field at a time.
    for f in endpoint.fields:
        where = f.where or endpoint.where
        wrong: tuple[Any, ...] = _TEXT_WRONG if where in {"query", "form", "header"} else WRONG_VALUES[f.kind]
        if where == "header":
            # Only what an HTTP client can send; an empty header is the same as none.
            wrong = ("x" * 300, "has space", "tab\there", "\xe9t\xe9")
        for value in (*wrong, *f.malformed):
            if where in {"query", "form"} and value == "" and not f.required:
                continue  # an empty optional parameter is the same as none
            values = dict(valid, **{f.name: value})
            yield _build(endpoint, ctx, values, case_id=f"{name} {f.name}={_label(value)}")
        if f.unknown is not None:
            values = dict(valid, **{f.name: _resolve(f.unknown, ctx)})
            yield _build(endpoint, ctx, values, case_id=f"{name} unknown {f.name}")
        if where == "query":
            # A repeated parameter whose first copy is bad.
            case = _build(endpoint, ctx, valid, case_id=f"{name} repeated {f.name}")
            query = dict(case.query)
            query[f.name] = ["", _text(valid[f.name])]
            yield Case(case.id, endpoint, case.method, case.path, query, case.headers, case.body)

    # Whole-body problems.
    if endpoint.where in {"json", "form"}:
        for label, raw in (
            ("empty body", b""),
            ("malformed JSON", b'{"event_id": '),
            ("truncated JSON", b"{"),
            ("trailing garbage", json.dumps(valid).encode() + b"}}"),
            ("not UTF-8", b'{"event_id": "\xff\xfe"}'),
            ("JSON NaN", b'{"event_id": NaN}'),
            ("non-object array", b'["sale"]'),
            ("non-object string", b'"sale"'),
            ("non-object number", b"1"),
            ("non-object null", b"null"),
            ("non-object true", b"true"),
            # Deep nesting that still fits the body limit (64 KB by default).
            ("deeply nested", b"[" * 30000 + b"]" * 30000),
            ("deeply nested object", b'{"a":' * 10000 + b"1" + b"}" * 10000),
            ("huge number", b'{"event_id": 1' + b"0" * 5000 + b"}"),
        ):
            if endpoint.where == "form" and label.startswith(("JSON", "non-object")):
                continue
            if label == "empty body" and endpoint.where == "json" and not any(f.required for f in endpoint.fields):
                continue  # an action whose fields are all optional takes no body as {}
            yield _build(endpoint, ctx, valid, raw_body=raw, case_id=f"{name} {label}")
        if endpoint.where == "json":
            form = urlencode({k: _text(v) for k, v in valid.items()}).encode()
            yield _build(
                endpoint,
                ctx,
                valid,
                raw_body=form,
                content_type="application/x-www-form-urlencoded",
                case_id=f"{name} form instead of JSON",
            )
            xml = b"<request>" + b"".join(f"<{k}>{v}</{k}>".encode() for k, v in valid.items()) + b"</request>"
            yield _build(
                endpoint,
                ctx,
                valid,
                raw_body=xml,
                content_type="application/xml",
                case_id=f"{name} XML instead of JSON",
            )
    elif endpoint.where == "query" and body_fields:
        # The parameters sent as a JSON body instead of the query string.
        yield Case(
            f"{name} JSON body instead of query",
            endpoint,
            endpoint.method,
            endpoint.path,
            {},
            {"Content-Type": "application/json", **(endpoint.headers(ctx) if endpoint.headers else {})},
            json.dumps(valid).encode(),
        )

    # A 2 MB body (valid fields otherwise, padded).
    padding = "x" * TWO_MB
    if endpoint.where == "json":
        big = json.dumps(dict(valid, padding=padding)).encode()
        content_type = "application/json"
    elif endpoint.where == "form":
        big = urlencode(dict({k: _text(v) for k, v in valid.items()}, padding=padding)).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        big = padding.encode()
        content_type = "application/octet-stream"
    case = _build(endpoint, ctx, valid, raw_body=big, content_type=content_type, case_id=f"{name} 2 MB body")
    yield case

    # Every method the path does not answer.
    for method in ALL_METHODS:
        if method not in endpoint.allowed_methods:
            yield _build(endpoint, ctx, valid, method=method, case_id=f"{name} wrong method {method}")


# Requests that belong to no endpoint: unknown paths, odd headers on a valid path.
def global_cases(ctx: Context) -> Iterator[Case]:
    none = Endpoint("GET", "/")
    for path in (
        "/api/",
        "/api/nope",
        "/api/assign_queue_num/extra",
        "/api/queue_num/",
        "/api/%00",
        "/api/" + "x" * 1000,
        "/api/serving_num.json",
        "/API/serving_num",
        "/nope",
    ):
        for method in ("GET", "POST"):
            yield Case(
                f"{method} unknown path {path[:40]}",
                none,
                method,
                path,
                {"event_id": ctx.event_id},
                {},
                b"{}" if method == "POST" else None,
            )


def _event_id(ctx: Context) -> str:
    return ctx.event_id


def _request_id(ctx: Context) -> str:
    return ctx.request_id


EVENT_ID = Field(
    "event_id", _event_id, unknown="no-such-event", malformed=("a" * 65, "-leading-dash", "has space", "slash/id", "é")
)
REQUEST_ID = Field(
    "request_id",
    _request_id,
    unknown=UNKNOWN_REQUEST_ID,
    malformed=(
        "not-a-uuid",
        "00000000-0000-4000-8000-00000000000",
        "{" + UNKNOWN_REQUEST_ID + "}",
        UNKNOWN_REQUEST_ID.upper().replace("-", "A", 1),
        UNKNOWN_REQUEST_ID + "0",
        uuid.UUID(UNKNOWN_REQUEST_ID).hex,
    ),
)
NOT_YET = frozenset({202})  # "not yet served" is an answer, not an error, where the spec says so

ENDPOINTS: list[Endpoint] = [
    Endpoint(
        "POST",
        "/api/assign_queue_num",
        "json",
        (
            EVENT_ID,
            Field("Idempotency-Key", "key-1", required=False, where="header"),
        ),
    ),
    Endpoint("GET", "/api/queue_num", "query", (EVENT_ID, REQUEST_ID)),
    Endpoint("GET", "/api/serving_num", "query", (EVENT_ID,)),
    Endpoint("GET", "/api/waiting_num", "query", (EVENT_ID,)),
    Endpoint("GET", "/api/queue_pos_expiry", "query", (EVENT_ID, REQUEST_ID), also_ok=NOT_YET),
    Endpoint("GET", "/api/public_key", "query", (EVENT_ID,)),
    Endpoint("GET", "/api/lottery", "query", (EVENT_ID,)),
    Endpoint("GET", "/api/challenge", "query", (EVENT_ID,)),
    Endpoint("POST", "/api/generate_token", "json", (EVENT_ID, REQUEST_ID), also_ok=NOT_YET),
    Endpoint("GET", "/healthz"),
    Endpoint("GET", "/readyz"),
]


def all_cases(ctx: Context) -> list[Case]:
    result = [case for endpoint in ENDPOINTS for case in cases(endpoint, ctx)]
    result.extend(global_cases(ctx))
    return result


def check_answer(case: Case, status: int, content_type: str, body: bytes) -> str | None:
    """Return why the answer is wrong, or None when it is a proper refusal."""
    if not (400 <= status < 500 or status in case.endpoint.also_ok):
        return f"status {status}"
    if not content_type.startswith("application/json"):
        return f"status {status} with content type {content_type!r}: {body[:120]!r}"
    try:
        payload = json.loads(body)
    except ValueError:
        return f"status {status} with a body that is not JSON: {body[:120]!r}"
    if not (
        isinstance(payload, dict)
        and isinstance(payload.get("error"), str)
        and isinstance(payload.get("message"), str)
        and payload["error"]
        and payload["message"]
    ):
        return f"status {status} with body {payload!r}"
    return None


# --- signing keys and forward auth --------------------------------------------------------------------


def _verify_context(services: Any, ctx: Context) -> None:
    """A separate event with one admitted visitor and its access token (the ``sale`` place stays waiting)."""
    event = services.events.create({"event_id": "verify-room", "name": "Verify"})
    _event, entry = services.room.join(event.event_id)
    services.room.increment_serving(event.event_id, 1)
    ctx.extra["verify_event_id"] = event.event_id
    ctx.extra["access_token"] = services.tokens.issue(event.event_id, entry.request_id)["access_token"]


CONTEXT_HOOKS.append(_verify_context)

ENDPOINTS.extend(
    [
        Endpoint("GET", "/jwks.json"),
        Endpoint(
            "GET",
            "/verify",
            "query",
            (
                Field(
                    "event_id",
                    lambda ctx: ctx.extra["verify_event_id"],
                    required=False,
                    unknown="no-such-event",
                    malformed=("sale", "a" * 65, "has space"),
                ),
                Field(
                    "Authorization",
                    lambda ctx: f"Bearer {ctx.extra['access_token']}",
                    where="header",
                    malformed=("Bearer", "Bearer x.y.z", "Basic dXNlcjpwYXNz", "Bearer " + "a" * 8000),
                ),
            ),
            methods=frozenset(ALL_METHODS),
        ),
    ]
)


# --- the admin API (rows in tests/badinput_admin.py) ---------------------------------------------

from tests.badinput_admin import ADMIN_ENDPOINTS, admin_context  # noqa: E402 - needs the names above

CONTEXT_HOOKS.append(admin_context)
ENDPOINTS.extend(ADMIN_ENDPOINTS)
