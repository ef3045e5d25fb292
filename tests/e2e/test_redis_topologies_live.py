"""The real server on a real Redis Cluster (3 masters) and behind Sentinel, including a failover under load.

Joins, admission and token issuance go through gunicorn exactly as visitors and operators use them;
events are spread over the cluster's slots by their hash tags. During a Sentinel failover every answer is
a 200 or a proper 503, no position is handed out twice and every acknowledged place keeps its position.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.e2e.test_outages_live import Tally, _wait_for_joins

pytestmark = pytest.mark.e2e

# Names chosen so that their hash tags land on different masters of a three-node cluster.
EVENTS = ["sale", "concert", "drop", "exam", "tickets", "launch"]
JOINS_PER_EVENT = 12


def _join_admit_and_claim(server: Any) -> None:
    services = server.services()
    for event_id in EVENTS:
        services.events.create({"event_id": event_id, "name": event_id})
    with requests.Session() as session:
        joined: dict[str, list[dict[str, Any]]] = {}
        for event_id in EVENTS:
            answers = []
            for _ in range(JOINS_PER_EVENT):
                response = session.post(server.url + "/api/assign_queue_num", json={"event_id": event_id}, timeout=30)
                assert response.status_code == 200, response.text
                answers.append(response.json())
            assert [a["queue_number"] for a in answers] == list(range(1, JOINS_PER_EVENT + 1))
            joined[event_id] = answers
        for event_id, answers in joined.items():
            waiting = session.get(server.url + "/api/waiting_num", params={"event_id": event_id}, timeout=30)
            assert waiting.json() == {"waiting_num": JOINS_PER_EVENT}
            first = answers[0]["api_request_id"]
            early = session.post(
                server.url + "/api/generate_token", json={"event_id": event_id, "request_id": first}, timeout=30
            )
            assert early.status_code == 202, early.text  # not served yet
            services.engine.increment_serving(event_id, 5)
            serving = session.get(server.url + "/api/serving_num", params={"event_id": event_id}, timeout=30)
            assert serving.json() == {"serving_counter": 5}
            for answer in answers[:5]:
                tokens = session.post(
                    server.url + "/api/generate_token",
                    json={"event_id": event_id, "request_id": answer["api_request_id"]},
                    timeout=30,
                )
                assert tokens.status_code == 200, tokens.text
                verified = session.get(
                    server.url + "/verify",
                    params={"event_id": event_id},
                    headers={"Authorization": "Bearer " + tokens.json()["access_token"]},
                    timeout=30,
                )
                assert verified.status_code == 200
                assert verified.headers["X-Queue-Position"] == str(answer["queue_number"])
            sixth = session.post(
                server.url + "/api/generate_token",
                json={"event_id": event_id, "request_id": answers[5]["api_request_id"]},
                timeout=30,
            )
            assert sixth.status_code == 202


def test_join_admit_and_token_on_a_redis_cluster(live_server, redis_cluster):
    redis_cluster.flush()
    server = live_server("sqlite", IDP_REDIS_URL=redis_cluster.url)
    _join_admit_and_claim(server)
    # The events really are spread: every master holds some of their keys.
    holders = [node for node in redis_cluster.nodes if int(node.cli("DBSIZE").strip() or 0) > 0]
    assert len(holders) == len(redis_cluster.nodes)
    redis_cluster.flush()


def test_join_admit_and_token_behind_sentinel(live_server, redis_sentinel):
    redis_sentinel.flush()
    server = live_server("sqlite", IDP_REDIS_URL=redis_sentinel.url, IDP_REDIS_WAIT_REPLICAS="1")
    _join_admit_and_claim(server)
    redis_sentinel.flush()


def _joiner(url: str, tally: Tally, stopping: threading.Event) -> None:
    with requests.Session() as session:
        while not stopping.is_set():
            try:
                response = session.post(url + "/api/assign_queue_num", json={"event_id": "sale"}, timeout=30)
            except requests.RequestException as exc:
                with tally.lock:
                    tally.bad.append(f"no answer: {exc!r}")
                continue
            tally.record("join", response)


def _joins_during(server: Any, action: Callable[[], None], *, settle: float) -> list[dict[str, Any]]:
    """Six visitors join without pause while ``action`` runs: every answer is a 200 or a proper 503 and
    no position is handed out twice. Returns the acknowledged joins."""
    tally = Tally()
    stopping = threading.Event()
    threads = [threading.Thread(target=_joiner, args=(server.url, tally, stopping)) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while len(tally.joins) < 20 and time.monotonic() < deadline:
            time.sleep(0.1)  # enough acknowledged places before the action to show they are kept
        action()
        time.sleep(settle)
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=60)
    assert tally.bad == [], f"{len(tally.bad)} improper answers, first: {tally.bad[:5]}\n{server.log(60)}"
    positions = [join["queue_number"] for join in tally.joins]
    assert len(positions) > 20
    assert len(positions) == len(set(positions)), "a position was handed out twice"
    return tally.joins


def _places_kept(server: Any, joins: list[dict[str, Any]]) -> None:
    """Every acknowledged place (or a sample of at least 50) is still where it was."""
    with requests.Session() as session:
        for join in joins[:: max(1, len(joins) // 50)]:
            place = session.get(
                server.url + "/api/queue_num",
                params={"event_id": "sale", "request_id": join["api_request_id"]},
                timeout=30,
            )
            assert place.status_code == 200, place.text
            assert place.json()["queue_number"] == join["queue_number"]


@pytest.mark.parametrize("how", ["failover", "crash"])
def test_sentinel_failover_under_load_hands_out_no_position_twice(live_server, redis_sentinel, how):
    """A promotion asked of the sentinels, and the primary SIGKILLed: with IDP_REDIS_WAIT_REPLICAS=1 a join
    is acknowledged only once the replica holds it, so promoting the replica loses none."""
    redis_sentinel.flush()
    server = live_server(
        "sqlite",
        IDP_REDIS_URL=redis_sentinel.url,
        IDP_REDIS_WAIT_REPLICAS="1",
        IDP_RETRY_AFTER_SECONDS="2",
        IDP_RATE_LIMITS="off",  # every join comes from one address
    )
    server.services().events.create({"event_id": "sale", "name": "Sale"})
    before = redis_sentinel.primary_port()

    def promote() -> None:
        after = redis_sentinel.failover() if how == "failover" else redis_sentinel.crash_primary()
        assert after != before

    joins = _joins_during(server, promote, settle=2.5)
    # Until the old primary has rejoined as a replica, joins answer 503: nothing could confirm them.
    later = _wait_for_joins(server.url)
    assert later["queue_number"] > max(join["queue_number"] for join in joins)
    _places_kept(server, joins)
    redis_sentinel.flush()


def _slot_owner(cluster: Any, slot: int) -> tuple[str, Any]:
    """The node id and server that own ``slot`` now."""
    for line in cluster.nodes[0].cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        if "master" not in fields[2]:
            continue
        for item in fields[8:]:
            low, _, high = item.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                return fields[0], next(node for node in cluster.nodes if node.port == port)
    raise AssertionError(f"no master owns slot {slot}")


def test_joins_while_the_cluster_moves_the_events_slots(live_server, redis_cluster):
    """Resharding under load: MOVED/ASK are followed, or answered 503; never a 500, never a position twice."""
    redis_cluster.flush()
    server = live_server("sqlite", IDP_REDIS_URL=redis_cluster.url, IDP_RETRY_AFTER_SECONDS="2", IDP_RATE_LIMITS="off")
    server.services().events.create({"event_id": "sale", "name": "Sale"})
    slot = int(redis_cluster.nodes[0].cli("CLUSTER", "KEYSLOT", "{sale}").strip())
    source_id, source = _slot_owner(redis_cluster, slot)
    target_id, _target = next(
        (_slot_owner(redis_cluster, s)) for s in (0, 8000, 16383) if _slot_owner(redis_cluster, s)[0] != source_id
    )

    def reshard() -> None:
        # Move every slot of the node that holds the event (its keys included) to another master.
        slots = sum(
            int(high or low) - int(low) + 1
            for line in source.cli("CLUSTER", "NODES").splitlines()
            if line.startswith(source_id)
            for low, _, high in (item.partition("-") for item in line.split()[8:] if item[0].isdigit())
        )
        source.cli(
            "--cluster",
            "reshard",
            f"127.0.0.1:{source.port}",
            "--cluster-from",
            source_id,
            "--cluster-to",
            target_id,
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
        )
        assert _slot_owner(redis_cluster, slot)[0] == target_id

    joins = _joins_during(server, reshard, settle=1.0)
    _places_kept(server, joins)
    redis_cluster.flush()
