"""The planner as a whole: refusals, status and conditions, deadlines, commands, history, restarts."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from simulate import START, Cluster, make_spec, template
from zdr.api import ALL_REVISIONS, Command, ServiceRole, ZeroDowntimeRolloutStatus, parse_spec
from zdr.plan import Observed, ObservedRevision, ObservedService, plan
from zdr.revision import revision_hash


def deployed(spec: dict[str, Any] | None = None, **kwargs: Any) -> Cluster:
    cluster = Cluster(**kwargs)
    cluster.run(spec or make_spec(3))
    return cluster


def test_invalid_spec_touches_nothing_and_says_why() -> None:
    cluster = deployed()
    before = cluster.observe()
    bad = make_spec(3)
    bad["strategy"] = {"type": "Canary", "canary": {"steps": [{"setWeight": 120}]}}
    result = plan(bad, cluster.status, before, START)
    assert result.touches_nothing and result.spec is None
    stalled = result.status.condition("Stalled")
    assert stalled is not None and stalled.status == "True" and stalled.reason == "InvalidSpec"
    assert "spec.strategy.canary.steps[0].setWeight: must be between 0 and 100 (got 120)" in stalled.message
    ready = result.status.condition("Ready")
    assert ready is not None and ready.status == "False"
    assert result.status.phase == "Degraded"
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "InvalidSpec")]
    assert "setWeight" in result.events[0].message
    # Asked again, nothing new to say.
    again = plan(bad, result.status, before, START + timedelta(seconds=5))
    assert again.events == () and again.touches_nothing
    assert again.status == result.status


def test_missing_readiness_probe_is_refused_unless_opted_out() -> None:
    spec = make_spec(3)
    spec["template"] = template(probe=False)
    result = plan(spec, None, Observed(generation=1), START)
    assert result.touches_nothing
    assert [e.reason for e in result.events] == ["MissingReadinessProbe"]
    assert "spec.allowMissingReadinessProbe: true" in result.events[0].message
    spec["allowMissingReadinessProbe"] = True
    assert plan(spec, None, Observed(generation=1), START).replicas


def test_a_settled_rollout_is_a_fixed_point() -> None:
    cluster = deployed()
    observed = cluster.observe()
    first = plan(make_spec(3), cluster.status, observed, cluster.now)
    later = plan(make_spec(3), first.status, observed, cluster.now + timedelta(hours=5))
    assert later.status == first.status
    assert later.events == ()
    assert later.requeue_after is None
    assert later.replicas == {n: r.spec_replicas for n, r in observed.revisions.items()}
    assert later.services == {ServiceRole.MAIN: ALL_REVISIONS}


def test_kstatus_conditions_through_a_rollout() -> None:
    cluster = deployed()
    status = cluster.status
    assert status.observed_generation == 1
    assert {c.type: c.status for c in status.conditions} == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
        "Available": "True",
        "Progressing": "True",
        "Paused": "False",
    }
    cluster.generation = 2
    result = cluster.step(make_spec(3, image="example/web:2"))
    conditions = {c.type: (c.status, c.reason) for c in result.status.conditions}
    assert conditions["Ready"] == ("False", "RolloutInProgress")
    assert conditions["Reconciling"] == ("True", "RolloutInProgress")
    assert conditions["Available"][0] == "True"
    assert all(c.observed_generation == 2 for c in result.status.conditions)
    assert result.status.observed_generation == 2
    assert result.status.selector == "app=web"


def test_progress_deadline_aborts_a_stuck_rollout() -> None:
    spec = make_spec(3, image="example/web:2", progressDeadlineSeconds=60)
    cluster = deployed(make_spec(3, progressDeadlineSeconds=60))
    old = cluster.status.stable_revision
    new = revision_hash(parse_spec(spec))
    cluster.broken.add(new)
    result = cluster.step(spec)
    assert result.requeue_after is not None and result.requeue_after <= 60
    aborted = []
    for _ in range(80):
        result = cluster.step(spec, seconds=1)
        aborted += [e for e in result.events if e.reason == "RolloutAborted"]
        assert cluster.serving() == 3  # the old revision serves throughout
    assert result.status.phase == "Aborted"
    stalled = result.status.condition("Stalled")
    assert stalled is not None and stalled.status == "True" and stalled.reason == "ProgressDeadlineExceeded"
    ready = result.status.condition("Ready")
    assert ready is not None and ready.status == "False"
    assert len(aborted) == 1 and aborted[0].type == "Warning"
    assert "no progress for 60s" in aborted[0].message
    assert result.status.abort is not None and result.status.abort.completed_at is not None
    assert cluster.revisions[new].spec == 0 and cluster.revisions[old].spec == 3
    assert result.requeue_after is None


def test_progress_deadline_of_a_first_deployment_reports_stalled_once() -> None:
    spec = make_spec(3, progressDeadlineSeconds=30)
    cluster = Cluster()
    cluster.broken.add(revision_hash(parse_spec(spec)))
    events = []
    for _ in range(50):
        result = cluster.step(spec)
        events += [e for e in result.events if e.reason == "ProgressDeadlineExceeded"]
    assert result.status.phase == "Degraded"
    stalled = result.status.condition("Stalled")
    assert stalled is not None and stalled.reason == "ProgressDeadlineExceeded"
    assert len(events) == 1 and events[0].type == "Warning"
    assert result.status.abort is None  # nothing to go back to


def test_pause_and_resume_commands() -> None:
    cluster = deployed(ready_after=2)
    spec = make_spec(3, image="example/web:2")
    cluster.step(spec)
    pause = Command(id="1", verb="pause")
    result = cluster.step(spec, command=pause)
    assert result.status.phase == "Paused" and result.status.paused_by_command is True
    assert result.status.last_command is not None and result.status.last_command.verb == "pause"
    sizes = {n: r.spec for n, r in cluster.revisions.items()}
    for _ in range(5):
        cluster.step(spec, command=pause)
    assert {n: r.spec for n, r in cluster.revisions.items()} == sizes
    resume = Command(id="2", verb="resume")
    result = cluster.step(spec, command=resume)
    assert result.status.paused_by_command is None
    assert "RolloutResumed" in [e.reason for e in result.events]
    cluster.run(spec, command=resume)


def test_unsupported_or_pointless_commands_are_rejected_once() -> None:
    cluster = deployed()
    spec = make_spec(3)
    result = cluster.step(spec, command=Command(id="u1", verb="undo"))
    assert result.status.last_command is not None and result.status.last_command.result == "Rejected"
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "CommandRejected")]
    assert cluster.step(spec, command=Command(id="u1", verb="undo")).events == ()
    result = cluster.step(spec, command=Command(id="p1", verb="promote"))
    assert result.status.last_command is not None
    assert result.status.last_command.message == "RollingUpdate has no step or switch to promote"
    canary = deployed(make_spec(3, strategy={"type": "Canary"}))
    result = canary.step(make_spec(3, strategy={"type": "Canary"}), command=Command(id="p2", verb="promote"))
    assert result.status.last_command is not None
    assert result.status.last_command.message == "nothing to promote: no rollout in progress"


def test_unreadable_command_annotation_is_reported_once() -> None:
    cluster = deployed()
    observed = cluster.observe()
    broken = Observed(
        generation=observed.generation,
        revisions=observed.revisions,
        services=observed.services,
        command_error="annotation zdr.io/command: not a valid command",
    )
    first = plan(make_spec(3), cluster.status, broken, cluster.now)
    assert [e.reason for e in first.events] == ["CommandRejected"]
    second = plan(make_spec(3), first.status, broken, cluster.now)
    assert second.events == ()


def test_revision_history_limit_deletes_the_oldest_idle_revisions() -> None:
    cluster = Cluster(ready_after=1)
    names = []
    for image in ["a:1", "a:2", "a:3", "a:4", "a:5"]:
        spec = make_spec(2, image=image, revisionHistoryLimit=2)
        cluster.run(spec)
        cluster.wait(spec, 40)  # past the warm window
        names.append(cluster.status.stable_revision)
    assert set(cluster.revisions) == set(names[-3:])
    assert [r.name for r in cluster.status.revisions] == names[-3:]
    deleted = [e for p in cluster.plans for e in p.events if e.reason == "RevisionDeleted"]
    assert len(deleted) == 2


def test_lost_status_mid_rollout_continues_from_the_cluster() -> None:
    cluster = deployed(ready_after=2)
    old = cluster.status.stable_revision
    spec = make_spec(3, image="example/web:2")
    for _ in range(4):
        cluster.step(spec)
    cluster.status = ZeroDowntimeRolloutStatus()
    result = cluster.step(spec)
    assert result.status.stable_revision == old
    assert {r.name for r in result.status.revisions} == set(cluster.revisions)
    cluster.run(spec)
    assert cluster.status.stable_revision == cluster.status.update_revision != old


def test_strategy_change_removes_unused_services() -> None:
    cluster = deployed(make_spec(3, strategy={"type": "Canary"}))
    assert set(cluster.services) == {ServiceRole.MAIN, ServiceRole.CANARY, ServiceRole.STABLE}
    result = cluster.step(make_spec(3))
    assert set(result.delete_services) == {ServiceRole.CANARY, ServiceRole.STABLE}
    assert "ServiceDeleted" in [e.reason for e in result.events]


def test_naive_times_are_utc_and_truncated() -> None:
    naive = START.replace(tzinfo=None, microsecond=123456)
    result = plan(make_spec(3), None, Observed(generation=1), naive)
    assert result.status.progressed_at == START


def test_unknown_service_selector_is_left_alone_while_it_serves() -> None:
    spec = make_spec(3)
    observed = Observed(
        generation=1,
        revisions={"abc": ObservedRevision("abc", 3, 3, 3, 3, ready_endpoints={ServiceRole.MAIN: 3})},
        services={ServiceRole.MAIN: ObservedService("web", None)},
    )
    result = plan(copy.deepcopy(spec), None, observed, START)
    # Rolling selects every pod of the rollout: always safe, so it is set.
    assert result.services == {ServiceRole.MAIN: ALL_REVISIONS}
