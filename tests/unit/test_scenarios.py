"""Reading the probers' records and the operator's watch observations against a rollout
(bench.scenarios): reaction latency, versions after a moment, the last response of another version."""

from __future__ import annotations

from pathlib import Path
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


def test_versions_after() -> None:
    from bench.scenarios import versions_after

    records = [
        http(1.0, "v2"),
        http(2.0, "v1"),
        http(2.5, "v2", mode="keepalive"),
        http(3.0, error="reset"),
        http(4.0, "v1"),
        http(5.0, "v1", mode="keepalive"),
    ]
    assert versions_after(records, 2.0) == {"v1": 3, "v2": 1, "error:reset": 1}


# -----------------------------------------------------------------------------------------------
# Telling the app's own resets from failures a controller causes
# -----------------------------------------------------------------------------------------------
def flow_log(flows: dict[int, list[tuple[float, str]]]) -> Any:
    from bench.flows import FlowLog

    log = FlowLog("10.96.0.10", 80, Path("/nonexistent"), epoch=0.0)
    log.flows = flows
    return log


def terminations(pods: dict[str, tuple[str, float, float]]) -> Any:
    """pod name -> (IP, terminating at, left the Service at)."""
    from bench.scenarios import PodTerminations

    t = PodTerminations.__new__(PodTerminations)
    t.pod_ips = {ip: name for name, (ip, _, _) in pods.items()}
    t.terminating = {name: term for name, (_, term, _) in pods.items()}
    t.left_service = {name: left for name, (_, _, left) in pods.items()}
    return t


def conn(t: float, outcome: str, sport: int, mode: str = "new", reused: bool = False) -> Record:
    return {
        "kind": "http",
        "mode": mode,
        "t_send": t,
        "outcome": outcome,
        "error": outcome,
        "sport": sport,
        "reused": reused,
        "pod": None,
    }


def test_a_new_connection_through_a_reset_flows_translation_is_the_apps_doing() -> None:
    from bench.scenarios import app_reset_failures

    terms = terminations({"old-a": ("10.88.0.5", 10.0, 10.02), "new-b": ("10.88.0.6", 99.0, 99.0)})
    flows = flow_log(
        {
            40000: [(1.0, "10.88.0.5")],  # a WebSocket to old-a, reset at its SIGTERM (t=13)
            40002: [
                (1.0, "10.88.0.5"),
                (14.0, "10.88.0.6"),
            ],  # a fresh translation at the failure: not excused
            40004: [(1.0, "10.88.0.6")],  # last flow went to a pod that was never cut: not excused
        }
    )
    records = [
        conn(14.0, "connect_timeout", 40000),  # 1 s after the reset, no new conntrack entry: excused
        conn(14.0, "connect_timeout", 40002),
        conn(14.0, "connect_timeout", 40004),
        conn(30.0, "connect_timeout", 40000),  # the unanswered SYN kept the stale entry: excused too
        conn(12.0, "refused", 40000),  # before the app's SIGTERM: zdr's drain should have covered it
        conn(14.0, "http_5xx", 40000),  # an answer is never excused
    ]
    explained = app_reset_failures(records, flows, terms, pre_stop_seconds=3.0)
    assert [(r["t_send"], r["sport"]) for r in explained] == [(14.0, 40000), (30.0, 40000)]


def test_cut_in_flight_only_after_the_drain_on_a_pod_out_of_the_service() -> None:
    from bench.scenarios import cut_by_app

    terms = terminations({"old-a": ("10.88.0.5", 10.0, 10.02)})
    ka = {"kind": "http", "mode": "keepalive", "t_send": 13.1, "outcome": "keepalive_reset", "pod": "old-a"}
    ws = {"kind": "ws", "event": "end", "t": 13.05, "end_kind": "lost", "abnormal": True, "pod": "old-a"}
    assert cut_by_app(ka, terms, 3.0) and cut_by_app(ws, terms, 3.0)
    assert not cut_by_app({**ka, "t_send": 11.0}, terms, 3.0)  # before SIGTERM: the drain was cut short
    assert not cut_by_app({**ka, "outcome": "refused"}, terms, 3.0)  # a refused reconnect is never the app's
    assert not cut_by_app({**ws, "end_kind": "closed", "code": 1011}, terms, 3.0)
    assert not cut_by_app({**ws, "pod": "other"}, terms, 3.0)


