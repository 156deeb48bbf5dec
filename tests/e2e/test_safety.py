"""Safety under live traffic: automatic rollback of bad releases, manual abort and undo, fast
rollback from a warm revision, restart, retry, and undo next to GitOps.

Every test runs the project's prober (bench/prober) against the rollout's Service ClusterIP for
its whole length: 200 requests/s on new connections, 200 requests/s over kept-alive connections
and 20 WebSocket clients. The run must be valid (every 1 s window at >= 95 % of the rate, send-lag
p99 <= 250 ms, every request and client accounted for), and it asserts on every request: no
connection-level failure at any time, no abnormal WebSocket end, and no 5xx once an abort has
completed (only a release that answers 500s by design may produce 5xx, and only before its abort
completed). The analysis test runs a real Prometheus scraping the test app's /metrics.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from bench.prober import Record, Traffic, http_records, is_failure, last_on_other_version, summarize, ws_ends
from bench.scenarios import describe_failures
from tests.e2e import kube
from tests.e2e.conftest import OperatorProcess
from tests.e2e.prometheus import Prometheus
from tests.e2e.rollouts import GROUP, PLURAL, VERSION, Rollouts, rollout, with_version

pytestmark = pytest.mark.e2e

RATE = 200.0
"""Requests per second in each HTTP mode: a gap of 5 ms is seen."""
WS_CLIENTS = 20
DEADLINE = 15


@pytest.fixture
def zdr(api: client.ApiClient, namespace: str, operator: OperatorProcess) -> Rollouts:
    if operator.proc is None or operator.proc.poll() is not None:
        operator.start()
    return Rollouts(api, namespace)


def rolling(delay: int = 20) -> dict[str, Any]:
    return {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0, "scaleDownDelaySeconds": delay},
    }


def blue_green(auto: bool = True, delay: int = 20) -> dict[str, Any]:
    return {"type": "BlueGreen", "blueGreen": {"autoPromotion": auto, "scaleDownDelaySeconds": delay}}


def canary(steps: list[dict[str, Any]] | None = None, delay: int = 20) -> dict[str, Any]:
    body: dict[str, Any] = {"maxSurge": 1, "scaleDownDelaySeconds": delay}
    if steps is not None:
        body["steps"] = steps
    return {"type": "Canary", "canary": body}


# A rollout that stops half way, for each strategy: manual abort and undo act on it there.
HALFWAY = {
    "rolling": rolling(),
    "bluegreen": blue_green(auto=False),
    "canary": canary([{"setWeight": 34}, {"pause": {}}]),
}


def manifest(strategy: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body = rollout("web", strategy, replicas=3)
    body["spec"]["progressDeadlineSeconds"] = DEADLINE
    body["spec"].update(spec)
    return body


def deploy(zdr: Rollouts, body: dict[str, Any]) -> str:
    zdr.create(body)
    stable: str = zdr.wait_phase("web", "Healthy", timeout=120)["stableRevision"]
    return stable


@contextlib.contextmanager
def live_traffic(zdr: Rollouts, out: Path, service: str = "web") -> Iterator[Traffic]:
    ip = kube.cluster_ip(zdr.core, zdr.namespace, service)
    kube.wait_serving(ip)
    traffic = Traffic(ip, out, rate=RATE, ws_clients=WS_CLIENTS, duration=600)
    traffic.start()
    try:
        yield traffic
    finally:
        traffic.stop()


def failures(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """(connection-level failures, 5xx answers)."""
    bad = [r for r in http_records(records) if is_failure(r)]
    return [r for r in bad if r.get("outcome") != "http_5xx"], [
        r for r in bad if r.get("outcome") == "http_5xx"
    ]


def assert_no_failures(traffic: Traffic, *, five_xx_until: float | None = None) -> list[Record]:
    """Stops the traffic; the run must be valid; no connection-level failure at all in either mode,
    no abnormal WebSocket end, and no 5xx (or none sent after ``five_xx_until``, the moment an
    abort of a release that answers 500s was seen complete)."""
    records = traffic.stop()
    summary = summarize(records)
    assert summary.valid, f"the prober could not keep its schedule, nothing is proven: {summary.line()}"
    sent = list(http_records(records))
    broken, five_xx = failures(records)
    assert broken == [], (
        f"{len(broken)} connection-level failures of {len(sent)}:\n{describe_failures(broken)}"
    )
    late = [r for r in five_xx if five_xx_until is None or float(r["t_send"]) >= five_xx_until]
    assert late == [], f"{len(late)} 5xx answers after the abort completed:\n{describe_failures(late)}"
    assert summary.ws_abnormal == 0, f"abnormal WebSocket ends:\n{describe_failures(list(ws_ends(records)))}"
    return sent


PRE_STOP = 2
"""drain.preStopSeconds of every rollout here (tests/e2e/rollouts.py)."""
MOVED_WITHIN = PRE_STOP + 2
"""The goal: every connection on the revision moved to within preStopSeconds + 2 s."""
MARGIN = 3.0
"""Slack on that goal for a loaded test machine (the bench measures the goal itself): a revision
kept serving through a warm window (20 s and more here) is still far beyond it."""


def assert_moved(
    records: list[Record], target: str, since: float, what: str, until: float = float("inf")
) -> float:
    """Every connection (new, kept-alive, WebSocket) left the other versions for ``target`` within
    MOVED_WITHIN (+ MARGIN) seconds of ``since`` (and before ``until``); returns how long it took."""
    took = last_on_other_version(records, target, since, until)
    assert took is not None, f"{what}: the records do not show every connection on {target}"
    assert took <= MOVED_WITHIN + MARGIN, (
        f"{what}: a connection was still on another version than {target} {took:.1f}s later "
        f"(goal {MOVED_WITHIN}s: preStopSeconds {PRE_STOP} + 2)"
    )
    return took


def wait_status(
    zdr: Rollouts, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 120
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        st = zdr.status("web")
        return st if check(st) else None

    return kube.wait_until(what, reached, timeout=timeout, interval=0.2)


def wait_halfway(zdr: Rollouts, strategy: str, stable: str) -> dict[str, Any]:
    """Waits until the rollout stands half way: new pods serve, the stable revision still serves."""
    if strategy == "rolling":
        return wait_status(
            zdr,
            "one new pod to serve",
            lambda st: (
                st.get("updateRevision") not in (None, stable)
                and "1/3 new pods serve" in (st.get("message") or "")
            ),
        )
    return wait_status(zdr, "the rollout to pause half way", lambda st: st.get("phase") == "Paused")


def wait_abort_completed(
    zdr: Rollouts, traffic: Traffic, timeout: float = 120
) -> tuple[dict[str, Any], float]:
    st = wait_status(
        zdr, "the abort to complete", lambda st: bool((st.get("abort") or {}).get("completedAt")), timeout
    )
    return st, traffic.now()


def condition(st: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == kind)


def reasons(zdr: Rollouts) -> list[str]:
    return [e.reason for e in zdr.events("web")]


def assert_aborted(zdr: Rollouts, st: dict[str, Any], reason: str, stable: str) -> None:
    assert st["phase"] == "Aborted", st
    assert st["abort"]["reason"] == reason, st["abort"]
    assert condition(st, "Stalled")["status"] == "True" and condition(st, "Stalled")["reason"] == reason
    assert condition(st, "Ready")["status"] == "False"
    assert st["stableRevision"] == stable
    aborted = st["abort"]["revision"]
    kube.wait_until(
        "the aborted revision to be at 0", lambda: zdr.deployments("web")[aborted]["spec"]["replicas"] == 0
    )
    assert not zdr.pods("web", aborted)
    assert zdr.deployments("web")[stable]["spec"]["replicas"] == 3
    warnings = [e for e in zdr.events("web") if e.reason == "RolloutAborted"]
    assert len(warnings) == 1 and warnings[0].type == "Warning", warnings
    assert "AbortCompleted" in reasons(zdr)
    zdr.wait_only("web", {"v1"})


# ---------------------------------------------------------------------------------------------
# Bad releases are rolled back automatically
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["rolling", "bluegreen", "canary"])
def test_release_that_never_becomes_ready_is_aborted_at_the_deadline(
    zdr: Rollouts, tmp_path: Path, strategy: str
) -> None:
    body = manifest(HALFWAY[strategy] if strategy != "bluegreen" else blue_green())
    stable = deploy(zdr, body)
    with live_traffic(zdr, tmp_path) as traffic:
        started = time.monotonic()
        zdr.update_spec("web", with_version(body, "v2", NEVER_READY="1")["spec"])
        st, _ = wait_abort_completed(zdr, traffic, timeout=DEADLINE + 60)
        took = time.monotonic() - started
        assert_aborted(zdr, st, "ProgressDeadlineExceeded", stable)
        time.sleep(2)
        sent = assert_no_failures(traffic)
    assert DEADLINE <= took < DEADLINE + 30, took
    assert {r["version"] for r in sent} == {"v1"}
    assert "no progress for 15s" in st["abort"]["message"]


def test_crash_looping_release_is_aborted(zdr: Rollouts, tmp_path: Path) -> None:
    body = manifest(canary([{"setWeight": 34}, {"pause": {}}]), progressDeadlineSeconds=300)
    stable = deploy(zdr, body)
    with live_traffic(zdr, tmp_path) as traffic:
        # The app exits before it would become ready: it crash-loops without ever serving.
        zdr.update_spec("web", with_version(body, "v2", STARTUP_DELAY="4s", CRASH_AFTER="1s")["spec"])
        st, _ = wait_abort_completed(zdr, traffic, timeout=90)
        assert_aborted(zdr, st, "CrashLoopBackOff", stable)
        time.sleep(2)
        assert_no_failures(traffic)


def test_release_answering_500s_is_aborted_by_a_background_http_check(zdr: Rollouts, tmp_path: Path) -> None:
    analysis = {
        "checks": [
            {
                "name": "root-answers",
                "interval": "2s",
                "failureLimit": 1,
                "http": {"target": "Pods", "path": "/", "timeoutSeconds": 2},
            }
        ]
    }
    body = manifest(rolling(), analysis=analysis, progressDeadlineSeconds=300)
    stable = deploy(zdr, body)
    with live_traffic(zdr, tmp_path) as traffic:
        # Every GET / answers 500: with a rate below 1 a measurement can pass (it asks each ready
        # pod once), and a 3-pod rollout finished before the second failure in one run in ~30.
        # A background check does not hold completion; it aborts only while the rollout runs.
        zdr.update_spec("web", with_version(body, "v2", FAIL_RATE="1", STARTUP_DELAY="2s")["spec"])
        st, completed = wait_abort_completed(zdr, traffic, timeout=120)
        assert_aborted(zdr, st, "AnalysisFailed", stable)
        assert "root-answers failed 2 times" in st["abort"]["message"], st["abort"]
        time.sleep(3)
        assert_no_failures(traffic, five_xx_until=completed)
    assert st["analysis"] == []


def test_release_answering_500s_is_aborted_by_prometheus_analysis(
    zdr: Rollouts, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    prometheus = Prometheus(core, namespace, tmp_path / "prometheus")
    prometheus.start()
    try:
        query = (
            '(sum(rate(testapp_requests_total{revision="{{revision}}",code=~"5.."}[10s])) or vector(0))'
            ' / sum(rate(testapp_requests_total{revision="{{revision}}"}[10s]))'
        )
        check: dict[str, Any] = {
            "name": "error-rate",
            "interval": "2s",
            "initialDelay": "4s",
            "failureLimit": 1,
            "count": 5,
            "prometheus": {"address": prometheus.address, "query": query, "range": {"max": 0.05}},
        }
        steps: list[dict[str, Any]] = [
            {"setWeight": 34},
            {"analysis": {"checks": [check]}},
            {"setWeight": 67},
        ]
        body = manifest(canary(steps), progressDeadlineSeconds=300)
        stable = deploy(zdr, body)
        prometheus.wait_scraping(stable, 3)
        with live_traffic(zdr, tmp_path / "traffic") as traffic:
            zdr.update_spec("web", with_version(body, "v2", FAIL_RATE="0.5")["spec"])
            st = wait_status(
                zdr,
                "the analysis step",
                lambda st: st.get("currentStepIndex") == 1 and bool(st.get("analysis")),
            )
            result = st["analysis"][0]
            assert result["name"] == "error-rate" and result["step"] == 1
            st, completed = wait_abort_completed(zdr, traffic, timeout=120)
            assert_aborted(zdr, st, "AnalysisFailed", stable)
            assert "error-rate failed 2 times" in st["abort"]["message"], st["abort"]
            assert "outside <= 0.05" in st["abort"]["message"], st["abort"]
            time.sleep(3)
            assert_no_failures(traffic, five_xx_until=completed)
    finally:
        prometheus.stop()


def test_healthy_release_passes_prometheus_analysis(
    zdr: Rollouts, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    prometheus = Prometheus(core, namespace, tmp_path / "prometheus")
    prometheus.start()
    try:
        query = 'sum(rate(testapp_requests_total{revision="{{revision}}",code="200"}[10s]))'
        check: dict[str, Any] = {
            "name": "answers",
            "interval": "2s",
            "initialDelay": "5s",
            "count": 2,
            "prometheus": {"address": prometheus.address, "query": query, "range": {"min": 0.5}},
        }
        body = manifest(
            canary([{"setWeight": 34}, {"analysis": {"checks": [check]}}]), progressDeadlineSeconds=300
        )
        deploy(zdr, body)
        with live_traffic(zdr, tmp_path / "traffic") as traffic:
            zdr.update_spec("web", with_version(body, "v2")["spec"])
            st = zdr.wait_phase("web", "Healthy", timeout=120)
            assert st["stableRevision"] == st["updateRevision"]
            completed = [e.message for e in zdr.events("web") if e.reason == "StepCompleted"]
            assert any("analysis passed (answers 2/2 passed, 0 failed)" in m for m in completed), completed
            assert_no_failures(traffic)
    finally:
        prometheus.stop()


# ---------------------------------------------------------------------------------------------
# Manual abort and undo half way, for each strategy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", sorted(HALFWAY))
def test_abort_half_way_returns_all_traffic_without_a_failed_request(
    zdr: Rollouts, tmp_path: Path, strategy: str
) -> None:
    body = manifest(HALFWAY[strategy], progressDeadlineSeconds=300)
    stable = deploy(zdr, body)
    with live_traffic(zdr, tmp_path) as traffic:
        zdr.update_spec("web", with_version(body, "v2", STARTUP_DELAY="3s")["spec"])
        wait_halfway(zdr, strategy, stable)
        asked = time.monotonic()
        commanded = traffic.now()
        zdr.command("web", "abort")
        wait_status(zdr, "the abort to be handled", lambda st: st.get("phase") == "Aborted", timeout=5)
        handled = time.monotonic() - asked
        # RollingUpdate and Canary gave the stable revision's pods to the new one: it serves in full
        # again once its new pods are ready, and from then on the aborted pods drain at once.
        kube.wait_until(
            "the stable revision to be back at full size",
            lambda: zdr.deployments("web")[stable]["status"].get("readyReplicas") == 3,
            timeout=60,
            interval=0.1,
        )
        full = max(commanded, traffic.now())
        st, _ = wait_abort_completed(zdr, traffic)
        assert_aborted(zdr, st, "RolloutAborted", stable)
        time.sleep(2)
        sent = assert_no_failures(traffic)
        assert_moved(traffic.records(), "v1", full, "abort")
    assert handled < 2.0, f"abort took {handled:.1f}s to take effect"
    assert st["lastCommand"]["verb"] == "abort" and st["lastCommand"]["result"] == "Accepted"
    assert "AbortRequested" in reasons(zdr)
    assert {r["version"] for r in sent} <= {"v1", "v2"}


@pytest.mark.parametrize("strategy", sorted(HALFWAY))
def test_undo_half_way_rolls_back_without_a_failed_request(
    zdr: Rollouts, tmp_path: Path, strategy: str
) -> None:
    body = manifest(HALFWAY[strategy], progressDeadlineSeconds=300)
    stable = deploy(zdr, body)
    with live_traffic(zdr, tmp_path) as traffic:
        zdr.update_spec("web", with_version(body, "v2", STARTUP_DELAY="3s")["spec"])
        update = wait_halfway(zdr, strategy, stable)["updateRevision"]
        generation = zdr.get("web")["metadata"]["generation"]
        zdr.command("web", "undo")
        st = wait_status(
            zdr, "the undo to complete", lambda st: bool((st.get("rollback") or {}).get("completedAt"))
        )
        zdr.wait_only("web", {"v1"})
        time.sleep(2)
        assert_no_failures(traffic)
    assert st["rollback"]["revision"] == stable and st["rollback"]["fromRevision"] == update
    assert st["phase"] == "Degraded" and st["stableRevision"] == stable and st["updateRevision"] == update
    stalled = condition(st, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "RolledBack"
    assert "spec.template still asks for revision 2" in st["message"], st["message"]
    # The spec was not touched (no GitOps drift).
    assert zdr.get("web")["metadata"]["generation"] == generation
    kube.wait_until("the undone revision to drain", lambda: not zdr.pods("web", update), timeout=60)
    assert {"UndoRequested", "RolledBack"} <= set(reasons(zdr))


# ---------------------------------------------------------------------------------------------
# Fast rollback: the previous revision is kept warm
# ---------------------------------------------------------------------------------------------
FINISHING = {
    "rolling": rolling(delay=90),
    "bluegreen": blue_green(delay=90),
    "canary": canary([{"setWeight": 34}, {"pause": {"duration": "1s"}}], delay=90),
}


@pytest.mark.parametrize("strategy", sorted(FINISHING))
def test_undo_within_the_warm_window_moves_traffic_back_without_new_pods(
    zdr: Rollouts, tmp_path: Path, strategy: str
) -> None:
    body = manifest(FINISHING[strategy], progressDeadlineSeconds=300)
    stable = deploy(zdr, body)
    served = {p.metadata.name for p in zdr.pods("web", stable)}
    with live_traffic(zdr, tmp_path) as traffic:
        zdr.update_spec("web", with_version(body, "v2")["spec"])
        done = wait_status(
            zdr,
            "the rollout to complete",
            lambda st: st.get("phase") == "Healthy" and st.get("stableRevision") not in (None, stable),
            timeout=120,
        )
        completed = traffic.now()
        update = done["stableRevision"]
        wait_status(
            zdr,
            "the previous revision to stand by",
            lambda st: "kept warm" in (st.get("message") or ""),
        )
        zdr.wait_only("web", {"v2"})
        warm_names: set[str] = kube.wait_until(
            "every warm pod to be ready",
            lambda: _ready_names(zdr.pods("web", stable), 3),
            timeout=60,
        )
        # The standby pods are fresh: every pod that took traffic before the rollout is gone.
        assert not warm_names & served, "a pod that served before the rollout was kept as standby"
        kube.wait_until(
            "the pods that served before the rollout to finish draining",
            lambda: not _all_pod_names(zdr, stable) & served,
            timeout=60,
        )
        _assert_scale_counts_the_serving_set(zdr, update, stable)
        asked = time.monotonic()
        undone = traffic.now()
        zdr.command("web", "undo")
        zdr.wait_only("web", {"v1"}, timeout=15)
        took = time.monotonic() - asked
        st = wait_status(
            zdr, "the undo to complete", lambda st: bool((st.get("rollback") or {}).get("completedAt"))
        )
        time.sleep(2)
        assert_no_failures(traffic)
        records = traffic.records()
        assert_moved(records, "v2", completed, "rollout", until=undone)
        assert_moved(records, "v1", undone, "undo")
    assert took < 8, f"traffic took {took:.1f}s to move back"
    assert {p.metadata.name for p in zdr.pods("web", stable)} == warm_names  # no pod was started for it
    assert st["stableRevision"] == stable
    assert not zdr.pods("web", update), "the revision undone keeps no standby"


def _all_pod_names(zdr: Rollouts, revision: str) -> set[str]:
    """Names of the revision's pods, terminating ones included."""
    selector = f"zdr.io/rollout=web,zdr.io/revision={revision}"
    return {
        p.metadata.name for p in zdr.core.list_namespaced_pod(zdr.namespace, label_selector=selector).items
    }


