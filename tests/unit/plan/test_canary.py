"""Canary: weights as serving-pod ratios within the surge ceiling, pauses, promotion, Services."""

from __future__ import annotations

from typing import Any

import pytest
from invariants import violations
from simulate import START, Cluster, make_spec, pods_in_traffic
from zdr.api import ALL_REVISIONS, Command, ServiceRole, ServiceTarget, ZeroDowntimeRolloutStatus, parse_spec
from zdr.plan import Observed, ObservedRevision, ObservedService, plan
from zdr.plan.common import weight_replicas
from zdr.revision import revision_hash


def canary(
    image: str = "example/web:1", replicas: int = 10, steps: list[dict[str, Any]] | None = None, **params: Any
) -> dict[str, Any]:
    body: dict[str, Any] = dict(params)
    if steps is not None:
        body["steps"] = steps
    return make_spec(replicas, image=image, strategy={"type": "Canary", "canary": body})


@pytest.mark.parametrize(
    ("replicas", "weight", "pods"),
    [(10, 0, 0), (10, 20, 2), (10, 25, 3), (4, 20, 1), (3, 50, 2), (1, 1, 1), (5, 100, 5), (0, 50, 0)],
)
def test_weight_to_pods(replicas: int, weight: int, pods: int) -> None:
    assert weight_replicas(replicas, weight) == pods


def rollout(cluster: Cluster, spec: dict[str, Any], limit: int = 300, **kwargs: Any) -> None:
    for _ in range(limit):
        observed = cluster.observe()
        result = cluster.step(spec, **kwargs)
        assert violations(spec, observed, result) == [], result.status.message
        if result.status.phase == "Healthy" and cluster.plans[-2].status.phase == "Healthy":
            return
    raise AssertionError(cluster.status.message)


def test_steps_shift_serving_pods_gradually() -> None:
    steps = [{"setWeight": 50}, {"pause": {"duration": "10s"}}, {"setWeight": 80}]
    cluster = Cluster(ready_after=2)
    cluster.run(canary(steps=steps, maxSurge=1))
    spec = canary("example/web:2", steps=steps, maxSurge=1)
    rollout(cluster, spec)
    # Never more than replicas + maxSurge pods in traffic, so a step's pods never appear all at once
    # (the previous revision kept warm afterwards is out of traffic).
    for observed in cluster.history:
        assert pods_in_traffic(observed) <= 11
    weights = [p.status.canary_weight for p in cluster.plans if p.status.canary_weight is not None]
    assert weights == sorted(weights)
    assert 50 in weights and 80 in weights
    completed = [e.message for p in cluster.plans for e in p.events if e.reason == "StepCompleted"]
    assert [m.split(":")[0] for m in completed] == ["step 1/3", "step 2/3", "step 3/3"]
    assert cluster.status.stable_revision == cluster.status.update_revision
    assert cluster.status.current_step_index is None and cluster.status.canary_weight is None


def test_pause_with_duration_holds_and_requeues() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(canary(replicas=4))
    spec = canary("example/web:2", replicas=4, steps=[{"setWeight": 25}, {"pause": {"duration": "30s"}}])
    result = cluster.run(spec, until="Paused")
    assert result.status.current_step_index == 1
    assert result.requeue_after is not None and 0 < result.requeue_after <= 30
    started = result.status.step_started_at
    sizes = {n: r.spec for n, r in cluster.revisions.items()}
    for _ in range(10):
        result = cluster.step(spec, seconds=2)
        assert result.status.step_started_at == started
    assert {n: r.spec for n, r in cluster.revisions.items()} == sizes
    rollout(cluster, spec)


def test_indefinite_pause_waits_for_promote() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(canary(replicas=4))
    spec = canary("example/web:2", replicas=4, steps=[{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}])
    result = cluster.run(spec, until="Paused")
    assert result.requeue_after is None or result.requeue_after > 100  # only the deadline, not a timer
    paused = result.status.condition("Paused")
    assert paused is not None and paused.reason == "AwaitingPromotion"
    for _ in range(20):
        assert cluster.step(spec, seconds=10).status.current_step_index == 1
    result = cluster.step(spec, command=Command(id="p1", verb="promote"))
    assert result.status.current_step_index == 2
    rollout(cluster, spec, command=Command(id="p1", verb="promote"))


def test_promote_full_skips_every_step() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(canary(replicas=4))
    spec = canary("example/web:2", replicas=4, steps=[{"setWeight": 25}, {"pause": {}}, {"pause": {}}])
    cluster.run(spec, until="Paused")
    result = cluster.step(spec, command=Command(id="f1", verb="promote", full=True))
    assert result.status.current_step_index == 3
    rollout(cluster, spec, command=Command(id="f1", verb="promote", full=True))