def test_rollback_time_is_not_measured_when_the_records_cannot_show_it() -> None:
    from bench.run import rollback_seconds

    assert rollback_seconds([http(1.0, "v2")], undo=5.0) is None  # nothing after the undo
    assert rollback_seconds([http(6.0, "v1"), http(7.0, "v1")], undo=5.0) == 0.0
    assert rollback_seconds([http(6.0, "v2"), http(7.0, "v1")], undo=5.0) == 1.0
    assert rollback_seconds([http(6.0, "v1"), http(7.0, "v2")], undo=5.0) is None  # the end is not seen
    assert rollback_seconds([http(6.0, "v2", mode="keepalive"), http(7.0, "v1")], undo=5.0, mode="new") == 0.0


def test_every_connection_counts_when_traffic_has_moved() -> None:
    from bench.prober import last_on_other_version
    from bench.run import moved

    def ws(t_open: float, t: float, version: str | None, abnormal: bool = False) -> dict[str, object]:
        return {
            "kind": "ws",
            "event": "end",
            "t_open": t_open,
            "t": t,
            "version": version,
            "abnormal": abnormal,
        }

    http_only = [http(6.0, "v2", mode="keepalive"), http(7.0, "v1"), http(9.0, "v1")]
    assert last_on_other_version(http_only, "v1", 5.0) == 1.0
    # A WebSocket on v2 that stayed open until 8.5 s holds the move back, closed cleanly or not.
    assert last_on_other_version([*http_only, ws(1.0, 8.5, "v2")], "v1", 5.0) == 3.5
    assert last_on_other_version([*http_only, ws(1.0, 8.5, "v2", abnormal=True)], "v1", 5.0) == 3.5
    # WebSockets on the target, ended before the mark, or never connected do not count.
    assert (
        last_on_other_version([*http_only, ws(1.0, 8.5, "v1"), ws(1.0, 4.0, "v2"), ws(6, 6, None)], "v1", 5.0)
        == 1.0
    )
    # Still on v2 when the window ends: not measured; and a failed answer proves nothing.
    assert last_on_other_version([*http_only, ws(1.0, 12.0, "v2")], "v1", 5.0, end=10.0) is None
    assert (
        last_on_other_version([http(6.0, "v2"), {**http(7.0, "v1"), "outcome": "refused"}], "v1", 5.0) is None
    )
    assert last_on_other_version([http(6.0, "v1")], "v1", 5.0) == 0.0
    assert moved([1.0, None, 3.0]) == "1.0 / 2.0 / 3.0 (1 not measured)"
    assert moved([None]) == "not measured"


def test_spread_is_min_median_max() -> None:
    from bench.run import spread

    assert spread([3, 1, 2]) == "1 / 2 / 3"
    assert spread([0, 0]) == "0"
    assert spread([None, None]) == "not measured"
    assert spread([0.25, None, 1.5], 1) == "0.2 / 0.9 / 1.5"


def test_a_websocket_reconnect_through_a_reset_flows_translation_is_the_apps_doing() -> None:
    from bench.scenarios import app_reset_failures

    terms = terminations({"old-a": ("10.88.0.5", 10.0, 10.02)})
    flows = flow_log({33302: [(1.0, "10.88.0.5")]})
    ws = {
        "kind": "ws",
        "event": "end",
        "t_open": 13.2,
        "t": 13.21,
        "end_kind": "connect",
        "detail": "refused",
        "abnormal": True,
        "sport": 33302,
        "pod": None,
    }
    assert app_reset_failures([ws], flows, terms, pre_stop_seconds=3.0) == [ws]
    assert (
        app_reset_failures([{**ws, "detail": "HTTP 503", "end_kind": "handshake"}], flows, terms, 3.0) == []
    )


