"""The inlet, MaxSize, webhook and dashboard endpoints refuse malformed input with a 4xx JSON error.

Uses the generator of tests/badinput.py with this module's own endpoint rows (they need an admin key and
a webhook, which the rows' context provides).
"""

from __future__ import annotations

import pytest

from tests.admin_support import bearer, make_key
from tests.badinput import Endpoint, Field, cases, check_answer, make_context

pytestmark = pytest.mark.integration


def _admin(ctx):
    return bearer(ctx.extra["operator_key"])


def _hook(ctx):
    return ctx.extra["webhook_id"]


E = "/admin/api/events/sale"
OPERATOR_ENDPOINTS = [
    Endpoint(
        "PUT",
        f"{E}/inlet",
        "json",
        (
            Field(
                "periodic",
                {"enabled": True, "increment_by": 5},
                kind="object",
                required=False,
                malformed=(
                    {"increment_by": 0},
                    {"start_time": -1},
                    {"health_url": "x"},
                    {"health_timeout": "1"},
                    {"paused": None},
                    {"end_time": 2**64},
                ),
            ),
            Field("max_size", 10, kind="int", required=False),
            Field("metrics_notifications", False, kind="bool", required=False),
        ),
        methods=frozenset({"GET", "PUT"}),
        headers=_admin,
    ),
    Endpoint("POST", f"{E}/inlet/pause", methods=frozenset({"POST"}), headers=_admin),
    Endpoint("POST", f"{E}/inlet/resume", methods=frozenset({"POST"}), headers=_admin),
    Endpoint(
        "POST",
        f"{E}/inlet/max_size",
        "json",
        (
            Field("exited", 1, kind="int", required=False),
            Field("completed", [], kind="list", required=False),
            Field("abandoned", [], kind="list", required=False),
        ),
        headers=_admin,
    ),
    Endpoint(
        "POST",
        f"{E}/webhooks",
        "json",
        (
            Field("url", "https://hooks.example/x", kind="url"),
            Field("kinds", ["session_updated"], kind="list", required=False, malformed=(["Not A Kind"], ["x"] * 21)),
            Field("active", True, kind="bool", required=False),
        ),
        methods=frozenset({"GET", "POST"}),
        headers=_admin,
    ),
    Endpoint(
        "GET",
        f"{E}/dashboard",
        "query",
        (Field("minutes", "60", kind="int", required=False, malformed=("0", "1441", "99999999999")),),
        headers=_admin,
    ),
]


def _hook_endpoints(ctx):
    hook = f"{E}/webhooks/{_hook(ctx)}"
    return [
        Endpoint("GET", hook, methods=frozenset({"GET", "DELETE"}), headers=_admin),
        Endpoint(
            "GET",
            f"{hook}/deliveries",
            "query",
            (
                Field("limit", "10", kind="int", required=False, malformed=("1001",)),
                Field("before", "5", kind="int", required=False),
            ),
            headers=_admin,
        ),
    ]


@pytest.fixture
def ctx(services):
    context = make_context(services)
    context.extra["operator_key"] = make_key(services, "admin", name="operator")
    services.inlets.update("sale", {"max_size": 10})
    subscription, _secret = services.webhooks.create("sale", {"url": "https://hooks.example/x"})
    context.extra["webhook_id"] = subscription["id"]
    return context


# A MaxSize report of "nobody exited" is an answer, not a mistake.
LEGITIMATE = {"exited=0"}


@pytest.mark.parametrize("backend_settings", ["sqlite", "redis"], indirect=True)
def test_operator_endpoints_refuse_bad_input_with_a_json_4xx(client, services, ctx):
    failures, sent = [], 0
    for endpoint in OPERATOR_ENDPOINTS + _hook_endpoints(ctx):
        for case in cases(endpoint, ctx):
            if case.id.split(" ", 2)[-1] in LEGITIMATE:
                continue
            response = client.open(case.url(), method=case.method, headers=case.headers, data=case.body)
            sent += 1
            problem = check_answer(
                case, response.status_code, response.headers.get("Content-Type", ""), response.get_data()
            )
            if problem:
                failures.append(f"{case.id}: {problem}")
    assert sent > 200
    assert not failures, f"{len(failures)} of {sent} requests were not refused properly:\n" + "\n".join(failures)
    # The valid requests still work: the refusals are not a broken app refusing everything.
    headers = _admin(ctx)
    assert client.get(f"{E}/inlet", headers=headers).status_code == 200
    assert client.get(f"{E}/webhooks/{_hook(ctx)}", headers=headers).status_code == 200


def test_malformed_path_ids_are_4xx(client, services, ctx):
    headers = _admin(ctx)
    for path in (
        "/admin/api/events/%00/inlet",
        "/admin/api/events/" + "x" * 100 + "/inlet",
        f"{E}/webhooks/" + "x" * 300,
        f"{E}/webhooks/%00/deliveries",
        f"{E}/webhooks/..%2f..%2fetc",
        "/admin/dashboard/" + "y" * 100,
        "/admin/dashboard/no-such-event",
    ):
        for method in ("GET", "DELETE"):
            response = client.open(path, method=method, headers=headers)
            assert 400 <= response.status_code < 500, (method, path, response.status_code)
            assert response.is_json, (method, path)
