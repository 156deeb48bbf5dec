"""Reverts for every strategy: abort (by command, deadline and health gates), undo, retry, fast
rollback from a warm revision, and how each reports itself."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from invariants import violations
from simulate import START, Cluster, make_spec
from zdr.api import (
    ALL_REVISIONS,
    AbortRecord,
    Command,
    RevisionRecord,
    RollbackRecord,
    ServiceRole,
    ServiceTarget,
    ZeroDowntimeRolloutStatus,
    parse_spec,
)
from zdr.plan import Observed, ObservedRevision, ObservedService, Plan, plan
from zdr.revision import revision_hash

STRATEGIES: dict[str, dict[str, Any]] = {
    "rolling": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "scaleDownDelaySeconds": 30}},
    "bluegreen": {"type": "BlueGreen", "blueGreen": {"autoPromotion": False, "scaleDownDelaySeconds": 30}},
    "canary": {
        "type": "Canary",
        "canary": {"maxSurge": 1, "steps": [{"setWeight": 50}, {"pause": {}}], "scaleDownDelaySeconds": 30},
    },
}


def spec_of(strategy: str, image: str = "example/web:1", replicas: int = 4, **extra: Any) -> dict[str, Any]:
    return make_spec(replicas, image=image, strategy=STRATEGIES[strategy], **extra)


def halfway(strategy: str, **extra: Any) -> tuple[Cluster, dict[str, Any], str, str]:
    """A rollout of v2 stopped half way (Paused; RollingUpdate: half of the pods replaced)."""
    cluster = Cluster(ready_after=2)
    cluster.run(spec_of(strategy, **extra))
    stable = cluster.status.stable_revision
    assert stable is not None
    v2 = spec_of(strategy, "example/web:2", **extra)
    update = revision_hash(parse_spec(v2))
    for _ in range(60):
        result = cluster.step(v2)
        if result.status.phase == "Paused" or (
            strategy == "rolling"
            and cluster.revisions.get(update)
            and cluster.serving() >= 4
            and sum(1 for p in cluster.revisions[update].pods if p.ready) >= 2
        ):
            break
    return cluster, v2, stable, update


def drive(cluster: Cluster, spec: dict[str, Any], steps: int = 60, **kwargs: Any) -> list[Plan]:
    """Steps with the invariants checked on every plan."""
    plans = []
    for _ in range(steps):
        observed = cluster.observe(kwargs.get("command"))
        result = cluster.step(spec, **kwargs)
        assert violations(spec, observed, result) == [], result.status.message
        plans.append(result)
    return plans


def reasons(plans: list[Plan]) -> list[str]:
    return [e.reason for p in plans for e in p.events]


# ---------------------------------------------------------------------------------------------
# Abort
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_abort_scales_the_stable_revision_up_first_then_drops_the_new_one(strategy: str) -> None:
    cluster, v2, stable, update = halfway(strategy)
    abort = Command(id="a1", verb="abort")
    plans = drive(cluster, v2, command=abort)
    first = plans[0]
    assert first.status.phase == "Aborted"
    assert first.status.last_command is not None and first.status.last_command.result == "Accepted"
    # The stable revision goes back to full size in the very first pass (no surge ceiling).
    assert first.replicas[stable] == 4
    for observed, result in zip(cluster.history[-len(plans) :], plans, strict=True):
        assert cluster.history  # every plan kept the floor (drive checks the invariants)
        main = result.services.get(ServiceRole.MAIN, observed.target(ServiceRole.MAIN))
        assert main != ServiceTarget(update)
    status = cluster.status
    assert status.phase == "Aborted" and status.stable_revision == stable
    assert status.abort is not None and status.abort.reason == "RolloutAborted"
    assert status.abort.completed_at is not None
    assert cluster.revisions[update].spec == 0 and cluster.revisions[stable].spec == 4
    conditions = {c.type: (c.status, c.reason) for c in status.conditions}
    assert conditions["Stalled"] == ("True", "RolloutAborted")
    assert conditions["Ready"] == ("False", "RolloutAborted")
    assert conditions["Reconciling"][0] == "False"
    events = reasons(plans)
    assert events.count("RolloutAborted") == 1 and events.count("AbortCompleted") == 1
    assert "AbortRequested" in events
    warning = next(e for p in plans for e in p.events if e.reason == "RolloutAborted")
    assert warning.type == "Warning"
    if strategy == "bluegreen":
        assert cluster.services[ServiceRole.MAIN] == ServiceTarget(stable)
        assert cluster.services[ServiceRole.PREVIEW] == ServiceTarget(stable)
    else:
        assert cluster.services[ServiceRole.MAIN] == ALL_REVISIONS  # only the stable revision has pods
    if strategy == "canary":
        assert cluster.services[ServiceRole.CANARY] == ServiceTarget(stable)
    assert plans[-1].requeue_after is None


def test_abort_switches_the_service_only_once_the_stable_revision_fully_serves() -> None:
    cluster, v2, stable, update = halfway("canary")
    assert cluster.revisions[stable].spec == 2  # the canary took half of the pods
    abort = Command(id="a1", verb="abort")
    mains = []
    for _ in range(10):
        observed = cluster.observe(abort)
        result = cluster.step(v2, command=abort)
        main = result.services.get(ServiceRole.MAIN)
        if main == ServiceTarget(stable):
            mains.append(main)
            rev = observed.revisions[stable]
            assert rev.spec_replicas == 4 and rev.endpoints(ServiceRole.MAIN) == 4
        # The canary's serving pods stay until the stable revision serves in full.
        if observed.revisions[stable].endpoints(ServiceRole.MAIN) < 4:
            assert result.replicas[update] >= min(2, observed.revisions[update].spec_replicas)
    assert mains


def test_an_aborted_template_stays_aborted_until_retry_or_a_new_template() -> None:
    cluster, v2, stable, update = halfway("canary")
    drive(cluster, v2, command=Command(id="a1", verb="abort"))
    plans = drive(cluster, v2, steps=30)
    assert all(p.status.phase == "Aborted" for p in plans)
    assert cluster.revisions[update].spec == 0
    assert all(p.events == () for p in plans[1:])
    # retry: the steps start over
    retry = Command(id="r1", verb="retry")
    result = cluster.step(v2, command=retry)
    assert result.status.abort is None and result.status.phase == "Progressing"
    assert result.status.current_step_index == 0
    assert result.replicas[update] > 0
    assert cluster.run(v2, until="Paused", command=retry).status.current_step_index == 1
    # abort again, then a new template rolls out as usual
    drive(cluster, v2, command=Command(id="a2", verb="abort"))
    v3 = spec_of("canary", "example/web:3")
    result = cluster.run(v3, until="Paused")
    assert result.status.abort is None and result.update_revision != update


def test_abort_is_refused_without_a_rollout() -> None:
    cluster = Cluster()
    spec = spec_of("rolling")
    cluster.run(spec)
    result = cluster.step(spec, command=Command(id="a1", verb="abort"))
    assert result.status.last_command is not None
    assert result.status.last_command.result == "Rejected"
    assert result.status.last_command.message == "nothing to abort: no rollout in progress"
    assert result.status.phase == "Healthy"
    result = cluster.step(spec, command=Command(id="r1", verb="retry"))
    assert result.status.last_command is not None and result.status.last_command.result == "Rejected"


def test_promote_is_refused_while_aborted() -> None:
    cluster, v2, _, _ = halfway("bluegreen")
    drive(cluster, v2, steps=3, command=Command(id="a1", verb="abort"))
    result = cluster.step(v2, command=Command(id="p1", verb="promote"))
    assert result.status.last_command is not None and result.status.last_command.result == "Rejected"
    assert "retry" in result.status.last_command.message
    assert result.status.phase == "Aborted"


def test_abort_overrides_a_pause() -> None:
    cluster, v2, stable, update = halfway("rolling")
    paused = {**v2, "paused": True}
    drive(cluster, paused, steps=20, command=Command(id="a1", verb="abort"))
    assert cluster.status.phase == "Aborted"
    assert cluster.revisions[update].spec == 0 and cluster.revisions[stable].spec == 4


# ---------------------------------------------------------------------------------------------
# Automatic aborts: deadline and health gates
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_crash_looping_new_pods_abort_the_rollout(strategy: str) -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(spec_of(strategy))
    v2 = spec_of(strategy, "example/web:2")
    cluster.crashing.add(revision_hash(parse_spec(v2)))
    plans = drive(cluster, v2, steps=20)
    status = cluster.status
    assert status.abort is not None and status.abort.reason == "CrashLoopBackOff"
    assert "CrashLoopBackOff" in status.abort.message
    assert status.phase == "Aborted"
    assert reasons(plans).count("RolloutAborted") == 1


def test_too_many_restarts_abort_the_rollout() -> None:
    spec = spec_of("rolling", analysis={"abortOnCrashLoop": False, "maxRestarts": 2})
    cluster = Cluster(ready_after=1)
    cluster.run(spec)
    v2 = spec_of("rolling", "example/web:2", analysis={"abortOnCrashLoop": False, "maxRestarts": 2})
    cluster.crashing.add(revision_hash(parse_spec(v2)))
    drive(cluster, v2, steps=12)
    assert cluster.status.abort is not None and cluster.status.abort.reason == "TooManyRestarts"
    assert "restarted 3 times (maxRestarts 2)" in cluster.status.abort.message


def test_a_pod_unready_too_long_aborts_the_rollout() -> None:
    gates = {"maxUnreadySeconds": 20}
    cluster = Cluster(ready_after=1)
    cluster.run(spec_of("bluegreen", analysis=gates))
    v2 = spec_of("bluegreen", "example/web:2", analysis=gates)
    cluster.broken.add(revision_hash(parse_spec(v2)))
    result = cluster.step(v2)
    result = cluster.step(v2)
    assert result.requeue_after is not None and result.requeue_after <= 20
    plans = drive(cluster, v2, steps=25)
    assert cluster.status.abort is not None and cluster.status.abort.reason == "ReadinessTimeout"
    aborted_at = next(i for i, p in enumerate(plans) if p.status.abort)
    assert 15 <= aborted_at <= 21


def test_gates_do_not_apply_to_a_first_deployment_or_after_the_rollout() -> None:
    spec = spec_of("rolling")
    cluster = Cluster(ready_after=1)
    cluster.crashing.add(revision_hash(parse_spec(spec)))
    drive(cluster, spec, steps=10)
    assert cluster.status.abort is None  # nothing to go back to
    healthy = Cluster(ready_after=1)
    healthy.run(spec_of("rolling", "example/web:3"))
    stable = healthy.status.stable_revision
    assert stable is not None
    healthy.crashing.add(stable)  # the stable revision itself crashes later: no abort, no rollback
    drive(healthy, spec_of("rolling", "example/web:3"), steps=5)
    assert healthy.status.abort is None


def test_a_deadline_abort_happens_once_and_keeps_capacity() -> None:
    spec = spec_of("canary", progressDeadlineSeconds=20)
    cluster = Cluster(ready_after=1)
    cluster.run(spec)
    v2 = spec_of("canary", "example/web:2", progressDeadlineSeconds=20)
    cluster.broken.add(revision_hash(parse_spec(v2)))
    plans = drive(cluster, v2, steps=40)
    assert min(cluster.serving() for _ in [0]) == 4
    assert reasons(plans).count("RolloutAborted") == 1
    assert cluster.status.abort is not None and cluster.status.abort.reason == "ProgressDeadlineExceeded"
    first = next(p for p in plans if p.status.abort)
    assert first.status.progressed_at is not None


def test_a_paused_rollout_never_hits_the_deadline() -> None:
    spec = spec_of("canary", progressDeadlineSeconds=10)
    cluster = Cluster(ready_after=1)
    cluster.run(spec)
    v2 = spec_of("canary", "example/web:2", progressDeadlineSeconds=10)
    cluster.run(v2, until="Paused")
    drive(cluster, v2, steps=40)
    assert cluster.status.abort is None and cluster.status.phase == "Paused"


# ---------------------------------------------------------------------------------------------
# Undo
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_undo_half_way_goes_back_to_the_stable_revision_and_says_spec_differs(strategy: str) -> None:
    cluster, v2, stable, update = halfway(strategy)
    undo = Command(id="u1", verb="undo")
    plans = drive(cluster, v2, command=undo)
    assert plans[0].status.phase == "Progressing"
    assert plans[0].status.rollback is not None and plans[0].status.rollback.revision == stable
    status = cluster.status
    assert (
        status.phase == "Degraded" and status.stable_revision == stable and status.update_revision == update
    )
    assert status.rollback is not None and status.rollback.completed_at is not None
    assert status.rollback.from_revision == update
    stalled = status.condition("Stalled")
    assert stalled is not None and (stalled.status, stalled.reason) == ("True", "RolledBack")
    assert status.message is not None and "spec.template still asks for revision 2" in status.message
    assert cluster.revisions[update].spec == 0 and cluster.revisions[stable].spec == 4
    assert reasons(plans).count("RolledBack") == 1 and "UndoRequested" in reasons(plans)


def test_a_new_template_after_undo_rolls_out_from_the_revision_rolled_back_to() -> None:
    cluster, v2, stable, update = halfway("rolling")
    drive(cluster, v2, command=Command(id="u1", verb="undo"))
    v3 = spec_of("rolling", "example/web:3")
    result = cluster.step(v3)
    assert result.status.rollback is None
    assert "RolloutStarted" in [e.reason for e in result.events]
    cluster.run(v3)
    assert cluster.status.stable_revision == cluster.status.update_revision not in (stable, update)


def test_putting_the_old_template_into_spec_makes_the_undo_stick() -> None:
    cluster, v2, stable, update = halfway("bluegreen")
    drive(cluster, v2, command=Command(id="u1", verb="undo"))
    v1 = spec_of("bluegreen")
    result = cluster.run(v1)
    assert result.status.rollback is None and result.status.phase == "Healthy"
    assert result.status.stable_revision == result.status.update_revision == stable


def test_retry_after_undo_rolls_the_template_out_again() -> None:
    cluster, v2, stable, update = halfway("canary")
    drive(cluster, v2, command=Command(id="u1", verb="undo"))
    result = cluster.run(v2, until="Paused", command=Command(id="r1", verb="retry"))
    assert result.status.rollback is None and result.status.current_step_index == 1
    assert cluster.revisions[update].spec == 2


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_undo_within_the_warm_window_needs_no_new_pod(strategy: str) -> None:
    cluster = Cluster(ready_after=3)
    cluster.run(spec_of(strategy))
    v1 = cluster.status.stable_revision
    assert v1 is not None
    v2 = spec_of(strategy, "example/web:2")
    promote = Command(id="p1", verb="promote", full=True)
    cluster.run(v2, command=promote)
    cluster.wait(v2, 6, command=promote)  # the previous revision is warm (back at full size, ready)
    assert cluster.revisions[v1].spec == 4
    assert all(p.ready for p in cluster.revisions[v1].pods)
    pods_before = [id(p) for p in cluster.revisions[v1].pods]
    undo = Command(id="u1", verb="undo")
    switched_after = None
    for i in range(10):
        cluster.step(v2, command=undo)
        if cluster.services[ServiceRole.MAIN] == ServiceTarget(v1) and cluster.status.stable_revision == v1:
            switched_after = i + 1
            break
    assert switched_after == 1, switched_after  # at once: the warm pods already serve
    assert [id(p) for p in cluster.revisions[v1].pods] == pods_before
    # The revision left drains at once (its connections move to v1) and keeps no standby: the
    # undo completes only once it has no pod left.
    v2_hash = revision_hash(parse_spec(v2))
    plans = drive(cluster, v2, 40, command=undo)
    assert cluster.revisions[v2_hash].spec == 0 and cluster.revisions[v2_hash].pods == []
    sizes = [p.replicas.get(v2_hash) for p in plans]
    assert all(size in (None, 0) for size in sizes), sizes
    assert cluster.status.rollback is not None and cluster.status.rollback.completed_at is not None
    assert cluster.status.standby_replicas == 0 and cluster.status.replicas == 4


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_the_replaced_revision_drains_before_fresh_pods_stand_by(strategy: str) -> None:
    cluster = Cluster(ready_after=2)
    cluster.run(spec_of(strategy))
    v1 = cluster.status.stable_revision
    assert v1 is not None
    for pod in cluster.revisions[v1].pods:
        pod.took_traffic = True  # type: ignore[attr-defined]
    v2 = spec_of(strategy, "example/web:2")
    promote = Command(id="p1", verb="promote", full=True)
    plans = drive(cluster, v2, 30, command=promote)
    # Between the switch and the standby, v1 was seen with no pod (every pod that took traffic
    # had gone); the standby pods are all new, and status counts them apart from the serving set.
    assert cluster.revisions[v1].spec == 4 and len(cluster.revisions[v1].pods) == 4
    assert not any(getattr(pod, "took_traffic", False) for pod in cluster.revisions[v1].pods)
    record = cluster.status.revision_record(v1)
    assert record is not None and record.retired_at is not None and record.drained_at is not None
    assert record.drained_at >= record.retired_at
    assert any(h.revisions[v1].replicas == 0 for h in cluster.history[-30:])
    assert cluster.status.replicas == 4 and cluster.status.ready_replicas == 4
    assert cluster.status.standby_replicas == 4
    assert cluster.status.selector == f"app=web,zdr.io/revision notin ({v1})"
    assert cluster.services[ServiceRole.MAIN] == ServiceTarget(revision_hash(parse_spec(v2)))
    assert "RolloutCompleted" in reasons(plans)
    # After the window the standby goes, and the selector covers every pod again.
    drive(cluster, v2, 30, command=promote)
    assert cluster.revisions[v1].spec == 0
    assert cluster.status.standby_replicas == 0 and cluster.status.selector == "app=web"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_undo_after_the_window_scales_up_first_and_then_moves_traffic(strategy: str) -> None:
    cluster = Cluster(ready_after=3)
    cluster.run(spec_of(strategy))
    v1 = cluster.status.stable_revision
    assert v1 is not None
    v2 = spec_of(strategy, "example/web:2")
    promote = Command(id="p1", verb="promote", full=True)
    cluster.run(v2, command=promote)
    cluster.wait(v2, 40, command=promote)
    assert cluster.revisions[v1].spec == 0
    undo = Command(id="u1", verb="undo")
    for _ in range(30):
        observed = cluster.observe(undo)
        result = cluster.step(v2, command=undo)
        assert violations(v2, observed, result) == []
        main = result.services.get(ServiceRole.MAIN)
        if main is not None and main.revision == v1:
            rev = observed.revisions[v1]
            assert rev.spec_replicas == 4 and rev.available_replicas == 4
        if strategy != "bluegreen" and observed.revisions[v1].available_replicas < 4:
            # the old revision's new pods come up out of traffic
            assert (main or observed.target(ServiceRole.MAIN)) != ALL_REVISIONS
    assert cluster.status.stable_revision == v1
    assert cluster.services[ServiceRole.MAIN] in (ServiceTarget(v1), ALL_REVISIONS)


def test_undo_to_a_revision_number() -> None:
    cluster = Cluster(ready_after=1)
    for image in ["a:1", "a:2", "a:3"]:
        cluster.run(spec_of("bluegreen", image), command=Command(id=image, verb="promote"))
    first = cluster.status.revisions[0]
    v3 = spec_of("bluegreen", "a:3")
    result = cluster.step(v3, command=Command(id="u1", verb="undo", to_revision=1))
    assert result.status.rollback is not None and result.status.rollback.revision == first.name
    cluster.run(v3, until="Degraded", command=Command(id="u1", verb="undo", to_revision=1))
    assert cluster.status.stable_revision == first.name


@pytest.mark.parametrize(
    ("to_revision", "message"),
    [
        (9, "no revision 9 (known: 1, 2)"),
        (2, "revision 2 ("),
    ],
)
def test_undo_refusals(to_revision: int, message: str) -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(spec_of("rolling"))
    v2 = spec_of("rolling", "example/web:2")
    cluster.run(v2)
    result = cluster.step(v2, command=Command(id="u1", verb="undo", to_revision=to_revision))
    assert result.status.last_command is not None and result.status.last_command.result == "Rejected"
    assert result.status.last_command.message.startswith(message), result.status.last_command.message


def test_undo_without_an_earlier_revision_is_refused() -> None:
    cluster = Cluster(ready_after=1)
    spec = spec_of("rolling")
    cluster.run(spec)
    result = cluster.step(spec, command=Command(id="u1", verb="undo"))
    assert result.status.last_command is not None
    assert result.status.last_command.message == "nothing to undo: no earlier revision that served is kept"


def test_undo_to_a_deleted_revision_is_refused() -> None:
    spec = spec_of("rolling", revisionHistoryLimit=0, image="a:1")
    cluster = Cluster(ready_after=1)
    cluster.run(spec)
    for image in ["a:2", "a:3"]:
        cluster.run(spec_of("rolling", image, revisionHistoryLimit=0))
        cluster.wait(spec_of("rolling", image, revisionHistoryLimit=0), 40)
    result = cluster.step(
        spec_of("rolling", "a:3", revisionHistoryLimit=0),
        command=Command(id="u1", verb="undo", to_revision=1),
    )
    assert result.status.last_command is not None
    assert result.status.last_command.message.startswith("no revision 1")


def test_a_second_undo_goes_back_to_the_revision_undone() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(spec_of("bluegreen"))
    v1 = cluster.status.stable_revision
    v2 = spec_of("bluegreen", "example/web:2")
    cluster.run(v2, command=Command(id="p", verb="promote"))
    v2_hash = cluster.status.stable_revision
    cluster.run(v2, until="Degraded", command=Command(id="u1", verb="undo"))
    assert cluster.status.stable_revision == v1
    cluster.run(v2, command=Command(id="u2", verb="undo"))
    assert cluster.status.stable_revision == v2_hash and cluster.status.rollback is None


# ---------------------------------------------------------------------------------------------
# Re-applying a template that was stable before: a fast rollback
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_reapplying_the_previous_template_skips_the_steps(strategy: str) -> None:
    cluster = Cluster(ready_after=1)
    v1 = spec_of(strategy)
    cluster.run(v1)
    first = cluster.status.stable_revision
    v2 = spec_of(strategy, "example/web:2")
    cluster.run(v2, command=Command(id="p", verb="promote", full=True))
    # The previous revision's pods that took traffic drain first; fresh pods then stand by.
    for _ in range(10):
        if strategy == "bluegreen" or "kept warm" in (cluster.status.message or ""):
            break
        cluster.step(v2)
    plans = []
    for _ in range(10):
        plans.append(cluster.step(v1))
        if cluster.status.stable_revision == first:
            break
    assert cluster.status.stable_revision == first
    assert len(plans) <= 2
    assert "TrafficSwitched" in reasons(plans)
    assert not {"StepStarted", "RevisionCreated"} & set(reasons(plans))
    assert cluster.run(v1).status.phase == "Healthy"


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_template_reapplied_drains_the_revision_it_leaves_before_it_stands_by(strategy: str) -> None:
    cluster = Cluster(ready_after=2)
    v1 = spec_of(strategy)
    cluster.run(v1)
    first = cluster.status.stable_revision
    v2 = spec_of(strategy, "example/web:2")
    cluster.run(v2, command=Command(id="p", verb="promote", full=True))
    cluster.wait(v2, 8)  # the standby of v1 is up
    second = cluster.status.stable_revision
    assert first is not None and second is not None and cluster.revisions[first].spec == 4
    for pod in cluster.revisions[second].pods:
        pod.took_traffic = True  # type: ignore[attr-defined]
    drive(cluster, v1, 12)
    # v2's pods, which took traffic until the switch, are gone; v2 stands by with fresh pods.
    assert cluster.status.stable_revision == first
    assert any(h.revisions[second].replicas == 0 for h in cluster.history[-12:])
    assert not any(getattr(pod, "took_traffic", False) for pod in cluster.revisions[second].pods)
    assert cluster.status.standby_replicas == len(cluster.revisions[second].pods) == 4


# ---------------------------------------------------------------------------------------------
# Reporting, and records that do not apply
# ---------------------------------------------------------------------------------------------
def test_records_of_another_template_are_dropped() -> None:
    spec = spec_of("rolling", "example/web:3")
    update = revision_hash(parse_spec(spec))
    observed = Observed(
        generation=2,
        revisions={
            "0000000old": ObservedRevision(
                "0000000old", 4, 4, 4, 4, created_at=START, ready_endpoints={ServiceRole.MAIN: 4}
            )
        },
        services={ServiceRole.MAIN: ObservedService("web", ALL_REVISIONS)},
    )
    status = ZeroDowntimeRolloutStatus(
        stable_revision="0000000old",
        update_revision="0000000new",
        revisions=[RevisionRecord(name="0000000old", revision=1, created_at=START)],
        abort=AbortRecord(revision="0000000new", reason="RolloutAborted", aborted_at=START),
        rollback=RollbackRecord(revision="0000000old", from_revision="0000000new", requested_at=START),
    )
    result = plan(spec, status, observed, START + timedelta(seconds=5))
    assert result.status.abort is None and result.status.rollback is None
    assert result.status.phase == "Progressing" and result.replicas[update] == 1


def test_undo_never_falls_back_to_the_revision_it_leaves() -> None:
    """An undo to a revision scaled to zero switches MAIN at once; the canary Service, which still
    has a ready endpoint on the undone revision, stays where it is instead of being pinned to it."""
    spec = make_spec(0, strategy={"type": "Canary", "canary": {"maxSurge": 1, "steps": []}})
    update = revision_hash(parse_spec(spec))
    observed = Observed(
        generation=1,
        revisions={
            "ccccccccc3": ObservedRevision("ccccccccc3", 0, 0, 0, 0),
            update: ObservedRevision(update, 1, 1, 1, 1, ready_endpoints={ServiceRole.CANARY: 1}),
        },
        services={ServiceRole.CANARY: ObservedService(name="canary", target=ALL_REVISIONS)},
    )
    status = ZeroDowntimeRolloutStatus(
        observed_generation=1,
        rollback=RollbackRecord(revision="ccccccccc3", from_revision=update, requested_at=START),
    )
    result = plan(spec, status, observed, START)
    assert violations(spec, observed, result) == []
    assert result.services.get(ServiceRole.CANARY) != ServiceTarget(update)
