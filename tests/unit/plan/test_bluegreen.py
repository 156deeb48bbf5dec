"""BlueGreen: preview, gated switch, scale-down delay, manual promotion, restarts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from invariants import violations
from simulate import START, Cluster, make_spec
from zdr.api import Command, ServiceRole, ServiceTarget, ZeroDowntimeRolloutStatus, parse_spec
from zdr.plan import Observed, ObservedRevision, ObservedService, plan
from zdr.revision import revision_hash


def blue_green(image: str = "example/web:1", replicas: int = 3, **params: Any) -> dict[str, Any]:
    return make_spec(replicas, image=image, strategy={"type": "BlueGreen", "blueGreen": params})


def deployed(**params: Any) -> Cluster:
    cluster = Cluster(ready_after=2)
    cluster.run(blue_green(**params))
    return cluster


def test_first_deploy_points_both_services_at_the_revision() -> None:
    cluster = deployed()
    stable = cluster.status.stable_revision
    assert stable is not None
    assert cluster.services == {
        ServiceRole.MAIN: ServiceTarget(stable),
        ServiceRole.PREVIEW: ServiceTarget(stable),
    }
    assert cluster.status.phase == "Healthy"


def test_full_blue_green_rollout() -> None:
    cluster = deployed(scaleDownDelaySeconds=30)
    blue = cluster.status.stable_revision
    assert blue is not None
    spec = blue_green("example/web:2", scaleDownDelaySeconds=30)
    green = revision_hash(parse_spec(spec))
    main_targets = []
    for _ in range(60):
        observed = cluster.observe()
        result = cluster.step(spec)
        assert violations(spec, observed, result) == []
        main_targets.append(cluster.services[ServiceRole.MAIN])
        if result.status.stable_revision == green:
            break
    # The new revision ran at full size behind the preview before the switch.
    switch = main_targets.index(ServiceTarget(green))
    before = cluster.plans[-1 - (len(main_targets) - 1 - switch)]
    assert before.replicas[green] == 3
    # The switch happened once every preview pod was an endpoint of the preview Service.
    observed_at_switch = cluster.history[-1 - (len(main_targets) - 1 - switch)]
    assert observed_at_switch.revisions[green].endpoints(ServiceRole.PREVIEW) == 3
    assert observed_at_switch.target(ServiceRole.PREVIEW) == ServiceTarget(green)
    # The old revision's pods took traffic until the switch: they drain at once, then fresh
    # pods stand by at full size (out of traffic, not counted as serving) for the delay, then
    # the revision goes to 0 but is kept.
    result = cluster.step(spec)
    assert result.replicas[blue] == 0
    assert result.requeue_after is not None and 0 < result.requeue_after <= 30
    assert result.status.stable_revision == green and result.status.phase == "Healthy"
    assert cluster.revisions[blue].pods == []
    result = cluster.step(spec)
    record = result.status.revision_record(blue)
    assert record is not None and record.drained_at is not None
    assert result.replicas[blue] == 3
    assert result.status.standby_replicas == 0  # requested, not created yet
    for _ in range(3):
        result = cluster.step(spec)
    assert cluster.services[ServiceRole.MAIN] == ServiceTarget(green)
    assert cluster.services[ServiceRole.PREVIEW] == ServiceTarget(green)
    assert result.status.standby_replicas == 3 and result.status.replicas == 3
    assert result.status.selector is not None and f"zdr.io/revision notin ({blue})" in result.status.selector
    assert "kept warm for rollback" in (result.status.message or "")
    for _ in range(40):
        result = cluster.step(spec)
    assert cluster.revisions[blue].spec == 0
    assert blue in cluster.revisions
    assert result.status.standby_replicas == 0 and result.status.selector == "app=web"
    reasons = [e.reason for p in cluster.plans for e in p.events]
    assert "TrafficSwitched" in reasons and "RolloutCompleted" in reasons


def test_switch_waits_for_every_preview_endpoint() -> None:
    spec = blue_green("example/web:2")
    blue, green = "000000blue", revision_hash(parse_spec(spec))

    def observed(preview_endpoints: int) -> Observed:
        return Observed(
            generation=2,
            revisions={
                blue: ObservedRevision(blue, 3, 3, 3, 3, ready_endpoints={ServiceRole.MAIN: 3}),
                green: ObservedRevision(
                    green, 3, 3, 3, 3, ready_endpoints={ServiceRole.PREVIEW: preview_endpoints}
                ),
            },
            services={
                ServiceRole.MAIN: ObservedService("web", ServiceTarget(blue)),
                ServiceRole.PREVIEW: ObservedService("web-preview", ServiceTarget(green)),
            },
        )

    status = ZeroDowntimeRolloutStatus(stable_revision=blue, update_revision=green)
    waiting = plan(spec, status, observed(2), START)
    assert waiting.services[ServiceRole.MAIN] == ServiceTarget(blue)
    assert "2/3" in (waiting.status.message or "")
    switched = plan(spec, status, observed(3), START)
    assert switched.services[ServiceRole.MAIN] == ServiceTarget(green)
    assert switched.status.stable_revision == green
    record = switched.status.revision_record(blue)
    assert record is not None and record.retired_at == START


def test_manual_promotion_waits_for_the_command() -> None:
    cluster = deployed(autoPromotion=False)
    spec = blue_green("example/web:2", autoPromotion=False)
    result = cluster.run(spec, until="Paused")
    assert result.status.message and "kubectl zdr promote" in result.status.message
    paused = result.status.condition("Paused")
    assert paused is not None and paused.reason == "AwaitingPromotion"
    blue = cluster.status.stable_revision
    for _ in range(5):
        assert cluster.step(spec).services[ServiceRole.MAIN] == ServiceTarget(blue)
    command = Command(id="c1", verb="promote")
    promoted = cluster.step(spec, command=command)
    assert promoted.services[ServiceRole.MAIN] == ServiceTarget(promoted.update_revision)
    assert promoted.status.last_command is not None and promoted.status.last_command.result == "Accepted"
    assert "PromoteRequested" in [e.reason for e in promoted.events]
    again = cluster.step(spec, command=command)
    assert not [e for e in again.events if e.reason == "PromoteRequested"]
    cluster.run(spec, command=command)


def test_promote_before_the_preview_serves_is_remembered() -> None:
    cluster = deployed(autoPromotion=False)
    spec = blue_green("example/web:2", autoPromotion=False)
    command = Command(id="early", verb="promote")
    first = cluster.step(spec, command=command)
    assert first.status.promote_requested is True
    assert first.services[ServiceRole.MAIN] == ServiceTarget(cluster.status.stable_revision)
    result = cluster.run(spec, command=command)
    assert result.status.stable_revision == result.update_revision
    assert result.status.promote_requested is None


def test_auto_promotion_seconds_requeue_and_switch() -> None:
    cluster = deployed(autoPromotionSeconds=20)
    spec = blue_green("example/web:2", autoPromotionSeconds=20)
    green = revision_hash(parse_spec(spec))
    ready_seen = None
    for _ in range(40):
        result = cluster.step(spec)
        if result.status.preview_ready_at is not None and ready_seen is None:
            ready_seen = result.status.preview_ready_at
            assert result.requeue_after == 20
        if result.services[ServiceRole.MAIN] == ServiceTarget(green):
            break
    assert ready_seen is not None
    assert cluster.now - timedelta(seconds=1) - ready_seen >= timedelta(seconds=20)


def test_switch_applied_but_not_recorded_is_adopted() -> None:
    spec = blue_green("example/web:2")
    blue, green = "000000blue", revision_hash(parse_spec(spec))
    observed = Observed(
        generation=2,
        revisions={
            blue: ObservedRevision(blue, 3, 3, 3, 3),
            green: ObservedRevision(
                green, 3, 3, 3, 3, ready_endpoints={ServiceRole.MAIN: 3, ServiceRole.PREVIEW: 3}
            ),
        },
        services={
            ServiceRole.MAIN: ObservedService("web", ServiceTarget(green)),
            ServiceRole.PREVIEW: ObservedService("web-preview", ServiceTarget(green)),
        },
    )
    status = ZeroDowntimeRolloutStatus(stable_revision=blue, update_revision=green)
    result = plan(spec, status, observed, START)
    assert result.status.stable_revision == green
    assert result.services[ServiceRole.MAIN] == ServiceTarget(green)
    assert result.replicas[blue] == 0  # its pods took traffic: they drain before a standby
    assert result.status.phase == "Healthy"


def test_new_template_during_preview_moves_preview_back_to_stable() -> None:
    cluster = deployed(autoPromotion=False)
    blue = cluster.status.stable_revision
    v2 = blue_green("example/web:2", autoPromotion=False)
    cluster.run(v2, until="Paused")
    green = cluster.status.update_revision
    assert cluster.services[ServiceRole.PREVIEW] == ServiceTarget(green)
    v3 = blue_green("example/web:3", autoPromotion=False)
    result = cluster.step(v3)
    assert result.services[ServiceRole.PREVIEW] == ServiceTarget(blue)
    assert result.services[ServiceRole.MAIN] == ServiceTarget(blue)
    result = cluster.step(v3)
    assert green is not None and result.replicas[green] == 0
    result = cluster.run(v3, until="Paused")
    assert cluster.services[ServiceRole.PREVIEW] == ServiceTarget(result.update_revision)
    assert cluster.revisions[green].spec == 0


def test_rollback_to_a_warm_revision_is_immediate() -> None:
    cluster = deployed(scaleDownDelaySeconds=600)
    v1 = blue_green(scaleDownDelaySeconds=600)
    blue = cluster.status.stable_revision
    cluster.run(blue_green("example/web:2", scaleDownDelaySeconds=600))
    assert blue is not None and cluster.revisions[blue].spec == 3
    steps = 0
    while cluster.step(v1).status.stable_revision != blue:
        steps += 1
        assert steps < 5
    assert not [e for p in cluster.plans[-steps - 1 :] for e in p.events if e.reason == "RevisionCreated"]
