"""A WSGI fast path for the three public calls that carry a sale's load.

``GET /api/serving_num``, ``GET /api/waiting_num`` and ``POST /api/assign_queue_num`` are what every
waiting visitor and every join hits. Their well-formed requests are answered here, before Flask builds a
request context, routes, opens a session and runs its hooks; the answer, headers, request log line and
metrics are the same as the Flask views give. Anything else (another method or path, extra or repeated
parameters, an ``Idempotency-Key``, a body that is not a small JSON object, an unknown event) goes on to
Flask unchanged. The request id, headers, bodies and error answers come from ``idp.web.edge``, as Flask's
do: any exception met here (a store outage, a defect) answers exactly as the Flask views would.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from idp.abuse.limits import client_address
from idp.abuse.service import api_attempt, guard_api_join
from idp.events.service import EVENT_ID_RE, EventConfig, EventNotFoundError
from idp.logging import access_log
from idp.queue.engine import REQUEST_ID_RE, Entry
from idp.web import edge
from idp.web.cors import response_headers as cors_response_headers

log = logging.getLogger("idp.http")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_STATUS_LINES = {200: "200 OK", 503: "503 Service Unavailable"}
_COUNTER_ROUTES = {"/api/serving_num": "serving_counter", "/api/waiting_num": "waiting_num"}
_JOIN_ROUTE = "/api/assign_queue_num"
# A join body that is exactly one event id (JSON whitespace allowed): the id is plain ASCII, no escapes.
_PLAIN_JOIN = re.compile(
    rb"[ \t\r\n]*".join(
        (rb"\A", rb"\{", rb'"event_id"', rb":", rb'"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})"', rb"\}", rb"\Z")
    )
)


# Counter answers kept per (path, query string, Origin): bounded, cleared when full.
_MAX_ANSWERS = 4096


@dataclass(frozen=True, slots=True)
class _CounterAnswer:
    """A counter answer's body and CORS headers, valid while the counters record it came from is live."""

    event_id: str
    record: tuple[float, Any]
    body: bytes
    # The answer's headers before and after its X-Request-Id (the same headers, in the same order, as
    # ``_respond`` gives), built once.
    head: tuple[tuple[str, str], ...]
    tail: tuple[tuple[str, str], ...]


class _Delegate(Exception):
    """This request is not one the fast path answers; Flask takes it."""


def _event_id_from_query(query: str) -> str:
    # Exactly one parameter, event_id, with a plain value; anything else is Flask's to judge.
    name, sep, value = query.partition("=")
    if name != "event_id" or not sep or "&" in value or ";" in value:
        raise _Delegate
    if "%" in value or "+" in value:
        value = unquote_plus(value)
    if not EVENT_ID_RE.match(value):
        raise _Delegate
    return value


