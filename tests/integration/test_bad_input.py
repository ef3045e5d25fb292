"""Every public endpoint refuses malformed input with a 4xx JSON error, never a 5xx (see tests/badinput.py)."""

from __future__ import annotations

import pytest

from tests.badinput import ENDPOINTS, all_cases, cases, check_answer, global_cases, make_context

pytestmark = pytest.mark.integration

BAD_INPUT_BACKENDS = pytest.mark.parametrize("backend_settings", ["sqlite", "redis", "postgres"], indirect=True)


def _send(client, case):
    response = client.open(case.url(), method=case.method, headers=case.headers, data=case.body)
    return response.status_code, response.headers.get("Content-Type", ""), response.get_data()


def _failures(client, batch):
    failures = []
    for case in batch:
        status, content_type, body = _send(client, case)
        problem = check_answer(case, status, content_type, body)
        if problem:
            failures.append(f"{case.id}: {problem}")
    return failures


@BAD_INPUT_BACKENDS
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_endpoint_refuses_bad_input_with_a_json_4xx(client, services, endpoint):
    ctx = make_context(services)
    batch = list(cases(endpoint, ctx))
    assert batch, "the table generated no request for this endpoint"
    failures = _failures(client, batch)
    assert not failures, f"{len(failures)} of {len(batch)} requests were not refused properly:\n" + "\n".join(failures)


@BAD_INPUT_BACKENDS
def test_unknown_paths_and_methods_are_json_404_and_405(client, services):
    ctx = make_context(services)
    failures = _failures(client, global_cases(ctx))
    assert not failures, "\n".join(failures)


def test_the_table_covers_every_public_route(app):
    """A new route without a row in ENDPOINTS fails here, so the table cannot fall behind."""
    covered = {endpoint.path for endpoint in ENDPOINTS}
    public = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and (rule.rule.startswith("/api/") or rule.rule in {"/healthz", "/readyz"})
    }
    assert public - covered == set()


def test_the_generated_cases_include_each_kind_of_bad_input(services):
    ctx = make_context(services)
    ids = [case.id for case in all_cases(ctx)]
    for fragment in (
        "missing event_id",
        "event_id=1.5",
        f"event_id={2**64}",
        "event_id=-1",
        "event_id=[]",
        "event_id={}",
        "unknown event_id",
        "unknown request_id",
        "request_id='not-a-uuid'",
        "malformed JSON",
        "non-object array",
        "2 MB body",
        "wrong method PUT",
        "wrong method DELETE",
        "wrong method PATCH",
        "unknown path /api/nope",
    ):
        assert any(fragment in case_id for case_id in ids), fragment


@BAD_INPUT_BACKENDS
def test_specific_refusals_carry_the_right_codes(client, services):
    ctx = make_context(services)
    unknown_event = client.post("/api/assign_queue_num", json={"event_id": "no-such-event"})
    assert unknown_event.status_code == 404
    assert unknown_event.get_json()["error"] == "event_not_found"
    bad_request_id = client.get("/api/queue_num", query_string={"event_id": ctx.event_id, "request_id": "nope"})
    assert bad_request_id.status_code == 400
    unknown_request = client.get(
        "/api/queue_num", query_string={"event_id": ctx.event_id, "request_id": "00000000-0000-4000-8000-000000000000"}
    )
    assert unknown_request.status_code == 404
    assert client.post("/api/assign_queue_num", data=b"{", content_type="application/json").status_code == 400
    big = client.post("/api/assign_queue_num", data=b"x" * (2 * 1024 * 1024), content_type="application/json")
    assert big.status_code == 413
    assert big.get_json()["error"] == "body_too_large"
    wrong_method = client.delete("/api/serving_num", query_string={"event_id": ctx.event_id})
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method.headers["Allow"]
    assert wrong_method.get_json()["error"] == "method_not_allowed"
    # The valid requests still work, so the refusals above are not a broken app refusing everything.
    assert client.get("/api/serving_num", query_string={"event_id": ctx.event_id}).status_code == 200
    assert client.post("/api/assign_queue_num", json={"event_id": ctx.event_id}).get_json()["queue_number"] == 2
