"""What observe.py reads off a pod for endpoint-first retirement."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from zdr.observe import _pod_state


def pod(
    labels: dict[str, str], annotations: dict[str, str] | None = None, ready: bool = True
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-1",
            "labels": labels,
            "annotations": annotations or {},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_a_serving_pod() -> None:
    state = _pod_state(pod({"zdr.io/serving": "true"}), listed={"web-1"})
    assert state.ready and state.labelled and state.listed and not state.retiring


def test_a_pod_taken_out_carries_when() -> None:
    state = _pod_state(
        pod({"zdr.io/serving": "false"}, {"zdr.io/retiring-since": "2026-01-01T00:01:00.250000Z"}),
        listed=set(),
    )
    assert state.retiring_since == datetime(2026, 1, 1, 0, 1, 0, 250000, tzinfo=UTC)
    assert not state.listed


def test_a_pod_out_of_the_services_without_zdrs_record_still_counts_as_out() -> None:
    state = _pod_state(pod({"zdr.io/serving": "false"}, {"zdr.io/retiring-since": "soon"}), listed=set())
    assert state.retiring_since == datetime(2026, 1, 1, tzinfo=UTC)


def test_pods_from_before_the_label_and_not_ready_pods() -> None:
    state = _pod_state(pod({"app": "web"}, ready=False), listed={"web-1"})
    assert not state.labelled and not state.ready