def test_services_select_their_own_revision() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(canary(replicas=4, scaleDownDelaySeconds=20))
    stable = cluster.status.stable_revision
    assert stable is not None
    assert cluster.services == {
        ServiceRole.MAIN: ALL_REVISIONS,
        ServiceRole.CANARY: ServiceTarget(stable),
        ServiceRole.STABLE: ServiceTarget(stable),
    }
    spec = canary(
        "example/web:2", replicas=4, steps=[{"setWeight": 50}, {"pause": {}}], scaleDownDelaySeconds=20
    )
    result = cluster.run(spec, until="Paused")
    update = result.update_revision
    assert update is not None
    assert cluster.services[ServiceRole.CANARY] == ServiceTarget(update)
    assert cluster.services[ServiceRole.STABLE] == ServiceTarget(stable)
    assert cluster.services[ServiceRole.MAIN] == ALL_REVISIONS
    promote = Command(id="go", verb="promote")
    for _ in range(50):
        result = cluster.step(spec, command=promote)
        if result.status.stable_revision == update:
            break
    assert cluster.services[ServiceRole.STABLE] == ServiceTarget(update)
    # The previous revision keeps its last pod for the delay, then drains.
    assert cluster.revisions[stable].spec >= 1
    rollout(cluster, spec, command=promote)
    for _ in range(30):
        cluster.step(spec, command=promote)
    assert cluster.revisions[stable].spec == 0


def test_without_steps_goes_straight_to_full_weight_within_surge() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(canary(replicas=8))
    spec = canary("example/web:2", replicas=8, maxSurge="25%")
    rollout(cluster, spec)
    for observed in cluster.history:
        assert pods_in_traffic(observed) <= 10


def test_restart_neither_repeats_nor_skips_a_step() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(canary(replicas=4))
    spec = canary("example/web:2", replicas=4, steps=[{"setWeight": 25}, {"pause": {}}, {"setWeight": 75}])
    cluster.run(spec, until="Paused")
    index = cluster.status.current_step_index
    # A restarted operator sees the same status and the same cluster: same decision.
    replay = cluster.step(spec)
    assert replay.status.current_step_index == index
    assert not [e for e in replay.events if e.reason in ("StepCompleted", "StepStarted")]


def test_replica_change_mid_canary_keeps_the_step() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(canary(replicas=4))
    steps = [{"setWeight": 50}, {"pause": {}}]
    cluster.run(canary("example/web:2", replicas=4, steps=steps), until="Paused")
    bigger = canary("example/web:2", replicas=8, steps=steps)
    result = cluster.run(bigger, until="Paused")
    assert result.status.current_step_index == 1
    update = result.update_revision
    assert update is not None and cluster.revisions[update].spec == 4
    assert sum(r.spec for r in cluster.revisions.values()) == 8


def test_new_template_mid_canary_restarts_steps_and_drains_the_old_canary() -> None:
    cluster = Cluster(ready_after=1)
    cluster.run(canary(replicas=4))
    stable = cluster.status.stable_revision
    steps = [{"setWeight": 50}, {"pause": {}}]
    cluster.run(canary("example/web:2", replicas=4, steps=steps), until="Paused")
    first_canary = cluster.status.update_revision
    v3 = canary("example/web:3", replicas=4, steps=steps)
    result = cluster.step(v3)
    assert result.status.current_step_index == 0
    result = cluster.run(v3, until="Paused")
    assert first_canary is not None and cluster.revisions[first_canary].spec == 0
    assert cluster.services[ServiceRole.CANARY] == ServiceTarget(result.update_revision)
    assert cluster.services[ServiceRole.STABLE] == ServiceTarget(stable)


def test_promotion_leaves_a_serving_canary_service_where_it_is() -> None:
    """Scaled to zero, the canary Service still has a ready endpoint (an old pod on its way out):
    promoting must not re-point it to a revision with no pod that serves."""
    spec = make_spec(0, strategy={"type": "Canary", "canary": {"maxSurge": 1, "steps": []}})
    update = revision_hash(parse_spec(spec))
    observed = Observed(
        generation=1,
        revisions={
            update: ObservedRevision(update, 0, 0, 0, 0),
            "aaaaaaaaa1": ObservedRevision("aaaaaaaaa1", 0, 0, 0, 0),
            "bbbbbbbbb2": ObservedRevision("bbbbbbbbb2", 0, 1, 0, 0, ready_endpoints={ServiceRole.CANARY: 1}),
        },
        services={ServiceRole.CANARY: ObservedService(name="canary", target=ALL_REVISIONS)},
    )
    status = ZeroDowntimeRolloutStatus(observed_generation=1, stable_revision="aaaaaaaaa1")
    result = plan(spec, status, observed, START)
    assert violations(spec, observed, result) == []
    assert result.services.get(ServiceRole.CANARY, ALL_REVISIONS) == ALL_REVISIONS
