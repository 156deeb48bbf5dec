"""Reading the probers' records and the operator's watch observations against a rollout
(bench.scenarios): reaction latency, versions after a moment, the last response of another version."""

from __future__ import annotations

from typing import Any

import pytest

from bench.prober import Record


def http(
    t: float, version: str | None = "v1", error: str | None = None, latency: float = 1.0, mode: str = "new"
) -> Record:
    return {
        "kind": "http",
        "mode": mode,
        "t_send": t,
        "lag_ms": 0.0,
        "status": None if error else 200,
        "outcome": error or "ok",
        "error": error,
        "version": None if error else version,
        "pod": "p",
        "latency_ms": latency,
    }


# -----------------------------------------------------------------------------------------------
# Reading records and watch observations against a rollout (bench.scenarios)
# ---------------------------------------------------------------------------------------------
def recorder_with(observations: list[tuple[float, str, str]]) -> Any:
    from bench.scenarios import EventRecorder, Observation

    rec = EventRecorder(kube=None, ns="ns", epoch=0.0, rollout="web")  # type: ignore[arg-type]
    rec.observations = [Observation(t, kind, what) for t, kind, what in observations]
    return rec


def test_reaction_is_the_first_write_after_the_latest_gate() -> None:
    rec = recorder_with(
        [
            (1.0, "write", "create deployment web-new replicas=1"),
            (2.0, "gate", "ready endpoints + web-new-a"),
            (2.1, "write", "scale deployment web-old 4->3"),
            (2.2, "write", "scale deployment web-new 1->2"),  # same pass: not a second sample
            (4.0, "gate", "ready endpoints + web-new-b"),
            (4.5, "gate", "ready endpoints + web-new-c"),
            (4.8, "write", "scale deployment web-old 3->2"),
        ]
    )
    samples, skipped = rec.reactions()
    assert [s[0] for s in samples] == [pytest.approx(0.1), pytest.approx(0.3)]
    assert samples[1][1].endswith("web-new-c")
    assert skipped == {"timer": 0, "same_pass": 0}


def test_timed_writes_and_gates_caused_by_the_operator_are_left_out() -> None:
    rec = recorder_with(
        [
            (10.0, "write", "switch service web -> old"),
            (10.005, "gate", "ready endpoints + web-old-a,web-old-b"),  # caused by that switch
            (10.012, "write", "scale deployment web-new 4->0"),  # same reconcile pass
            (12.0, "gate", "ready endpoints + web-new-a"),
            (30.0, "write", "scale deployment web-new 4->0"),  # scale-down delay, not a reaction
            (39.992, "gate", "ready endpoints + web-new-a,web-new-b"),  # seen before its cause (watch skew)
            (40.0, "write", "switch service web-preview -> new"),  # the cause: not a reaction
            (40.3, "write", "switch service web -> new"),  # a real reaction to the preview gate
        ]
    )
    samples, skipped = rec.reactions()
    assert [s[0] for s in samples] == [pytest.approx(0.308)]
    assert samples[0][2] == "switch service web -> new"
    assert skipped == {"timer": 1, "same_pass": 1}


def test_versions_after_and_last_other_version() -> None:
    from bench.scenarios import last_other, versions_after

    records = [
        http(1.0, "v2"),
        http(2.0, "v1"),
        http(2.5, "v2", mode="keepalive"),
        http(3.0, error="reset"),
        http(4.0, "v1"),
        http(5.0, "v1", mode="keepalive"),
    ]
    assert versions_after(records, 2.0) == {"v1": 3, "v2": 1, "error:reset": 1}
    assert last_other(records, "v1", since=2.0) == 3.0
    assert last_other(records, "v1", since=2.0, mode="keepalive") == 2.5
    assert last_other(records, "v1", since=3.5) is None