def _assert_scale_counts_the_serving_set(zdr: Rollouts, serving: str, standby: str) -> None:
    """What a HorizontalPodAutoscaler reads through the scale subresource during the warm window:
    the serving pods, not the standby (counted apart in status.standbyReplicas)."""

    def counted() -> tuple[dict[str, Any], dict[str, Any]] | None:
        st = zdr.status("web")
        scale = zdr.custom.get_namespaced_custom_object_scale(GROUP, VERSION, zdr.namespace, PLURAL, "web")
        return (scale, st) if st.get("standbyReplicas") == 3 else None

    scale, st = kube.wait_until("the standby in status", counted, timeout=15)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3, scale
    assert st["readyReplicas"] == 3 and st["replicas"] == 3, st
    selected = zdr.core.list_namespaced_pod(zdr.namespace, label_selector=scale["status"]["selector"]).items
    assert {p.metadata.labels["zdr.io/revision"] for p in selected} == {serving}, scale["status"]["selector"]
    assert len(zdr.pods("web", standby)) == 3


def _ready_names(pods: list[Any], count: int) -> set[str] | None:
    """The names of ``pods`` once there are ``count`` of them and all are ready."""
    ready = {
        p.metadata.name
        for p in pods
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    }
    return ready if len(pods) == count and len(ready) == count else None


