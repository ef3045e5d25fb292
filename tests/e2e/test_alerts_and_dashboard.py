"""The alert rules and the Grafana dashboard name only metrics that ``/metrics`` declares.

A fresh gunicorn server (no event, no worker, several gunicorn workers) is scraped once; every
``idp_*`` metric an alert expression or a dashboard query names must be declared there (a ``# TYPE``
line), so a rule can never watch a name that does not exist. ``promtool`` (Debian's prometheus
package) checks the rule file's syntax and runs its unit tests (``deploy/prometheus/alerts_test.yaml``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import service_missing

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "waiting-room.json"
METRIC = re.compile(r"\bidp_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def alert_rules() -> list[dict]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(variable["definition"])
    return queries


def declared(text: str) -> set[str]:
    """Every sample name the exposition may carry, from its ``# TYPE`` lines."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
    return names


def named_metrics(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in METRIC.findall(expr)}


def test_the_rules_cover_what_an_operator_must_hear_about():
    rules = alert_rules()
    by_name = {rule["alert"]: rule for rule in rules}
    assert len(by_name) == len(rules)
    wanted = {
        "WaitingRoomHighErrorRate": "idp_http_requests_total",
        "WaitingRoomServiceUnavailable": "idp_http_requests_total",
        "WaitingRoomQueueStoreDown": "idp_queue_store_up",
        "WaitingRoomQueueStoreLost": "idp_queue_store_lost",
        "WaitingRoomWorkerLeaseNotHeld": "idp_worker_lease_held",
        "WaitingRoomAdmissionStalled": "idp_event_serving",
        "WaitingRoomWebhookBacklog": "idp_webhook_delivery_lag_seconds",
        "WaitingRoomRefusedJoinsSpiking": "idp_joins_refused_total",
    }
    for alert, metric in wanted.items():
        assert metric in by_name[alert]["expr"], alert
    for rule in rules:
        assert METRIC.search(rule["expr"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_every_metric_the_rules_and_the_dashboard_name_is_declared_on_a_fresh_server(live_server, backend):
    server = live_server(backend, IDP_WORKERS=2)
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200
    names = declared(response.text)
    wanted = named_metrics([rule["expr"] for rule in alert_rules()]) | named_metrics(dashboard_queries())
    assert wanted, "the rules and the dashboard name metrics"
    assert sorted(wanted - names) == []
    # A fresh server says its backing services answer and that no worker holds the lease yet.
    values = dict(re.findall(r"^(idp_[a-z_]+) ([0-9.]+)$", response.text, flags=re.M))
    assert values["idp_queue_store_up"] == "1.0"
    assert values["idp_database_up"] == "1.0"
    assert values["idp_worker_lease_held"] == "0.0"


def test_the_name_check_catches_a_metric_that_does_not_exist(live_server):
    server = live_server("sqlite")
    names = declared(requests.get(server.url + "/metrics", timeout=10).text)
    assert named_metrics(["rate(idp_joins_refused_totl[5m])"]) - names == {"idp_joins_refused_totl"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        service_missing("promtool (Debian package prometheus)", FileNotFoundError("promtool"))
    return str(path)


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "rules", str(ALERTS)],
        ["check", "config", str(PROMETHEUS_CONFIG)],
        ["test", "rules", str(ALERT_TESTS)],
    ],
    ids=["check-rules", "check-config", "rule-unit-tests"],
)
def test_promtool_accepts_the_rules_and_their_unit_tests_pass(argv):
    result = subprocess.run([_promtool(), *argv], capture_output=True, text=True, timeout=120, cwd=ALERTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_dashboard_is_a_grafana_dashboard_over_the_prometheus_datasource():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["type"] in {"timeseries", "stat"}
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert METRIC.search(target["expr"]), panel["title"]
