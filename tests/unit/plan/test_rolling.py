"""RollingUpdate: tables of single decisions, and whole rollouts on the simulated cluster."""

from __future__ import annotations

from typing import Any

import pytest
from invariants import violations
from simulate import START, Cluster, make_spec
from zdr.api import ALL_REVISIONS, ServiceRole, ServiceTarget, ZeroDowntimeRolloutStatus, parse_spec
from zdr.plan import Observed, ObservedRevision, ObservedService, plan
from zdr.revision import revision_hash

OLD = "0000000old"


def rolling(
    replicas: int = 4, surge: int | str = "25%", unavailable: int | str = 0, delay: int = 30, **extra: Any
) -> dict[str, Any]:
    params = {"maxSurge": surge, "maxUnavailable": unavailable, "scaleDownDelaySeconds": delay}
    strategy = {"type": "RollingUpdate", "rollingUpdate": params}
    return make_spec(replicas, image="example/web:2", strategy=strategy, **extra)


def rev(
    name: str, spec: int, ready: int | None = None, endpoints: int | None = None, pods: int | None = None
):
    ready = spec if ready is None else ready
    return ObservedRevision(
        name=name,
        spec_replicas=spec,
        replicas=spec if pods is None else pods,
        ready_replicas=ready,
        available_replicas=ready,
        ready_endpoints={ServiceRole.MAIN: ready if endpoints is None else endpoints},
        created_at=START,
    )


def decide(spec: dict[str, Any], *revisions: ObservedRevision, stable: str | None = OLD):
    observed = Observed(
        generation=1,
        revisions={r.name: r for r in revisions},
        services={ServiceRole.MAIN: ObservedService("web", ALL_REVISIONS)},
    )
    status = ZeroDowntimeRolloutStatus(stable_revision=stable)
    result = plan(spec, status, observed, START)
    assert violations(spec, observed, result) == []
    return result


NEW = revision_hash(parse_spec(rolling()))


@pytest.mark.parametrize(
    ("spec", "old", "new", "expected"),
    [
        # start: one surge pod, nothing removed yet
        (rolling(), rev(OLD, 4), None, {OLD: 4, NEW: 1}),
        # the new pod is ready and an endpoint: one old pod may go; no room for another new pod yet
        (rolling(), rev(OLD, 4), rev(NEW, 1), {OLD: 3, NEW: 1}),
        # ready but not yet an endpoint: nothing is removed
        (rolling(), rev(OLD, 4), rev(NEW, 1, ready=1, endpoints=0), {OLD: 4, NEW: 1}),
        # not ready: nothing is removed
        (rolling(), rev(OLD, 4), rev(NEW, 1, ready=0), {OLD: 4, NEW: 1}),
        # the old pod is gone: room for the next new pod
        (rolling(), rev(OLD, 3), rev(NEW, 1), {OLD: 3, NEW: 2}),
        # an old pod still terminating above spec does not count as room
        (rolling(), rev(OLD, 3, pods=4), rev(NEW, 1), {OLD: 3, NEW: 1}),
        # maxUnavailable 1: one old pod may go before any new pod serves
        (rolling(unavailable=1), rev(OLD, 4), None, {OLD: 3, NEW: 1}),
        # a larger surge creates more at once, still bounded
        (rolling(surge=2), rev(OLD, 4), None, {OLD: 4, NEW: 2}),
        (rolling(surge="100%"), rev(OLD, 4), None, {OLD: 4, NEW: 4}),
        # broken old pods may always be removed; serving ones only when replaced
        (rolling(), rev(OLD, 4, ready=2), rev(NEW, 1), {OLD: 2, NEW: 1}),
        # almost done: every new pod serves; the last old pod drains (fresh pods stand by later)
        (rolling(), rev(OLD, 1), rev(NEW, 4), {OLD: 0, NEW: 4}),
        (rolling(delay=0), rev(OLD, 1), rev(NEW, 4), {OLD: 0, NEW: 4}),
        # both percentages round to zero on one replica: one surge pod at a time
        (rolling(1, surge="0%", unavailable="10%"), rev(OLD, 1), None, {OLD: 1, NEW: 1}),
    ],
)
def test_rolling_steps(
    spec: dict[str, Any], old: ObservedRevision, new: ObservedRevision | None, expected: dict[str, int]
) -> None:
    revisions = [old] if new is None else [old, new]
    assert decide(spec, *revisions).replicas == expected


def test_scaling_without_a_rollout_is_immediate() -> None:
    spec = rolling(6)
    digest = revision_hash(parse_spec(spec))
    assert decide(spec, rev(digest, 4), stable=digest).replicas == {digest: 6}
    spec = rolling(2)
    assert decide(spec, rev(digest, 4), stable=digest).replicas == {digest: 2}


