"""The shared arithmetic and the Service gating, function by function."""

from __future__ import annotations

import pytest
from zdr.api import ALL_REVISIONS, ServiceRole, ServiceTarget
from zdr.plan import Observed, ObservedRevision, ObservedService
from zdr.plan.common import (
    approach,
    can_select,
    choose_target,
    evidence,
    max_surge,
    max_unavailable,
    not_ready,
    pods,
    serving,
)

MAIN, PREVIEW = ServiceRole.MAIN, ServiceRole.PREVIEW


def rev(
    name: str, spec: int, pods_: int | None = None, ready: int | None = None, **endpoints: int
) -> ObservedRevision:
    ready = spec if ready is None else ready
    return ObservedRevision(
        name=name,
        spec_replicas=spec,
        replicas=spec if pods_ is None else pods_,
        ready_replicas=ready,
        available_replicas=ready,
        ready_endpoints={ServiceRole(k): v for k, v in endpoints.items()},
    )


@pytest.mark.parametrize(
    ("value", "replicas", "surge", "unavailable"),
    [("25%", 4, 1, 1), ("25%", 10, 3, 2), (2, 10, 2, 2), ("0%", 3, 0, 0), ("100%", 3, 3, 3), (5, 3, 5, 3)],
)
def test_surge_rounds_up_unavailable_rounds_down(
    value: int | str, replicas: int, surge: int, unavailable: int
) -> None:
    assert max_surge(value, replicas) == surge
    assert max_unavailable(value, replicas) == unavailable


def test_counts() -> None:
    scaling_down = rev("a", 2, pods_=4, ready=4, main=4)
    assert pods(scaling_down) == 4
    assert serving(scaling_down) == 2  # pods above spec are about to go
    assert not_ready(scaling_down) == 0
    starting = rev("b", 3, pods_=1, ready=1, main=0)
    assert pods(starting) == 3 and serving(starting) == 0 and not_ready(starting) == 2


def test_approach_scales_up_within_the_ceiling_counted_on_existing_pods() -> None:
    revisions = {"old": rev("old", 4, main=4), "new": rev("new", 0)}
    desired = approach(
        revisions, {"new": 4, "old": 0}, ceiling=5, floor=4, scale_up_order=["new"], scale_down_order=["old"]
    )
    assert desired == {"old": 4, "new": 1}


def test_approach_scales_down_only_what_serving_pods_replace() -> None:
    revisions = {"old": rev("old", 4, main=4), "new": rev("new", 2, ready=2, main=1)}
    desired = approach(
        revisions, {"new": 4, "old": 0}, ceiling=6, floor=4, scale_up_order=["new"], scale_down_order=["old"]
    )
    assert desired == {"old": 3, "new": 2}


def test_approach_removes_not_ready_pods_freely() -> None:
    revisions = {"old": rev("old", 4, ready=1, main=1), "new": rev("new", 1, ready=0)}
    desired = approach(
        revisions, {"new": 4, "old": 0}, ceiling=5, floor=4, scale_up_order=["new"], scale_down_order=["old"]
    )
    assert desired == {"old": 1, "new": 1}


def test_approach_without_a_ceiling() -> None:
    revisions = {"blue": rev("blue", 3, main=3)}
    desired = approach(
        revisions, {"green": 3}, ceiling=None, floor=3, scale_up_order=["green"], scale_down_order=[]
    )
    assert desired == {"blue": 3, "green": 3}


def observed_with(preview_target: ServiceTarget | None, **revisions: ObservedRevision) -> Observed:
    services = {MAIN: ObservedService("web", ServiceTarget("blue"))}
    if preview_target is not None:
        services[PREVIEW] = ObservedService("web-preview", preview_target)
    return Observed(generation=1, revisions=revisions, services=services)


def test_evidence_uses_endpoints_once_a_service_selects_the_revision() -> None:
    unselected = observed_with(None, blue=rev("blue", 3, main=3), green=rev("green", 3))
    assert evidence(unselected, "green") == 3  # available pods: no Service selects them yet
    selected = observed_with(
        ServiceTarget("green"), blue=rev("blue", 3, main=3), green=rev("green", 3, preview=2)
    )
    assert evidence(selected, "green") == 2
    assert not can_select(selected, "green")
    assert not can_select(selected, "missing")


def test_choose_target_switches_only_to_serving_revisions() -> None:
    observed = observed_with(
        ServiceTarget("blue"), blue=rev("blue", 3, main=3, preview=3), green=rev("green", 3, ready=1)
    )
    assert choose_target(observed, PREVIEW, ServiceTarget("green"), fallbacks=["blue"]) == ServiceTarget(
        "blue"
    )
    assert choose_target(observed, MAIN, ServiceTarget("green")) == ServiceTarget("blue")
    assert choose_target(observed, MAIN, ALL_REVISIONS) == ALL_REVISIONS
    ready = observed_with(
        ServiceTarget("blue"), blue=rev("blue", 3, main=3, preview=3), green=rev("green", 3)
    )
    assert choose_target(ready, PREVIEW, ServiceTarget("green"), fallbacks=["blue"]) == ServiceTarget("green")


def test_choose_target_may_point_an_idle_or_missing_service_anywhere() -> None:
    idle = observed_with(ServiceTarget("gone"), blue=rev("blue", 3, main=3), green=rev("green", 3, ready=0))
    assert choose_target(idle, PREVIEW, ServiceTarget("green"), fallbacks=["blue"]) == ServiceTarget("green")
    missing = observed_with(None, green=rev("green", 3, ready=0))
    assert choose_target(missing, PREVIEW, ServiceTarget("green")) == ServiceTarget("green")


def test_choose_target_leaves_a_foreign_selector_that_serves() -> None:
    observed = Observed(
        generation=1,
        revisions={"blue": rev("blue", 3, main=3), "green": rev("green", 3, ready=0)},
        services={MAIN: ObservedService("web", None)},
    )
    assert choose_target(observed, MAIN, ServiceTarget("green")) is None
