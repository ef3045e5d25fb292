"""The raw-WSGI baselines for bench/http_ratio.py: no framework, served by the same gunicorn config.

``answer()`` only answers (the ceiling for ``GET /api/serving_num``); ``redis_call()`` makes one Redis
round trip and answers (the ceiling for ``POST /api/assign_queue_num``, which is one Lua call).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
_BODY = b'{"serving_counter":0}'
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))]


def answer() -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", _HEADERS)
        return [_BODY]

    return app


def redis_call() -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    import redis

    client = redis.Redis.from_url(os.environ["IDP_REDIS_URL"], socket_timeout=2, socket_connect_timeout=2)
    key = "idp:bench:{raw}:n"

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        value = client.incr(key)
        body = b'{"queue_number":%d}' % value
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app
