"""The analysis runner: what it GETs, how it judges answers, what it records, against a local HTTP
server on 127.0.0.1 (Prometheus answers are checked as documents; the e2e tests run a real one)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from zdr import analysis
from zdr.analysis import Outcome, Reply, Target
from zdr.api import (
    AnalysisResult,
    HttpCheck,
    PrometheusCheck,
    ValueRange,
    ZeroDowntimeRolloutStatus,
    parse_spec,
)
from zdr.observe import Children
from zdr.revision import revision_hash

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Answers:
    """What the local server answers, by path: (status, body)."""

    def __init__(self) -> None:
        self.by_path: dict[str, tuple[int, bytes]] = {}
        self.seen: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Answers]]:
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            answers.seen.append(self.path)
            status, body = answers.by_path.get(self.path.split("?")[0], (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", answers
    finally:
        httpd.shutdown()
        httpd.server_close()


def target(pods: list[dict[str, Any]] | None = None, services: dict[Any, Any] | None = None) -> Target:
    return Target("shop", "web", "abc", "Canary", Children(services=services or {}, pods={"abc": pods or []}))


def pod(name: str, ip: str, ready: bool = True, port: int = 8080) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_url_check_passes_on_2xx_and_fails_otherwise(server: tuple[str, Answers]) -> None:
    base, answers = server
    answers.by_path["/ok"] = (204, b"")
    answers.by_path["/bad"] = (503, b"draining")
    ok = analysis.measure_http(HttpCheck(url=f"{base}/ok"), target(), analysis.fetch)
    assert (ok.kind, ok.value) == ("success", "204")
    bad = analysis.measure_http(HttpCheck(url=f"{base}/bad"), target(), analysis.fetch)
    assert bad.kind == "failure" and "status 503, expected 2xx" in bad.message
    listed = analysis.measure_http(HttpCheck(url=f"{base}/bad", status_codes=[503]), target(), analysis.fetch)
    assert listed.kind == "success"


def test_json_field_against_a_range(server: tuple[str, Answers]) -> None:
    base, answers = server
    answers.by_path["/stats"] = (200, json.dumps({"stats": {"errorRate": 0.2, "items": [{"v": 3}]}}).encode())
    check = HttpCheck(url=f"{base}/stats", json_path="stats.errorRate", range=ValueRange(max=0.1))
    outcome = analysis.measure_http(check, target(), analysis.fetch)
    assert (outcome.kind, outcome.value) == ("failure", "0.2")
    assert "stats.errorRate = 0.2, outside <= 0.1" in outcome.message
    within = HttpCheck(url=f"{base}/stats", json_path="stats.items.0.v", range=ValueRange(min=1, max=5))
    assert analysis.measure_http(within, target(), analysis.fetch).kind == "success"
    missing = HttpCheck(url=f"{base}/stats", json_path="stats.nothing", range=ValueRange(max=1))
    result = analysis.measure_http(missing, target(), analysis.fetch)
    assert result.kind == "failure" and "no number at stats.nothing" in result.message


def test_no_answer_is_a_failure() -> None:
    check = HttpCheck(url="http://127.0.0.1:9/none", timeout_seconds=1)
    outcome = analysis.measure_http(check, target(), analysis.fetch)
    assert outcome.kind == "failure" and "no answer" in outcome.message


def test_pods_target_gets_every_ready_pod_by_ip() -> None:
    got: list[str] = []

    def fake(url: str, timeout: float) -> Reply:
        got.append(url)
        return Reply(500 if "10.88.0.7" in url else 200, b"")

    pods = [pod("b", "10.88.0.6"), pod("a", "10.88.0.7"), pod("c", "10.88.0.8", ready=False)]
    outcome = analysis.measure_http(HttpCheck(path="/healthz"), target(pods), fake)
    assert got == ["http://10.88.0.7:8080/healthz"]  # sorted by name; the first failure ends it
    assert outcome.kind == "failure" and outcome.message.startswith("pod a: status 500")
    got.clear()
    outcome = analysis.measure_http(HttpCheck(path="/", port="http"), target(pods[:1]), fake)
    assert outcome.kind == "success" and got == ["http://10.88.0.6:8080/"]
    nothing = analysis.measure_http(HttpCheck(), target([pods[2]]), fake)
    assert nothing.kind == "nodata" and "no ready pod" in nothing.message


def test_service_target_waits_for_the_service_to_select_the_revision() -> None:
    from zdr.api import ServiceRole

    def fake(url: str, timeout: float) -> Reply:
        assert url == "http://10.96.0.9:80/"
        return Reply(200, b"")

    service = {
        "metadata": {"name": "web-canary"},
        "spec": {
            "clusterIP": "10.96.0.9",
            "selector": {"zdr.io/revision": "old"},
            "ports": [{"name": "http", "port": 80}],
        },
    }
    waiting = analysis.measure_http(
        HttpCheck(target="Service"), target(services={ServiceRole.CANARY: service}), fake
    )
    assert waiting.kind == "nodata"
    service["spec"]["selector"] = {"zdr.io/revision": "abc"}
    ready = analysis.measure_http(
        HttpCheck(target="Service"), target(services={ServiceRole.CANARY: service}), fake
    )
    assert ready.kind == "success"


def test_prometheus_answers() -> None:
    vector = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {}, "value": [1, "0.25"]}, {"value": [1, "0.01"]}],
        },
    }
    assert analysis.prometheus_values(vector) == [0.25, 0.01]
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}
    assert analysis.prometheus_values(scalar) == [3.0]
    with pytest.raises(ValueError, match="bad_data"):
        analysis.prometheus_values({"status": "error", "error": "bad_data"})
    with pytest.raises(ValueError, match="matrix"):
        analysis.prometheus_values({"status": "success", "data": {"resultType": "matrix", "result": []}})
    check = PrometheusCheck(address="http://127.0.0.1:9090", query="q", range=ValueRange(max=0.1))
    assert analysis.judge_values([0.25, 0.01], check).kind == "failure"
    assert analysis.judge_values([0.05], check).kind == "success"
    assert analysis.judge_values([], check).kind == "nodata"
    assert analysis.judge_values([float("nan")], check).kind == "nodata"


def test_prometheus_query_is_rendered_and_sent(server: tuple[str, Answers]) -> None:
    base, answers = server
    answers.by_path["/api/v1/query"] = (
        200,
        json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "0.5"]}]}}
        ).encode(),
    )
    check = PrometheusCheck(address=base, query='up{revision="{{revision}}"}', range=ValueRange(min=1))
    outcome = analysis.measure_prometheus(check, target(), analysis.fetch)
    assert outcome.kind == "failure" and outcome.value == "0.5"
    assert answers.seen == ["/api/v1/query?query=up%7Brevision%3D%22abc%22%7D"]
    down = PrometheusCheck(
        address="http://127.0.0.1:9", query="up", range=ValueRange(min=1), timeout_seconds=1
    )
    assert analysis.measure_prometheus(down, target(), analysis.fetch).kind == "failure"


def test_measure_takes_only_due_measurements_and_records_them() -> None:
    check = {"name": "ok", "interval": "10s", "http": {"url": "http://127.0.0.1:1/"}}
    raw = {
        "replicas": 2,
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 80}]}]},
        },
        "analysis": {"checks": [check]},
    }
    spec = parse_spec(raw)
    revision = revision_hash(spec)
    due = AnalysisResult(name="ok", revision=revision, started_at=NOW)
    other = AnalysisResult(name="ok", revision="someother", started_at=NOW)
    status = ZeroDowntimeRolloutStatus(analysis=[due, other])
    calls: list[str] = []

    def fake(url: str, timeout: float) -> Reply:
        calls.append(url)
        return Reply(200, b"")

    after = analysis.measure(spec, status, Children(), namespace="shop", rollout="web", now=NOW, get=fake)
    assert calls == ["http://127.0.0.1:1/"]
    measured = after.analysis[0]
    assert (measured.measurements, measured.successes, measured.failures) == (1, 1, 0)
    assert measured.last_measured_at == NOW and measured.last_success_at == NOW
    assert after.analysis[1] == other  # another revision's result is not measured
    again = analysis.measure(
        spec, after, Children(), namespace="shop", rollout="web", now=NOW + timedelta(seconds=5), get=fake
    )
    assert again == after and len(calls) == 1  # not due yet


def test_a_crash_inside_a_measurement_is_a_failure() -> None:
    def broken(url: str, timeout: float) -> Reply:
        raise RuntimeError("boom")

    outcome = analysis._safely(
        parse_spec(
            {
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 80}]}]},
                },
                "analysis": {"checks": [{"name": "c", "http": {"url": "http://127.0.0.1:1/"}}]},
            }
        ).analysis.checks[0],  # type: ignore[index]
        target(),
        broken,
    )
    assert outcome == Outcome("failure", None, "RuntimeError: boom")
