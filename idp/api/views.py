"""The public queue API under ``/api/``, with the AWS Virtual Waiting Room names and fields."""

from __future__ import annotations

import json

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from idp.abuse.service import api_attempt, guard_api_join
from idp.crypto import keyed_digest
from idp.errors import IdpError
from idp.queue.engine import Entry, PlaceState, validate_idempotency_key
from idp.queue.waiting_room import NotServedError, PositionExpiredError
from idp.web.cors import PUBLIC_API_HEADERS
from idp.web.edge import PUBLIC_SHORT_CACHE
from idp.web.http import apply_cors, json_body, json_response, query, required, services

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.after_app_request
def _cross_origin(response: Response) -> Response:
    """CORS on every answer under /api/ (errors and preflights included), as the fast path gives it."""
    if request.path.startswith("/api/"):
        apply_cors(response, services().cors.queue_api_for(_event_id()), PUBLIC_API_HEADERS)
    return response


def _event_id() -> object:
    """The event a public API request names (query or small JSON body), if any; never raises."""
    value = request.args.get("event_id")
    if value or request.method != "POST" or not 0 < (request.content_length or 0) <= 4096:
        return value
    try:
        data = json.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError, RecursionError, HTTPException):
        return None
    return data.get("event_id") if isinstance(data, dict) else None


class ExpiryDisabledError(IdpError):
    code = "expiry_disabled"
    status = 202
    message = "Queue position expiry is not enabled for this event."


def scoped_idempotency_key(secret_key: str, key: str | None, address: str) -> str | None:
    """The store's key for a public ``Idempotency-Key``: bound to the caller's address, kept apart from ours.

    A key alone would let anyone who learns it (an order number, a proxy log) fetch the place's request id;
    bound to the address, only the caller that made the join gets it back. The ``api:`` prefix keeps public
    keys apart from the keys the sign-in journey uses for its own joins.
    """
    valid = validate_idempotency_key(key)
    if valid is None:
        return None
    return "api:" + keyed_digest(secret_key, "api idempotency", f"{address}\n{valid}")[:16].hex()


@bp.post("/assign_queue_num")
def assign_queue_num() -> Response:
    """Join the queue; the place exists (with its position) when this answers."""
    data = json_body()
    svc = services()
    event = svc.events.get(required(data, "event_id"))
    address = request.remote_addr or "unknown"
    decoy = guard_api_join(svc.defence, svc.room, event, api_attempt(data, address))
    if decoy is not None:
        return json_response(decoy)
    key = scoped_idempotency_key(svc.settings.secret_key, request.headers.get("Idempotency-Key"), address)
    event, entry = svc.room.enter(event.event_id, key)
    if not isinstance(entry, Entry):
        # A pre-queue entry: a request id now, a position at the draw (``queue_num`` answers 202 till then).
        return json_response(
            {
                "api_request_id": entry.request_id,
                "event_id": event.event_id,
                "status": "pending",
                "entry_id": entry.entry_id,
                "opens_at": event.opens_at,
            }
        )
    return json_response(
        {
            "api_request_id": entry.request_id,
            "queue_number": entry.position,
            "entry_time": entry.entry_time,
            "event_id": event.event_id,
        }
    )


@bp.get("/queue_num")
def queue_num() -> Response:
    event_id = query("event_id")
    svc = services()
    decoy = svc.defence.decoy_position(query("request_id"))
    if decoy is not None:
        event = svc.events.get(event_id)
        return json_response(
            {
                "queue_number": max(decoy, svc.room.serving(event.event_id) + 2),
                "entry_time": int(svc.clock.now()),
                "event_id": event.event_id,
                "status": 1,
            }
        )
    room = svc.room
    entry = room.place(event_id, query("request_id"))
    if not isinstance(entry, Entry):
        return json_response(
            {
                "error": "not_assigned_yet",
                "message": "Places are drawn when the waiting room opens.",
                "status": "pending",
                "event_id": event_id,
                "entry_id": entry.entry_id,
                "opens_at": room.events.get(event_id).opens_at,
            },
            202,
        )
    return json_response(
        {"queue_number": entry.position, "entry_time": entry.entry_time, "event_id": event_id, "status": 1}
    )


@bp.get("/lottery")
def lottery() -> Response:
    """The pre-queue lottery: commitment, entrant count and draw time; seed and entry ids once drawn."""
    return json_response(services().room.lottery(query("event_id")), cache=PUBLIC_SHORT_CACHE)


@bp.get("/serving_num")
def serving_num() -> Response:
    return json_response({"serving_counter": services().room.serving(query("event_id"))}, cache=PUBLIC_SHORT_CACHE)


@bp.get("/waiting_num")
def waiting_num() -> Response:
    return json_response({"waiting_num": services().room.waiting(query("event_id"))}, cache=PUBLIC_SHORT_CACHE)


@bp.get("/queue_pos_expiry")
def queue_pos_expiry() -> Response:
    if services().defence.decoy_position(query("request_id")) is not None:
        services().events.get(query("event_id"))
        raise NotServedError()
    event, status = services().room.status(query("event_id"), query("request_id"))
    if status.state in (PlaceState.WAITING, PlaceState.PENDING):
        raise NotServedError()
    if status.state is PlaceState.EXPIRED:
        raise PositionExpiredError()
    if not event.enable_queue_position_expiry:
        raise ExpiryDisabledError()
    if status.state is PlaceState.CLAIMED:
        # A claimed place keeps its token; report what is left of the window without going negative.
        now = int(services().clock.now())
        left = event.queue_position_expiry_period - (now - (status.admitted_at or now))
        return json_response({"expires_in": max(0, left), "claimed": True})
    return json_response({"expires_in": status.expires_in})
