"""Analysis as the planner sees it: which checks are active, when they are due, and what their
recorded results decide (abort, a step passed). Measurements are stood in for by recording
outcomes the way ``zdr.analysis`` does, in between planner passes."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from invariants import violations
from simulate import START, Cluster, make_spec
from zdr.analysis import Outcome, record
from zdr.api import AnalysisResult, Command, parse_spec
from zdr.plan import checks

HTTP = {"http": {"path": "/healthz"}}


def check(name: str = "errors", **extra: Any) -> dict[str, Any]:
    return {"name": name, "interval": "5s", **HTTP, **extra}


def measure(cluster: Cluster, spec: dict[str, Any], kind: str, value: str | None = None) -> int:
    """Records ``kind`` in every due result, as the runner would before the next pass."""
    parsed = parse_spec(spec)
    now = cluster.now.replace(microsecond=0)
    results = []
    taken = 0
    for result in cluster.status.analysis:
        definition = checks.definition(parsed, result.step, result.name)
        if definition is not None and checks.is_due(result, definition, now):
            result = record(result, Outcome(kind, value, kind), now)  # type: ignore[arg-type]
            taken += 1
        results.append(result)
    cluster.status = cluster.status.model_copy(update={"analysis": results})
    return taken


def run(cluster: Cluster, spec: dict[str, Any], kind: str, ticks: int, **kwargs: Any) -> int:
    taken = 0
    for _ in range(ticks):
        taken += measure(cluster, spec, kind)
        observed = cluster.observe(kwargs.get("command"))
        result = cluster.step(spec, **kwargs)
        assert violations(spec, observed, result) == []
    return taken


def test_background_checks_run_only_while_a_rollout_does() -> None:
    spec = make_spec(3, analysis={"checks": [check()]})
    cluster = Cluster(ready_after=2)
    cluster.run(spec)
    assert cluster.status.analysis == []  # a first deployment has nothing to compare with
    v2 = make_spec(3, image="example/web:2", analysis={"checks": [check()]})
    result = cluster.step(v2)
    assert [(r.name, r.step, r.revision) for r in result.status.analysis] == [
        ("errors", None, result.update_revision)
    ]
    assert result.requeue_after == 0  # the first measurement is due at once
    run(cluster, v2, "success", 40)
    assert cluster.status.phase == "Healthy" and cluster.status.analysis == []


def test_a_background_check_failing_beyond_its_limit_aborts() -> None:
    checks_ = [check(failureLimit=1)]
    cluster = Cluster(ready_after=2)
    cluster.run(make_spec(3, analysis={"checks": checks_}, strategy={"type": "BlueGreen"}))
    v2 = make_spec(3, image="example/web:2", analysis={"checks": checks_}, strategy={"type": "BlueGreen"})
    cluster.step(v2)
    measure(cluster, v2, "failure", "500")
    result = cluster.step(v2)
    assert result.status.abort is None  # one failure is tolerated
    assert result.status.analysis[0].failures == 1
    assert result.requeue_after is not None and 0 < result.requeue_after <= 5
    cluster.now += timedelta(seconds=5)
    measure(cluster, v2, "failure", "500")
    result = cluster.step(v2)
    assert result.status.abort is not None and result.status.abort.reason == "AnalysisFailed"
    assert "background check errors failed 2 times (failureLimit 1): failure" in result.status.abort.message
    assert result.status.analysis == []


def test_no_data_is_neither_success_nor_failure() -> None:
    checks_ = [check()]
    cluster = Cluster(ready_after=2)
    cluster.run(make_spec(3, analysis={"checks": checks_}))
    v2 = make_spec(3, image="example/web:2", analysis={"checks": checks_}, progressDeadlineSeconds=600)
    cluster.step(v2)
    run(cluster, v2, "nodata", 12)
    result = cluster.status.analysis[0]
    assert (result.successes, result.failures) == (0, 0) and result.measurements >= 2
    assert cluster.status.abort is None


def test_an_analysis_step_passes_after_count_successes() -> None:
    step_check = check("latency", count=3, interval="2s")
    steps = [{"setWeight": 50}, {"analysis": {"checks": [step_check]}}, {"setWeight": 100}]
    spec = make_spec(4, strategy={"type": "Canary", "canary": {"maxSurge": 1, "steps": steps}})
    cluster = Cluster(ready_after=1)
    cluster.run(spec)
    v2 = make_spec(
        4, image="example/web:2", strategy={"type": "Canary", "canary": {"maxSurge": 1, "steps": steps}}
    )
    for _ in range(30):
        result = cluster.step(v2)
        if result.status.current_step_index == 1:
            break
    assert [(r.name, r.step) for r in result.status.analysis] == [("latency", 1)]
    assert result.status.message is not None and "analysis at weight 50%" in result.status.message
    taken = run(cluster, v2, "success", 5)
    assert cluster.status.current_step_index == 2, cluster.status.message
    assert taken == 3
    completed = [e.message for p in cluster.plans for e in p.events if e.reason == "StepCompleted"]
    assert "step 2/3: analysis passed (latency 3/3 passed, 0 failed)" in completed
    run(cluster, v2, "success", 30)
    assert cluster.status.phase == "Healthy"


def test_a_failing_analysis_step_aborts_and_a_promote_skips_it() -> None:
    steps = [{"setWeight": 50}, {"analysis": {"checks": [check(count=5)]}}]
    strategy = {"type": "Canary", "canary": {"maxSurge": 1, "steps": steps}}
    cluster = Cluster(ready_after=1)
    cluster.run(make_spec(4, strategy=strategy))
    v2 = make_spec(4, image="example/web:2", strategy=strategy)
    cluster.run(v2, until="Progressing")
    for _ in range(20):
        if cluster.step(v2).status.current_step_index == 1:
            break
    skipped = copy.deepcopy(cluster)
    result = skipped.step(v2, command=Command(id="p", verb="promote"))
    assert result.status.current_step_index == 2 and result.status.analysis == []
    run(cluster, v2, "failure", 3)
    assert cluster.status.abort is not None and cluster.status.abort.reason == "AnalysisFailed"
    assert "step 2 check errors failed 1 times (failureLimit 0)" in cluster.status.abort.message


def test_passing_step_measurements_count_as_progress() -> None:
    steps = [{"setWeight": 50}, {"analysis": {"checks": [check(count=20, interval="5s")]}}]
    strategy = {"type": "Canary", "canary": {"maxSurge": 1, "steps": steps}}
    cluster = Cluster(ready_after=1)
    cluster.run(make_spec(4, strategy=strategy, progressDeadlineSeconds=30))
    v2 = make_spec(4, image="example/web:2", strategy=strategy, progressDeadlineSeconds=30)
    run(cluster, v2, "success", 80)  # longer than the deadline, but each success is progress
    assert cluster.status.abort is None
    run(cluster, v2, "nodata", 40)  # nothing measured for longer than the deadline
    assert cluster.status.abort is not None and cluster.status.abort.reason == "ProgressDeadlineExceeded"


def test_schedule_from_the_recorded_times() -> None:
    definition = parse_spec(make_spec(3, analysis={"checks": [check(interval="7s", initialDelay="3s")]}))
    spec_check = (definition.analysis.checks or [])[0]
    result = AnalysisResult(name="errors", revision="abc", started_at=START)
    assert checks.next_due(result, spec_check) == START + timedelta(seconds=3)
    assert not checks.is_due(result, spec_check, START + timedelta(seconds=2))
    later = record(result, Outcome("success", "1", "ok"), START + timedelta(seconds=3))
    assert checks.next_due(later, spec_check) == START + timedelta(seconds=10)
    assert later.successes == 1 and later.measurements == 1 and later.last_success_at is not None


def test_placeholders_in_queries() -> None:
    text = 'rate(x{revision="{{revision}}",ns="{{namespace}}",r="{{rollout}}"}[1m])'
    assert (
        checks.render_query(text, revision="abc", rollout="web", namespace="shop")
        == 'rate(x{revision="abc",ns="shop",r="web"}[1m])'
    )