def test_kernel_counters_keep_what_moved_and_name_the_drops() -> None:
    from bench.kernel import Counters, drop_signs, mib

    before = Counters(
        {"conntrack.insert_failed": 3, "TcpExt.TCPSynRetrans": 10, "veth.tx_dropped": 5, "x": 1}
    )
    after = Counters({"conntrack.insert_failed": 4, "TcpExt.TCPSynRetrans": 12, "veth.tx_dropped": 2, "x": 1})
    delta = before.delta(after)
    assert delta == {
        "TcpExt.TCPSynRetrans": 2,
        "conntrack.insert_failed": 1,
    }  # a veth that went away is no drop
    assert drop_signs(delta) == {"conntrack.insert_failed": 1, "TcpExt.TCPSynRetrans": 2}
    counters = mib()  # this machine's own MIB: the TCP counters are there
    assert "TcpExt.ListenDrops" in counters and "Tcp.ActiveOpens" in counters


def test_failure_notes_give_the_evidence_of_each_failed_request() -> None:
    from bench.run import Result, failure_notes

    failure = {
        "t": 34.64,
        "mode": "new",
        "outcome": "connect_timeout",
        "sport": 38834,
        "pod_ip": None,
        "pod": None,
        "conntrack_now": [],
    }
    traced = {**failure, "outcome": "refused", "pod_ip": "10.88.1.5", "pod": "web-x"}
    runs = [
        Result(
            "zdr-canary", "", run=7, failure_pods=[failure, traced], kernel={"conntrack.insert_failed": 1}
        ),
        Result("deployment", "", run=1, failure_pods=[failure]),
    ]
    notes = failure_notes(runs)
    assert notes == [
        "zdr-canary #7: connect_timeout (new) at 34.64s, client port 38834, no flow recorded; conntrack now: "
        "no entry for that port; kernel drop counters in the run: conntrack.insert_failed +1",
        "zdr-canary #7: refused (new) at 34.64s, client port 38834, pod web-x; kernel drop counters in the "
        "run: conntrack.insert_failed +1",
    ]


def test_pod_start_time_counts_overlapping_pods_once() -> None:
    from bench.scenarios import PodTerminations

    terms = PodTerminations.__new__(PodTerminations)
    terms._lock = __import__("threading").Lock()
    terms.created = {"a": 1.0, "b": 1.5, "c": 6.0, "old": 0.5, "late": 30.0, "never": 2.0}
    terms.first_ready = {"a": 3.0, "b": 4.0, "c": 7.0, "old": 1.2, "late": 31.0}
    # a and b overlap (1.0-4.0), c adds 1.0; "old" began before the change, "late" after the end.
    assert terms.start_seconds(0.9, 20.0) == 4.0
    terms.counts = [(0.0, 4), (1.0, 5), (2.0, 6), (3.0, 5), (25.0, 12)]
    assert terms.peak_pods(0.5, 20.0) == 6  # what existed at the start counts; 12 came after the end
    assert terms.peak_pods(3.5, 20.0) == 5


def test_the_bench_says_where_the_peer_does_better() -> None:
    from bench.run import Result, cost_table, peer_wins

    def run(name: str, controller: str, rollout: float, failed: int, pods: int) -> Result:
        return Result(
            name,
            "",
            valid=True,
            controller=controller,
            rollout_s=rollout,
            failed_by_mode={"new": failed, "keepalive": 0, "ws": 0},
            peak_pods=pods,
            new_pods=4,
            start_s=1.0,
            overhead_s=rollout - 1.0,
            reactions_s=[0.1, 0.2],
        )

    results = [run("zdr-bluegreen", "zdr", 3.0, 0, 8), run("argo-bluegreen", "argo", 2.0, 5, 8)]
    wins = peer_wins(results)
    assert wins == [
        "argo-bluegreen beats zdr-bluegreen on rollout s: 2 against 3 (medians)",
        "argo-bluegreen beats zdr-bluegreen on overhead s: 1 against 2 (medians)",
    ]
    table = cost_table(results)
    assert "| zdr-bluegreen | zdr | 3.0 | 1.0 | 2.0 | 100 / 200 | 8 | 4 |" in table
