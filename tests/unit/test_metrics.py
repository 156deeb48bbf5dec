"""Rollout metrics from status transitions: the pure mapping fed with plain statuses, then the
real planner driven through whole rollouts with every transition counted in a fresh registry."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from zdr.api import (
    AbortRecord,
    Command,
    CommandRecord,
    Condition,
    RevisionRecord,
    RollbackRecord,
    ZeroDowntimeRolloutStatus,
    parse_spec,
)
from zdr.metrics import (
    RolloutMetrics,
    Transition,
    completed_step,
    handled_command,
    new_abort,
    rollout_seconds,
    step_kind,
    transition,
)
from zdr.plan import Plan

from tests.unit.plan.simulate import START, Cluster, make_spec

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ready(state: str, since: float) -> Condition:
    return Condition(type="Ready", status=state, reason="R", last_transition_time=at(since))  # type: ignore[arg-type]


def status(**fields: Any) -> ZeroDowntimeRolloutStatus:
    return ZeroDowntimeRolloutStatus(**fields)


def record(name: str, number: int, created: float) -> RevisionRecord:
    return RevisionRecord(name=name, revision=number, created_at=at(created))


# ---------------------------------------------------------------------------------------------
# Rollout duration
# ---------------------------------------------------------------------------------------------
def rolling_out(created: float = 10, unready: float = 10, **fields: Any) -> ZeroDowntimeRolloutStatus:
    """Rolling out revision b (created at ``created``), not Ready since ``unready``; a was stable."""
    values: dict[str, Any] = {
        "phase": "Progressing",
        "stable_revision": "b",
        "update_revision": "b",
        "conditions": [ready("False", unready)],
        "revisions": [record("a", 1, 0), record("b", 2, created)],
    }
    values.update(fields)
    return status(**values)


def healthy(at_seconds: float = 70, **fields: Any) -> ZeroDowntimeRolloutStatus:
    values: dict[str, Any] = {
        "phase": "Healthy",
        "stable_revision": "b",
        "update_revision": "b",
        "conditions": [ready("True", at_seconds)],
        "revisions": [record("a", 1, 0), record("b", 2, 10)],
    }
    values.update(fields)
    return status(**values)


def test_a_new_revision_turning_healthy_is_one_rollout_timed_from_its_creation() -> None:
    assert rollout_seconds(rolling_out(created=10, unready=10), healthy(70), None) == 60.0
    # A template applied while the rollout was already not Ready (a scale-up going on): from its creation.
    assert rollout_seconds(rolling_out(created=10, unready=4), healthy(70), None) == 60.0


def test_only_the_write_that_turns_it_healthy_counts() -> None:
    assert rollout_seconds(healthy(70), healthy(70), None) is None
    assert rollout_seconds(rolling_out(), rolling_out(), None) is None
    assert rollout_seconds(rolling_out(), healthy(70, stable_revision="a"), None) is None
    assert rollout_seconds(rolling_out(), status(), None) is None


def test_a_scale_or_a_restart_of_the_stable_revision_is_no_rollout() -> None:
    # The stretch began at 100, after revision b was created at 10.
    scaling = rolling_out(created=10, unready=100)
    assert rollout_seconds(scaling, healthy(130), None) is None
    assert rollout_seconds(scaling, healthy(130), "b") is None


def test_a_template_naming_an_earlier_revision_counts_only_when_known_to_differ() -> None:
    # Revision b (created at 10) was stable before a; its template is applied again at 200.
    reverted = rolling_out(created=10, unready=200)
    assert rollout_seconds(reverted, healthy(230), "a") == 30.0
    assert rollout_seconds(reverted, healthy(230), None) is None  # this process never saw a Healthy


def test_a_status_never_seen_unready_or_an_undo_made_final_counts_nothing() -> None:
    lost = rolling_out(conditions=[])
    assert rollout_seconds(lost, healthy(70), None) is None
    undone = rolling_out(rollback=RollbackRecord(revision="b", from_revision="c", requested_at=at(5)))
    assert rollout_seconds(undone, healthy(70), "c") is None


# ---------------------------------------------------------------------------------------------
# Steps, commands, aborts
# ---------------------------------------------------------------------------------------------
KINDS = ("setWeight", "pause", "setWeight", "pause")


def at_step(index: int | None, started: float | None, **fields: Any) -> ZeroDowntimeRolloutStatus:
    values: dict[str, Any] = {
        "phase": "Progressing",
        "stable_revision": "a",
        "update_revision": "b",
        "current_step_index": index,
        "step_started_at": None if started is None else at(started),
    }
    values.update(fields)
    return status(**values)


def test_a_step_left_for_the_next_is_observed_with_its_kind_and_time() -> None:
    assert completed_step(at_step(1, 20), at_step(2, 50), now=at(99), step_kinds=KINDS) == ("pause", 30.0)
    # Several steps at once (promote): the one status showed as current.
    assert completed_step(at_step(0, 20), at_step(4, 25), now=at(99), step_kinds=KINDS) == ("setWeight", 5.0)
    promoted = at_step(None, None, stable_revision="b")
    assert completed_step(at_step(3, 20), promoted, now=at(60), step_kinds=KINDS) == ("pause", 40.0)


@pytest.mark.parametrize(
    "new",
    [
        at_step(1, 20),  # still there
        at_step(0, 70, update_revision="c"),  # a new template starts over
        at_step(None, None, abort=AbortRecord(revision="b", reason="AnalysisFailed", aborted_at=at(70))),
        at_step(None, None, rollback=RollbackRecord(revision="a", from_revision="b", requested_at=at(70))),
        at_step(None, None),  # no longer stepping, not promoted
    ],
)
def test_a_step_left_any_other_way_did_not_complete(new: ZeroDowntimeRolloutStatus) -> None:
    assert completed_step(at_step(1, 20), new, now=at(99), step_kinds=KINDS) is None


def test_the_promoting_index_after_the_last_step_is_no_step() -> None:
    promoted = at_step(None, None, stable_revision="b")
    assert completed_step(at_step(4, 20), promoted, now=at(60), step_kinds=KINDS) is None


def test_step_kinds_from_the_spec() -> None:
    spec = parse_spec(
        make_spec(
            4,
            strategy={
                "type": "Canary",
                "canary": {
                    "steps": [
                        {"setWeight": 20},
                        {"pause": {}},
                        {"analysis": {"checks": [{"name": "up", "http": {"target": "Pods"}}]}},
                    ]
                },
            },
        )
    )
    assert [step_kind(s) for s in spec.strategy.effective_canary.steps or []] == ["setWeight", "pause", "analysis"]


def command(id_: str, verb: str, result: str = "Accepted") -> CommandRecord:
    return CommandRecord(id=id_, verb=verb, result=result, handled_at=T0)  # type: ignore[arg-type]


def test_a_command_counts_once_per_id() -> None:
    assert handled_command(status(), status(last_command=command("1", "pause"))) == ("pause", "Accepted")
    same = status(last_command=command("1", "pause"))
    assert handled_command(same, same) is None
    after = status(last_command=command("2", "pause", "Rejected"))
    assert handled_command(same, after) == ("pause", "Rejected")
    assert handled_command(status(), status(last_command=command("invalid:x", "", "Rejected"))) == (
        "invalid",
        "Rejected",
    )
    assert handled_command(status(), status(last_command=command("3", "teleport", "Rejected"))) == (
        "invalid",
        "Rejected",
    )


def abort(reason: str, when: float, revision: str = "b") -> AbortRecord:
    return AbortRecord(revision=revision, reason=reason, aborted_at=at(when))


def test_an_abort_counts_when_it_begins() -> None:
    began = status(abort=abort("AnalysisFailed", 10))
    assert new_abort(status(), began) == "AnalysisFailed"
    assert new_abort(began, began) is None
    completed = status(abort=abort("AnalysisFailed", 10).model_copy(update={"completed_at": at(40)}))
    assert new_abort(began, completed) is None
    assert new_abort(began, status(abort=abort("RolloutAborted", 90))) == "RolloutAborted"
    assert new_abort(status(), status(abort=abort("SomethingNew", 1))) == "Other"


def test_transition_gathers_everything() -> None:
    before = rolling_out(last_command=command("1", "resume"))
    after = healthy(70, last_command=command("2", "promote"))
    assert transition(before, after, now=at(70)) == Transition(
        rollout_seconds=60.0, command=("promote", "Accepted")
    )


# ---------------------------------------------------------------------------------------------
# The registry: gauges, removal, and whole rollouts through the real planner
# ---------------------------------------------------------------------------------------------
class Recorded:
    """A simulated cluster whose every plan is recorded as the operator records it."""

    def __init__(self, spec: dict[str, Any], ready_after: int = 1) -> None:
        self.registry = CollectorRegistry()
        self.metrics = RolloutMetrics(self.registry)
        self.cluster = Cluster(ready_after=ready_after)
        self.spec = spec

    def step(self, command: Command | None = None) -> Plan:
        previous = self.cluster.status
        result = self.cluster.step(self.spec, command=command)
        parsed = parse_spec(self.spec)
        steps = (parsed.strategy.effective_canary.steps or []) if parsed.strategy.type == "Canary" else []
        self.metrics.record(
            "shop",
            "web",
            previous,
            result.status,
            strategy=parsed.strategy.type,
            step_kinds=[step_kind(s) for s in steps],
            now=self.cluster.now,
        )
        return result

    def run(self, until: str = "Healthy", command: Command | None = None, limit: int = 300) -> None:
        last = None
        for _ in range(limit):
            phase = self.step(command).status.phase
            if phase == until and last == until:
                return
            last = phase
        raise AssertionError(self.cluster.status.message)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def series(self, name: str) -> list[dict[str, str]]:
        return [
            sample.labels
            for metric in self.registry.collect()
            for sample in metric.samples
            if sample.name == name
        ]


def rollouts(recorded: Recorded, strategy: str) -> float:
    return recorded.value("zdr_rollout_duration_seconds_count", strategy=strategy)


def test_rolling_updates_count_once_each_and_scales_and_restarts_not_at_all() -> None:
    recorded = Recorded(make_spec(4, image="example/web:1"))
    recorded.run()
    assert rollouts(recorded, "RollingUpdate") == 1  # the first deployment
    first = recorded.cluster.status.update_revision
    recorded.spec = make_spec(4, image="example/web:2")
    recorded.run()
    assert rollouts(recorded, "RollingUpdate") == 2
    second = recorded.cluster.status.update_revision
    assert recorded.series("zdr_rollout_info") == [
        {"namespace": "shop", "rollout": "web", "strategy": "RollingUpdate", "revision": second}
    ]
    assert first != second
    assert recorded.value("zdr_rollout_phase", namespace="shop", rollout="web", phase="Healthy") == 1
    assert recorded.value("zdr_rollout_phase", namespace="shop", rollout="web", phase="Progressing") == 0
    assert recorded.series("zdr_rollout_step") == []

    recorded.spec = make_spec(6, image="example/web:2")
    recorded.run()
    recorded.step(Command(id="r1", verb="restart"))
    recorded.run(command=Command(id="r1", verb="restart"))
    assert rollouts(recorded, "RollingUpdate") == 2
    assert recorded.value("zdr_commands_total", verb="restart", result="Accepted") == 1

    # The first template again (a revert in git): counted, since this process saw the second Healthy.
    recorded.spec = make_spec(6, image="example/web:1")
    recorded.run()
    assert rollouts(recorded, "RollingUpdate") == 3
    total = recorded.value("zdr_rollout_duration_seconds_sum", strategy="RollingUpdate")
    assert total > 0


def test_a_canary_counts_its_steps_its_promote_and_its_rollout() -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "5s"}}, {"setWeight": 50}, {"pause": {}}]
    strategy = {"type": "Canary", "canary": {"maxSurge": 1, "steps": steps, "scaleDownDelaySeconds": 0}}
    recorded = Recorded(make_spec(4, image="example/web:1", strategy=strategy), ready_after=2)
    recorded.run()
    recorded.spec = make_spec(4, image="example/web:2", strategy=strategy)
    for _ in range(100):
        if recorded.step().status.current_step_index == 3:
            break
    assert recorded.cluster.status.phase == "Paused"
    assert recorded.value("zdr_rollout_step", namespace="shop", rollout="web") == 3
    assert recorded.value("zdr_rollout_phase", namespace="shop", rollout="web", phase="Paused") == 1
    assert recorded.value("zdr_rollout_step_duration_seconds_count", kind="setWeight") == 2
    assert recorded.value("zdr_rollout_step_duration_seconds_count", kind="pause") == 1
    assert recorded.value("zdr_rollout_step_duration_seconds_sum", kind="pause") >= 5
    promote = Command(id="p1", verb="promote")
    recorded.run(command=promote)
    assert recorded.value("zdr_commands_total", verb="promote", result="Accepted") == 1
    assert recorded.value("zdr_rollout_step_duration_seconds_count", kind="pause") == 2
    assert rollouts(recorded, "Canary") == 2
    assert recorded.series("zdr_rollout_step") == []


def test_an_abort_by_command_counts_the_abort_and_the_command_but_no_rollout() -> None:
    strategy = {"type": "BlueGreen", "blueGreen": {"autoPromotion": False, "scaleDownDelaySeconds": 0}}
    recorded = Recorded(make_spec(3, image="example/web:1", strategy=strategy))
    recorded.run()
    recorded.spec = make_spec(3, image="example/web:2", strategy=strategy)
    recorded.run(until="Paused")
    recorded.run(until="Aborted", command=Command(id="a1", verb="abort"))
    assert recorded.value("zdr_aborts_total", reason="RolloutAborted") == 1
    assert recorded.value("zdr_commands_total", verb="abort", result="Accepted") == 1
    assert rollouts(recorded, "BlueGreen") == 1
    retry = Command(id="t1", verb="retry")
    recorded.run(until="Paused", command=retry)
    recorded.run(command=Command(id="p1", verb="promote"))
    assert rollouts(recorded, "BlueGreen") == 2
    assert recorded.value("zdr_aborts_total", reason="RolloutAborted") == 1


def test_a_restarted_process_counts_nothing_again() -> None:
    recorded = Recorded(make_spec(3, image="example/web:1"))
    recorded.run()
    fresh = CollectorRegistry()
    recorded.registry, recorded.metrics = fresh, RolloutMetrics(fresh)
    for _ in range(5):
        recorded.step()
    assert rollouts(recorded, "RollingUpdate") == 0
    assert recorded.value("zdr_rollout_phase", namespace="shop", rollout="web", phase="Healthy") == 1


def test_info_series_follow_the_revision_and_go_with_the_rollout() -> None:
    registry = CollectorRegistry()
    metrics = RolloutMetrics(registry)
    one = status(phase="Progressing", update_revision="a", current_step_index=0)
    two = status(phase="Progressing", update_revision="b")
    metrics.record("ns", "web", status(), one, strategy="Canary", now=START)
    metrics.record("ns", "web", one, two, strategy="Canary", now=START)
    info = [s.labels for m in registry.collect() for s in m.samples if s.name == "zdr_rollout_info"]
    assert info == [{"namespace": "ns", "rollout": "web", "strategy": "Canary", "revision": "b"}]
    assert registry.get_sample_value("zdr_rollout_step", {"namespace": "ns", "rollout": "web"}) is None
    metrics.record("ns", "web", two, two, strategy="Whatever", now=START)
    info = [s.labels for m in registry.collect() for s in m.samples if s.name == "zdr_rollout_info"]
    assert [i["strategy"] for i in info] == ["Unknown"]
    metrics.forget("ns", "web")
    left = [
        s
        for m in registry.collect()
        for s in m.samples
        if s.name in ("zdr_rollout_info", "zdr_rollout_phase", "zdr_rollout_step")
    ]
    assert left == []
    metrics.forget("ns", "web")  # twice is harmless


def test_a_replica_that_stops_leading_drops_its_series_and_records_nothing() -> None:
    registry = CollectorRegistry()
    metrics = RolloutMetrics(registry)
    one = status(phase="Progressing", update_revision="a", current_step_index=0)
    metrics.record("ns", "web", status(), one, strategy="Canary", now=START)
    metrics.leading(False)
    handled = status(phase="Progressing", update_revision="a", last_command=command("1", "pause"))
    assert metrics.record("ns", "web", one, handled, strategy="Canary", now=START) == Transition()
    samples = [s for m in registry.collect() for s in m.samples if s.name.startswith("zdr_rollout_")]
    assert [s for s in samples if s.name in ("zdr_rollout_info", "zdr_rollout_phase", "zdr_rollout_step")] == []
    assert registry.get_sample_value("zdr_commands_total", {"verb": "pause", "result": "Accepted"}) == 0
    metrics.leading(True)
    metrics.record("ns", "web", one, handled, strategy="Canary", now=START)
    assert registry.get_sample_value("zdr_commands_total", {"verb": "pause", "result": "Accepted"}) == 1
    assert registry.get_sample_value("zdr_rollout_info", {"namespace": "ns", "rollout": "web", "strategy": "Canary", "revision": "a"}) == 1


def test_the_scrape_example_keeps_exactly_the_shipped_operators_metrics_port() -> None:
    """The pod-role job's keep rules, evaluated as Prometheus does (each rule's source labels
    joined by ';', the regex anchored), against the pods of manifests/base/operator.yaml."""
    root = Path(__file__).resolve().parents[2]
    config = yaml.safe_load((root / "examples" / "prometheus-scrape.yaml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    [deployment] = [
        doc
        for doc in yaml.safe_load_all((root / "manifests" / "base" / "operator.yaml").read_text())
        if doc["kind"] == "Deployment"
    ]
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ZDR_METRICS_ADDR"] == "0.0.0.0:9108"

    def target(port: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
        meta = {f"__meta_kubernetes_pod_label_{re.sub('[^a-zA-Z0-9_]', '_', k)}": v for k, v in labels.items()}
        meta |= {
            "__meta_kubernetes_namespace": deployment["metadata"]["namespace"],
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
            "__address__": f"10.88.0.7:{port['containerPort']}",
        }
        return meta

    def kept(meta: dict[str, str]) -> bool:
        for rule in jobs["zdr-operator"]["relabel_configs"]:
            if rule.get("action") != "keep":
                continue
            value = ";".join(meta.get(label, "") for label in rule["source_labels"])
            if not re.fullmatch(rule["regex"], value):
                return False
        return True

    labels = pod["metadata"]["labels"]
    assert [p["containerPort"] for p in container["ports"] if kept(target(p, labels))] == [9108]
    other = {**labels, "app.kubernetes.io/component": "webhook"}
    assert not any(kept(target(p, other)) for p in container["ports"])
    sd = jobs["zdr-operator"]["kubernetes_sd_configs"]
    assert sd == [{"role": "pod", "namespaces": {"names": [deployment["metadata"]["namespace"]]}}]
    assert jobs["zdr-operator-host"]["static_configs"][0]["targets"] == ["127.0.0.1:9108"]