class FastPath:
    """Wraps the Flask WSGI app; see the module docstring for what it answers itself."""

    def __init__(
        self,
        app: WsgiApp,
        services: Any,
        max_body: int,
        observe: Callable[..., None] | None,
        *,
        retry_after: int = 5,
    ) -> None:
        self.app = app
        self.services = services
        self.max_body = max_body
        self.observe = observe
        self.transport = edge.transport_headers(services.settings.issuer)
        # Every answer's fixed headers, built once.
        self._fixed_headers = (*edge.SECURITY_HEADERS, *self.transport)
        self.retry_after = retry_after
        self._answers: dict[tuple[str, str, str | None], _CounterAnswer] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        started = time.perf_counter()
        try:
            if method == "GET" and path in _COUNTER_ROUTES:
                return self._counter(environ, start_response, path, started)
            if method == "POST" and path == _JOIN_ROUTE:
                return self._join(environ, start_response, started)
        except _Delegate:
            pass
        except Exception as exc:  # noqa: BLE001 - every failure is answered as the Flask side answers it
            return self._error(environ, start_response, path, exc, started)
        return self.app(environ, start_response)

    # -- answers ---------------------------------------------------------------------------------

    def _counter(
        self, environ: dict[str, Any], start_response: StartResponse, path: str, started: float
    ) -> Iterable[bytes]:
        if environ.get("CONTENT_LENGTH") not in (None, "", "0") or environ.get("HTTP_TRANSFER_ENCODING"):
            raise _Delegate
        # Kept under the query string as sent: a query seen before was checked when its answer was made.
        key = (path, environ.get("QUERY_STRING", ""), environ.get("HTTP_ORIGIN"))
        kept = self._answers.get(key)
        room = self.services.room
        if kept is None or not room.counters_current(kept.event_id, kept.record):
            # Build the answer from the cached counters and keep it exactly as long as they are cached.
            event_id = _event_id_from_query(key[1])
            origin = key[2]
            try:
                event, record = room.counters_record(event_id)
            except EventNotFoundError:
                raise _Delegate from None
            field = _COUNTER_ROUTES[path]
            counters = record[1]
            value = counters.serving if field == "serving_counter" else counters.waiting
            body = f'{{"{field}":{value}}}'.encode()
            kept = _CounterAnswer(
                event.event_id,
                record,
                body,
                (
                    ("Content-Type", edge.JSON_MIMETYPE),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", edge.PUBLIC_SHORT_CACHE),
                ),
                (*self._fixed_headers, *cors_response_headers(self.services.cors.queue_api(event), origin)),
            )
            if len(self._answers) >= _MAX_ANSWERS:
                self._answers.clear()
            self._answers[key] = kept
        request_id = edge.request_id(environ.get("HTTP_X_REQUEST_ID"))
        start_response("200 OK", [*kept.head, (edge.REQUEST_ID_HEADER, request_id), *kept.tail])
        self._count(request_id, "GET", path, 200, started)
        return [kept.body]

    def _join(self, environ: dict[str, Any], start_response: StartResponse, started: float) -> Iterable[bytes]:
        if environ.get("HTTP_IDEMPOTENCY_KEY") is not None or environ.get("HTTP_TRANSFER_ENCODING"):
            raise _Delegate
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise _Delegate from None
        if length <= 0 or length > min(self.max_body, 4096):
            raise _Delegate
        raw = environ["wsgi.input"].read(length)
        # From here on Flask must see the same body if it takes over.
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        plain = _PLAIN_JOIN.match(raw)
        if plain is not None:  # the usual body, {"event_id": "..."}: what json.loads gives, without it
            data: Any = {"event_id": plain.group(1).decode("ascii")}
        else:
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise _Delegate from None
        event_id = data.get("event_id") if isinstance(data, dict) else None
        if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
            raise _Delegate
        try:
            event = self.services.events.get(event_id)
            if not self.services.room.fast_joinable(event):
                raise _Delegate  # a pre-queue join answers without a position: the Flask view's job
            # The abuse defence (rate limit, join gate) before the place is taken; refusals raise.
            address = client_address(environ, self.services.settings.proxy_hops)
            decoy = guard_api_join(self.services.defence, self.services.room, event, api_attempt(data, address))
            if decoy is not None:
                body = edge.json_text(decoy).encode()
                return self._respond(
                    environ, start_response, _JOIN_ROUTE, 200, body, edge.NO_STORE, started, event=event
                )
            event, entry = self.services.room.join(event)
        except EventNotFoundError:
            raise _Delegate from None
        return self._respond(
            environ,
            start_response,
            _JOIN_ROUTE,
            200,
            _join_body(entry, event.event_id),
            edge.NO_STORE,
            started,
            event=event,
        )

    def _error(
        self, environ: dict[str, Any], start_response: StartResponse, route: str, exc: Exception, started: float
    ) -> Iterable[bytes]:
        request_id = edge.request_id(environ.get("HTTP_X_REQUEST_ID"))
        answer = edge.answer_for(exc, retry_after=self.retry_after, request_id=request_id)
        return self._respond(
            environ,
            start_response,
            route,
            answer.status,
            answer.body(),
            edge.NO_STORE,
            started,
            answer.headers,
            request_id=request_id,
        )

    def _respond(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        route: str,
        status: int,
        body: bytes,
        cache: str,
        started: float,
        extra: tuple[tuple[str, str], ...] = (),
        *,
        request_id: str | None = None,
        event_id: str | None = None,
        event: EventConfig | None = None,
    ) -> Iterable[bytes]:
        if request_id is None:
            request_id = edge.request_id(environ.get("HTTP_X_REQUEST_ID"))
        headers = [
            ("Content-Type", edge.JSON_MIMETYPE),
            ("Content-Length", str(len(body))),
            ("Cache-Control", cache),
            (edge.REQUEST_ID_HEADER, request_id),
            *self._fixed_headers,
            *extra,
            # The same CORS headers as the Flask views (idp.web.cors): every answer, errors included.
            *cors_response_headers(
                self.services.cors.queue_api(event)
                if event is not None
                else self.services.cors.queue_api_for(event_id),
                environ.get("HTTP_ORIGIN"),
            ),
        ]
        start_response(_STATUS_LINES.get(status) or f"{status} {_reason(status)}", headers)
        self._count(request_id, environ.get("REQUEST_METHOD", ""), route, status, started)
        return [body]

    def _count(self, request_id: str, method: str, route: str, status: int, started: float) -> None:
        """The request's metrics and access line, as the Flask side writes them."""
        elapsed = time.perf_counter() - started
        if self.observe is not None:
            try:
                self.observe(route, method, status, elapsed)
            except Exception:  # noqa: BLE001 - counting must never fail a request
                log.warning("could not count a request")
        access_log(request_id, method, route, status, round(elapsed * 1000.0, 2))


def _join_body(entry: Entry, event_id: str) -> bytes:
    """The join's answer, byte for byte what ``edge.json_text`` gives for the view's dict."""
    if REQUEST_ID_RE.match(entry.request_id) and EVENT_ID_RE.match(event_id):
        # Both are plain ASCII that JSON writes as itself; the two numbers are ints.
        return (
            f'{{"api_request_id":"{entry.request_id}","queue_number":{int(entry.position)},'
            f'"entry_time":{int(entry.entry_time)},"event_id":"{event_id}"}}'
        ).encode()
    payload = {
        "api_request_id": entry.request_id,
        "queue_number": entry.position,
        "entry_time": entry.entry_time,
        "event_id": event_id,
    }
    return edge.json_text(payload).encode()


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
