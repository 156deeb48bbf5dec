"""Endpoint-first retirement: which pods go, when the Deployment may shrink, and what is put back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from zdr.retire import ENDPOINT_WAIT_SECONDS, PodPatch, PodState, RevisionPods, retire

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def pod(
    n: int, *, ready: bool = True, out: float | None = None, listed: bool = True, labelled: bool = True
) -> PodState:
    """Pod ``p<n>``, created n minutes after the start (higher n: newer); ``out``: chosen that many seconds ago."""
    return PodState(
        name=f"p{n}",
        ready=ready,
        labelled=labelled,
        retiring_since=None if out is None else NOW - timedelta(seconds=out),
        listed=listed,
        created_at=NOW - timedelta(hours=1) + timedelta(minutes=n),
    )


def test_a_scale_down_first_takes_the_newest_ready_pod_out_and_holds_the_size() -> None:
    revs = {"old": RevisionPods(4, (pod(1), pod(2), pod(3), pod(4)))}
    result = retire(revs, {"old": 3}, NOW)
    assert result.patches == (PodPatch("p4", True, True),)
    assert result.replicas == {"old": 4}
    assert result.waiting == {"old": ("p4",)}


def test_the_size_holds_while_the_pod_is_listed_then_shrinks_once_it_is_not() -> None:
    listed = {"old": RevisionPods(4, (pod(1), pod(2), pod(3), pod(4, out=0.4)))}
    held = retire(listed, {"old": 3}, NOW)
    assert held.replicas == {"old": 4} and held.patches == ()
    assert held.requeue_after == pytest.approx(ENDPOINT_WAIT_SECONDS - 0.4)
    gone = {"old": RevisionPods(4, (pod(1), pod(2), pod(3), pod(4, out=0.9, listed=False)))}
    released = retire(gone, {"old": 3}, NOW)
    assert released.replicas == {"old": 3} and released.patches == () and released.waiting == {}
    assert released.removal_seconds == pytest.approx((0.9,))


def test_the_planner_sees_chosen_pods_as_gone_before_and_after_the_scale_down() -> None:
    before = RevisionPods(4, (pod(1), pod(2), pod(3), pod(4, out=1)))
    assert before.planned_replicas == 3
    after = RevisionPods(3, (pod(1), pod(2), pod(3), pod(4, out=1, listed=False)))
    assert after.planned_replicas == 3
    # Once the Deployment is at 3 the chosen pod is not put back while the ReplicaSet removes it.
    result = retire({"old": after}, {"old": 3}, NOW)
    assert result.patches == () and result.replicas == {"old": 3}
    # An unlisted revision keeps the size the planner saw, which carries the retirement on.
    assert retire({"old": before}, {}, NOW).replicas == {"old": 4}
    assert retire(
        {"old": RevisionPods(4, (pod(1), pod(2), pod(3), pod(4, out=1, listed=False)))}, {}, NOW
    ).replicas == {"old": 3}


def test_a_pod_still_listed_after_the_wait_goes_anyway_with_a_warning() -> None:
    revs = {"old": RevisionPods(2, (pod(1), pod(2, out=ENDPOINT_WAIT_SECONDS + 1)))}
    result = retire(revs, {"old": 1}, NOW)
    assert result.replicas == {"old": 1}
    assert [e.reason for e in result.events] == ["EndpointsSlow"]
    assert result.events[0].type == "Warning" and "p2" in result.events[0].message


def test_not_ready_pods_go_first_and_at_once() -> None:
    revs = {"old": RevisionPods(3, (pod(1), pod(2, ready=False), pod(3)))}
    result = retire(revs, {"old": 2}, NOW)
    assert result.patches == () and result.replicas == {"old": 2}


def test_a_revision_given_pods_back_gets_its_chosen_pods_back_into_the_services() -> None:
    revs = {"old": RevisionPods(4, (pod(1), pod(2), pod(3, out=2), pod(4, out=2)))}
    assert retire(revs, {"old": 4}, NOW).patches == (PodPatch("p4", False, True), PodPatch("p3", False, True))
    partly = retire(revs, {"old": 3}, NOW)
    assert partly.patches == (PodPatch("p3", False, True),)  # the one chosen first (newest) stays out
    assert partly.replicas == {"old": 4}


def test_pods_without_the_label_get_only_their_deletion_cost_and_never_wait_on_endpoints() -> None:
    fresh = {"old": RevisionPods(2, (pod(1, labelled=False), pod(2, labelled=False, listed=False)))}
    first = retire(fresh, {"old": 1}, NOW)
    assert first.patches == (PodPatch("p2", True, False),)
    assert first.replicas == {"old": 2}  # the ReplicaSet must see the cost before the scale-down
    marked = {"old": RevisionPods(2, (pod(1, labelled=False), pod(2, labelled=False, listed=False, out=0.1)))}
    assert retire(marked, {"old": 1}, NOW).replicas == {"old": 1}


def test_scale_to_zero_takes_every_ready_pod_out_first() -> None:
    revs = {"old": RevisionPods(2, (pod(1), pod(2))), "new": RevisionPods(2, (pod(5), pod(6)))}
    result = retire(revs, {"old": 0, "new": 2}, NOW)
    assert {p.name for p in result.patches} == {"p1", "p2"}
    assert result.replicas == {"old": 2, "new": 2}


def test_a_new_revision_passes_through() -> None:
    assert retire({}, {"abc": 3}, NOW).replicas == {"abc": 3}


def test_a_revision_going_to_zero_that_no_service_lists_goes_at_once() -> None:
    left = {"left": RevisionPods(3, (pod(1, listed=False), pod(2, listed=False), pod(3, listed=False)))}
    result = retire(left, {"left": 0}, NOW)
    assert result.replicas == {"left": 0} and result.patches == () and result.waiting == {}
    # One still listed (its EndpointSlice not updated yet): that one leaves the Services first.
    lagging = {"left": RevisionPods(3, (pod(1, listed=False), pod(2), pod(3, listed=False)))}
    held = retire(lagging, {"left": 0}, NOW)
    assert held.replicas == {"left": 3} and held.patches == (PodPatch("p2", True, True),)
    # A partial scale-down still steers the ReplicaSet by deletion cost, listed or not.
    partial = retire(
        {"old": RevisionPods(3, (pod(1, listed=False), pod(2, listed=False), pod(3, listed=False)))},
        {"old": 2},
        NOW,
    )
    assert partial.patches == (PodPatch("p3", True, True),) and partial.replicas == {"old": 3}