# ---------------------------------------------------------------------------------------------
# Restart, retry, and undo next to GitOps
# ---------------------------------------------------------------------------------------------
def test_restart_replaces_every_pod_without_a_failed_request(zdr: Rollouts, tmp_path: Path) -> None:
    body = manifest(rolling())
    stable = deploy(zdr, body)
    before = {p.metadata.name for p in zdr.pods("web", stable)}
    with live_traffic(zdr, tmp_path) as traffic:
        zdr.command("web", "restart")
        st = wait_status(
            zdr, "the restart to complete", lambda st: bool((st.get("restart") or {}).get("completedAt"))
        )
        assert st["phase"] == "Healthy" and st["stableRevision"] == stable
        kube.wait_until(
            "the old pods to go", lambda: not before & {p.metadata.name for p in zdr.pods("web", stable)}
        )
        time.sleep(2)
        assert_no_failures(traffic)
    after = zdr.pods("web", stable)
    assert len(after) == 3 and not before & {p.metadata.name for p in after}
    assert st["updateRevision"] == stable  # same revision: the template hash is unchanged
    assert {"RestartRequested", "RestartCompleted"} <= set(reasons(zdr))


def test_retry_rolls_an_aborted_release_out_again(zdr: Rollouts, tmp_path: Path) -> None:
    body = manifest(HALFWAY["canary"], progressDeadlineSeconds=300)
    stable = deploy(zdr, body)
    with live_traffic(zdr, tmp_path) as traffic:
        zdr.update_spec("web", with_version(body, "v2")["spec"])
        wait_halfway(zdr, "canary", stable)
        zdr.command("web", "abort")
        wait_abort_completed(zdr, traffic)
        time.sleep(2)
        assert zdr.status("web")["phase"] == "Aborted"  # stays aborted for this template
        zdr.command("web", "retry")
        st = wait_status(
            zdr, "the retried rollout to pause at its step", lambda st: st.get("phase") == "Paused"
        )
        assert st.get("abort") is None and st["currentStepIndex"] == 1
        zdr.command("web", "promote")
        st = zdr.wait_phase("web", "Healthy", timeout=120)
        zdr.wait_only("web", {"v2"})
        assert_no_failures(traffic)
    assert st["stableRevision"] == st["updateRevision"] != stable


def test_a_new_template_after_undo_rolls_out_as_usual(zdr: Rollouts, tmp_path: Path) -> None:
    body = manifest(HALFWAY["rolling"], progressDeadlineSeconds=300)
    stable = deploy(zdr, body)
    with live_traffic(zdr, tmp_path) as traffic:
        zdr.update_spec("web", with_version(body, "v2", STARTUP_DELAY="3s")["spec"])
        wait_halfway(zdr, "rolling", stable)
        zdr.command("web", "undo")
        wait_status(
            zdr, "the undo to complete", lambda st: bool((st.get("rollback") or {}).get("completedAt"))
        )
        # The user's next change (the GitOps way: a new template) is honoured, not fought.
        zdr.update_spec("web", with_version(body, "v3")["spec"])
        st = zdr.wait_phase("web", "Healthy", timeout=120)
        zdr.wait_only("web", {"v3"})
        assert_no_failures(traffic)
    assert st.get("rollback") is None and st["stableRevision"] == st["updateRevision"] not in (stable,)