def test_first_deploy_creates_the_revision_and_the_service() -> None:
    spec = rolling()
    result = plan(spec, None, Observed(generation=1), START)
    assert result.replicas == {NEW: 4}
    assert result.services == {ServiceRole.MAIN: ALL_REVISIONS}
    assert result.status.phase == "Progressing"
    assert [e.reason for e in result.events] == ["RolloutStarted", "RevisionCreated", "ServiceCreated"]
    assert result.status.revisions[0].name == NEW and result.status.revisions[0].revision == 1


def test_a_whole_rollout_keeps_capacity_and_finishes() -> None:
    cluster = Cluster(ready_after=2)
    cluster.run(make_spec(4))
    first = cluster.status.stable_revision
    spec = make_spec(4, image="example/web:2")
    serving_seen = []
    for _ in range(100):
        observed = cluster.observe()
        result = cluster.step(spec)
        assert violations(spec, observed, result) == []
        assert result.status.replicas is not None and result.status.replicas <= 5
        serving_seen.append(cluster.serving())
        if result.status.phase == "Healthy":
            break
    assert min(serving_seen) >= 4
    status = cluster.status
    assert status.stable_revision == status.update_revision != first
    assert [r.revision for r in status.revisions] == [1, 2]
    assert first is not None
    # The previous revision is kept warm out of traffic for scaleDownDelaySeconds, then goes to 0
    # (the Deployment is kept for rollback).
    cluster.wait(spec, 5)
    assert cluster.revisions[first].spec == 4
    assert cluster.services[ServiceRole.MAIN] == ServiceTarget(status.stable_revision)
    cluster.wait(spec, 35)
    assert cluster.revisions[first].spec == 0
    assert cluster.services[ServiceRole.MAIN] == ALL_REVISIONS
    reasons = [e.reason for p in cluster.plans for e in p.events]
    assert {"RolloutStarted", "ScaledUp", "ScaledDown", "RevisionPromoted", "RolloutCompleted"} <= set(
        reasons
    )
    ready = status.condition("Ready")
    assert ready is not None and ready.status == "True"


def test_new_template_mid_rollout_drains_the_superseded_revision() -> None:
    cluster = Cluster(ready_after=2)
    cluster.run(make_spec(4))
    first = cluster.status.stable_revision
    v2 = make_spec(4, image="example/web:2")
    for _ in range(6):
        cluster.step(v2)
    second = cluster.status.update_revision
    assert cluster.revisions[second].spec > 0
    v3 = make_spec(4, image="example/web:3")
    for _ in range(200):
        observed = cluster.observe()
        result = cluster.step(v3)
        assert violations(v3, observed, result) == []
        if result.status.phase == "Healthy" and cluster.plans[-2].status.phase == "Healthy":
            break
    third = cluster.status.stable_revision
    assert third not in (first, second)
    assert cluster.revisions[second].spec == 0
    cluster.wait(v3, 35)  # the previous stable revision, warm for the window
    assert cluster.revisions[first].spec == 0
    assert cluster.revisions[third].spec == 4
    assert min(cluster.serving() for _ in [0]) >= 4


def test_replica_change_mid_rollout_is_honoured_without_restarting() -> None:
    cluster = Cluster(ready_after=2)
    cluster.run(make_spec(4))
    v2 = make_spec(4, image="example/web:2")
    for _ in range(7):
        cluster.step(v2)
    update = cluster.status.update_revision
    v2_more = make_spec(6, image="example/web:2")
    result = cluster.run(v2_more)
    assert result.status.stable_revision == update
    assert cluster.revisions[update].spec == 6
    assert [e for p in cluster.plans for e in p.events if e.reason == "RolloutStarted"][
        -1
    ].message.startswith("rolling out revision 2")


def test_returning_to_an_earlier_template_reuses_its_revision() -> None:
    cluster = Cluster(ready_after=1)
    v1 = make_spec(4)
    cluster.run(v1)
    first = cluster.status.stable_revision
    cluster.run(make_spec(4, image="example/web:2"))
    result = cluster.step(v1)
    assert result.update_revision == first
    assert result.replicas[first] > 0
    assert not [e for e in result.events if e.reason == "RevisionCreated"]
    record = result.status.revision_record(first)
    assert record is not None and record.revision == 3
    cluster.run(v1)
    assert cluster.status.stable_revision == first


def test_paused_rollout_holds_everything() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(make_spec(4))
    v2 = make_spec(4, image="example/web:2")
    for _ in range(3):
        cluster.step(v2)
    sizes = {name: r.spec for name, r in cluster.revisions.items()}
    paused = make_spec(4, image="example/web:2", paused=True)
    for _ in range(5):
        result = cluster.step(paused)
        assert result.status.phase == "Paused"
    assert {name: r.spec for name, r in cluster.revisions.items()} == sizes
    paused_condition = cluster.status.condition("Paused")
    assert paused_condition is not None and paused_condition.reason == "SpecPaused"
    cluster.run(v2)
    assert cluster.status.stable_revision == cluster.status.update_revision


def test_paused_before_the_rollout_starts_creates_nothing() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(make_spec(4))
    result = cluster.step(make_spec(4, image="example/web:2", paused=True))
    assert result.update_revision not in result.replicas
    assert result.status.phase == "Paused"
