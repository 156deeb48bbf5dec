"""`make bench`: the same app, replicas and traffic through five ways of rolling it out.

Scenarios (each in its own namespace ``zdr-bench-<scenario>``):

- ``deployment``: a plain Deployment, no readiness probe, no preStop;
- ``deployment-probes``: a Deployment with a readiness probe and a preStop sleep;
- ``zdr-rolling``, ``zdr-bluegreen``, ``zdr-canary``: a ZeroDowntimeRollout of each strategy.

For each: the app runs at v1; HTTP probers in both modes (new connection per request, and
keep-alive) and WebSocket clients start; the template changes to v2 and the rollout runs to
completion; two seconds later the change is undone (``kubectl rollout undo`` for Deployments,
the previous template re-applied for zdr) and the rollback runs until only v1 pods remain.

Measured: requests sent and failed over the whole run, p50/p99 latency during the rollout,
rollout duration (change to the controller reporting completion), abnormal WebSocket ends,
rollback time (from the undo request to the last response not from v1, for new connections and
for all connections), and the operator's reaction latency (a gate becoming true, i.e. one more
pod of the rollout listed as a ready endpoint, to the operator's next Deployment or Service
write, both seen through watches).

Writes ``bench/results/latest.json``, ``latest.md`` and ``timeline.png``, and prints the table.
The operator is started here (log: ``.cluster/logs/zdr-bench-operator.log``) and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.prober import MODES, Record, Summary, Traffic, percentile, summarize, timeline
from bench.scenarios import (
    LOGS,
    ROOT,
    App,
    DeploymentTarget,
    EventRecorder,
    Kube,
    OperatorProcess,
    Target,
    ZdrTarget,
    last_other,
    other_operators,
    wait_serving,
)

RESULTS = ROOT / "bench" / "results"
NS_PREFIX = "zdr-bench-"
SCENARIOS = ("deployment", "deployment-probes", "zdr-rolling", "zdr-bluegreen", "zdr-canary")
CANARY_STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
    {"pause": {"duration": "2s"}},
]


@dataclass
class Config:
    rate: float = 200.0
    ws_clients: int = 20
    replicas: int = 4
    drain: str = "0s"
    pre_stop_seconds: int = 3
    hold_seconds: float = 2.0
    """Traffic kept before the undo and after the rollback."""
    scale_down_delay: int = 10
    """zdr keeps the previous revision warm this long after a rollout (fast undo)."""
    rollout_timeout: float = 180.0

    @property
    def app(self) -> App:
        return App(replicas=self.replicas, drain=self.drain, pre_stop_seconds=self.pre_stop_seconds)


@dataclass
class Result:
    scenario: str
    description: str
    sent: int = 0
    failed: int = 0
    failure_pct: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    failed_in_rollout: int = 0
    failed_in_rollback: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    rollout_s: float | None = None
    ws_connections: int = 0
    ws_abnormal: int = 0
    ws_close_codes: dict[str, int] = field(default_factory=dict)
    rollback_new_conn_s: float | None = None
    rollback_all_s: float | None = None
    rollback_complete_s: float | None = None
    new_share_before_undo: dict[str, float | None] = field(default_factory=dict)
    """Per mode: share of the responses in the second before the undo that came from v2."""
    reactions_s: list[float] = field(default_factory=list)
    reactions_skipped: dict[str, int] = field(default_factory=dict)
    prober_rate: dict[str, float] = field(default_factory=dict)
    prober_lag_p99_ms: dict[str, float | None] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    timeline_by_mode: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cluster_events: list[tuple[float, str, str]] = field(default_factory=list)
    """(seconds, gate | write, what) seen by the watches."""
    error: str | None = None


def make_target(kube: Kube, scenario: str, cfg: Config) -> tuple[Target, str]:
    ns, app = NS_PREFIX + scenario, cfg.app
    if scenario == "deployment":
        return DeploymentTarget(kube, ns, "web", app, readiness=False, pre_stop=None), (
            "Deployment, no readiness probe, no preStop"
        )
    if scenario == "deployment-probes":
        return DeploymentTarget(kube, ns, "web", app, readiness=True, pre_stop=cfg.pre_stop_seconds), (
            f"Deployment, readiness probe, preStop sleep {cfg.pre_stop_seconds}s"
        )
    delay = cfg.scale_down_delay
    if scenario == "zdr-rolling":
        return ZdrTarget(kube, ns, "web", app, "RollingUpdate", scale_down_delay=delay), (
            f"zdr RollingUpdate, maxSurge 1, maxUnavailable 0, scaleDownDelay {delay}s"
        )
    if scenario == "zdr-bluegreen":
        return ZdrTarget(kube, ns, "web", app, "BlueGreen", auto_promotion=True, scale_down_delay=delay), (
            f"zdr BlueGreen, autoPromotion, scaleDownDelay {delay}s"
        )
    if scenario == "zdr-canary":
        return ZdrTarget(kube, ns, "web", app, "Canary", canary_steps=CANARY_STEPS, scale_down_delay=delay), (
            f"zdr Canary, 25% / pause 2s / 50% / pause 2s, maxSurge 1, scaleDownDelay {delay}s"
        )
    raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")


def say(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


def run_scenario(kube: Kube, scenario: str, cfg: Config, out_dir: Path) -> tuple[Result, list[Record]]:
    target, description = make_target(kube, scenario, cfg)
    result = Result(scenario=scenario, description=description)
    say(f"{scenario}: {description}")
    kube.create_namespace(target.ns, replace=True)
    try:
        target.create("v1")
        target.wait_complete("v1", timeout=cfg.rollout_timeout)
        ip = kube.cluster_ip(target.ns, target.service)
        wait_serving(ip, "v1")
        with Traffic(
            ip, out_dir / scenario, rate=cfg.rate, ws_clients=cfg.ws_clients, duration=600
        ) as traffic:
            recorder = EventRecorder(kube, target.ns, traffic.epoch, target.name)
            recorder.start()
            recorder.wait_primed()
            try:
                traffic.start()
                marks = result.marks
                marks["change"] = traffic.now()
                target.set_version("v2")
                marks["complete"] = target.wait_reported(timeout=cfg.rollout_timeout) - traffic.epoch
                say(f"{scenario}: v2 complete after {marks['complete'] - marks['change']:.1f}s")
                time.sleep(max(0.0, marks["complete"] + cfg.hold_seconds - traffic.now()))
                marks["undo"] = traffic.now()
                target.undo("v1")
                marks["undo_complete"] = (
                    target.wait_complete("v1", timeout=cfg.rollout_timeout) - traffic.epoch
                )
                marks["undo_clean"] = traffic.now()
                say(f"{scenario}: back on v1 after {marks['undo_clean'] - marks['undo']:.1f}s")
                time.sleep(cfg.hold_seconds)
                records = traffic.stop()
            finally:
                recorder.stop()
        measure(result, records, recorder)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        say(f"{scenario}: FAILED: {result.error}")
        records = []
    finally:
        kube.delete_namespace(target.ns)
    return result, records


def measure(result: Result, records: list[Record], recorder: EventRecorder) -> None:
    m = result.marks
    whole: Summary = summarize(records, bucket=0.5)
    rollout = summarize(records, window=(m["change"], m["undo"]))
    rollback = summarize(records, window=(m["undo"], float("inf")))
    result.sent, result.failed, result.failure_pct = whole.sent, whole.failed, whole.failure_pct
    result.errors = whole.errors
    result.failed_in_rollout, result.failed_in_rollback = rollout.failed, rollback.failed
    result.p50_ms, result.p99_ms = rollout.p50_ms, rollout.p99_ms
    result.rollout_s = round(m["complete"] - m["change"], 2)
    result.ws_connections, result.ws_abnormal = whole.ws_connections, whole.ws_abnormal
    result.ws_close_codes = whole.ws_close_codes
    new_conn = last_other(records, "v1", m["undo"], mode="close")
    every = last_other(records, "v1", m["undo"])
    result.rollback_new_conn_s = round(new_conn - m["undo"], 2) if new_conn is not None else 0.0
    result.rollback_all_s = round(every - m["undo"], 2) if every is not None else 0.0
    result.rollback_complete_s = round(m["undo_complete"] - m["undo"], 2)
    for mode in MODES:
        last = [r for r in records if r.get("mode") == mode and m["undo"] - 1.0 <= r["t_send"] < m["undo"]]
        answered = [r for r in last if not r.get("error")]
        share = sum(1 for r in answered if r.get("version") == "v2") / len(answered) if answered else None
        result.new_share_before_undo[mode] = None if share is None else round(share, 3)
    if result.scenario.startswith("zdr-"):
        samples, skipped = recorder.reactions()
        result.reactions_s = [r[0] for r in samples]
        result.reactions_skipped = skipped
    for mode, ms in whole.modes.items():
        result.prober_rate[mode] = round(ms.rate, 1)
        result.prober_lag_p99_ms[mode] = ms.lag_p99_ms
    result.timeline = whole.timeline[1:-1]  # the first and last buckets are partial
    for mode in MODES:
        result.timeline_by_mode[mode] = timeline([r for r in records if r.get("mode") == mode], 0.5)[1:-1]
    result.cluster_events = [(o.t, o.kind, o.what) for o in recorder.observations]


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def table(results: Sequence[Result]) -> str:
    head = (
        "| scenario | requests | failed | failed % | p50 ms | p99 ms | rollout s | WS abnormal / conns "
        "| rollback s (new conns) | rollback s (all conns) | v2 share before undo (new / kept-alive) | errors |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in results:
        if r.error:
            lines.append(f"| {r.scenario} | run failed: {r.error[:80]} |" + " |" * 10)
            continue
        errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items(), key=lambda kv: -kv[1])) or "none"
        lines.append(
            f"| {r.scenario} | {r.sent} | {r.failed} | {r.failure_pct:.2f} | {_num(r.p50_ms)} | {_num(r.p99_ms)} "
            f"| {_num(r.rollout_s)} | {r.ws_abnormal} / {r.ws_connections} | {_num(r.rollback_new_conn_s)} "
            f"| {_num(r.rollback_all_s)} | {_pct(r.new_share_before_undo.get('close'))} / "
            f"{_pct(r.new_share_before_undo.get('keepalive'))} | {errors} |"
        )
    return "\n".join(lines)


def reaction_stats(results: Sequence[Result]) -> dict[str, Any]:
    samples = [s for r in results for s in r.reactions_s]
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    skipped: dict[str, int] = {}
    for r in results:
        for k, v in r.reactions_skipped.items():
            skipped[k] = skipped.get(k, 0) + v
    return {
        "samples": len(samples),
        "left_out": skipped,
        "p50_ms": None if p50 is None else round(p50 * 1000, 1),
        "p99_ms": None if p99 is None else round(p99 * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1) if samples else None,
    }


def markdown(results: Sequence[Result], cfg: Config, reaction: dict[str, Any], when: str) -> str:
    return (
        f"# zdr benchmark ({when})\n\n"
        f"Test app, {cfg.replicas} replicas, DRAIN={cfg.drain} (the app's own drain after SIGTERM), "
        f"{cfg.rate:.0f} requests/s on new connections + {cfg.rate:.0f} requests/s over keep-alive "
        f"connections + {cfg.ws_clients} WebSocket clients, from v1 to v2 and back (undo {cfg.hold_seconds:.0f}s "
        "after the rollout completed).\n"
        "Requests and failures count the whole run (rollout and rollback); latency percentiles cover the rollout; "
        "rollout s: change to the controller reporting completion; rollback s: undo request to the last "
        "response not from v1; v2 share before undo: responses from v2 in the second before the undo, on new "
        "connections and on kept-alive connections (a kept-alive connection stays on its pod while that pod "
        "runs, also after the pod left the Service).\n\n"
        f"{table(results)}\n\n"
        f"Operator reaction latency (a new pod listed as a ready endpoint -> the operator's next Deployment or "
        f"Service write, seen by watches): p50 {_num(reaction['p50_ms'])} ms, p99 {_num(reaction['p99_ms'])} ms "
        f"over {reaction['samples']} gates (left out: {reaction['left_out'].get('timer', 0)} writes more than 5 s "
        f"after a gate, i.e. timed waits; {reaction['left_out'].get('same_pass', 0)} writes of the same reconcile "
        "pass as the Service write that caused the gate).\n"
    )


def plot(results: Sequence[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if not r.error]
    if not ok:
        return
    fig, axes = plt.subplots(len(ok), 1, figsize=(11, 2.4 * len(ok)), sharex=True, squeeze=False)
    colors = {"v1": "#1f77b4", "v2": "#2ca02c"}
    styles = {"close": ("-", "new conns"), "keepalive": (":", "kept-alive")}
    for ax, r in zip(axes[:, 0], ok, strict=True):
        t0 = r.marks["change"]
        ts = [row["t"] - t0 for row in r.timeline]
        bucket = (r.timeline[1]["t"] - r.timeline[0]["t"]) if len(r.timeline) > 1 else 1.0
        for mode, rows in (r.timeline_by_mode or {"all": r.timeline}).items():
            style, label = styles.get(mode, ("-", "all"))
            for version in ("v1", "v2"):
                ax.plot(
                    [row["t"] - t0 for row in rows],
                    [row["versions"].get(version, 0) / bucket for row in rows],
                    label=f"{version} {label}",
                    color=colors[version],
                    ls=style,
                    lw=1.4,
                )
        errs = [sum(row["errors"].values()) / bucket for row in r.timeline]
        ax.bar(ts, errs, width=bucket, align="edge", color="#d62728", alpha=0.8, label="errors/s")
        for key, style in (("change", "-"), ("complete", "--"), ("undo", "-"), ("undo_complete", "--")):
            if key in r.marks:
                ax.axvline(r.marks[key] - t0, color="k", ls=style, lw=0.8, alpha=0.6)
        ax.set_title(
            f"{r.scenario}: {r.failed} failed of {r.sent}; rollout {_num(r.rollout_s)} s, "
            f"rollback {_num(r.rollback_new_conn_s)} s (new conns)",
            fontsize=9,
            loc="left",
        )
        ax.set_ylabel("responses/s", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper right", ncol=5)
    axes[-1, 0].set_xlabel("seconds since the change to v2 (solid: change / undo, dashed: reported complete)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    ap.add_argument("--runs", type=int, default=1, help="repetitions of each scenario")
    ap.add_argument("--rate", type=float, default=Config.rate)
    ap.add_argument("--ws-clients", type=int, default=Config.ws_clients)
    ap.add_argument("--replicas", type=int, default=Config.replicas)
    ap.add_argument("--drain", default=Config.drain, help="the app's DRAIN after SIGTERM (e.g. 0s, 2s)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in scenarios:
        if s not in SCENARIOS:
            print(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
            return 2
    if not 1 <= args.runs <= 20:
        print("--runs must be between 1 and 20", file=sys.stderr)
        return 2
    cfg = Config(rate=args.rate, ws_clients=args.ws_clients, replicas=args.replicas, drain=args.drain)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "raw"
    kube = Kube()
    kube.ensure_crd()
    others = other_operators(NS_PREFIX + scenarios[0])
    if others:
        say(
            "warning: other zdr operators are running and will act on the bench's rollouts too:\n  "
            + "\n  ".join(others)
        )
    log = LOGS / "zdr-bench-operator.log"
    operator = OperatorProcess(log, namespaces=[NS_PREFIX + "*"])
    results: list[Result] = []
    started = time.monotonic()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with operator:
        say(f"operator started (log: {log})")
        for n in range(args.runs):
            for scenario in scenarios:
                result, _ = run_scenario(kube, scenario, cfg, raw / f"run{n + 1}")
                if args.runs > 1:
                    result.scenario = f"{scenario} #{n + 1}"
                results.append(result)
    reaction = reaction_stats(results)
    doc = {
        "when": when,
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "config": asdict(cfg),
        "modes": list(MODES),
        "duration_s": round(time.monotonic() - started, 1),
        "other_operators": others,
        "operator_log": str(log),
        "operator_reaction": reaction,
        "scenarios": [asdict(r) for r in results],
    }
    (out / "latest.json").write_text(json.dumps(doc, indent=1))
    md = markdown(results, cfg, reaction, when)
    (out / "latest.md").write_text(md)
    plot(results, out / "timeline.png")
    print()
    print(md)
    print(f"written: {out / 'latest.json'}, {out / 'latest.md'}, {out / 'timeline.png'}")
    print(f"operator log: {log}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
