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
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.argo import ArgoController, ArgoStrategy, ArgoTarget
from bench.flows import FlowLog
from bench.kernel import Counters, drop_signs
from bench.load import BusyLoad
from bench.prober import (
    MODES,
    Record,
    Summary,
    Traffic,
    failed,
    http_records,
    is_failure,
    last_on_other_version,
    percentile,
    summarize,
    timeline,
)
from bench.scenarios import (
    LOGS,
    ROOT,
    App,
    DeploymentTarget,
    EventRecorder,
    Kube,
    OperatorProcess,
    PodTerminations,
    Strategy,
    Target,
    ZdrTarget,
    app_reset_failures,
    other_operators,
    propagation_lags,
    wait_serving,
)
from bench.usage import Usage, find_pid
from bench.vegeta import VegetaAttack

RESULTS = ROOT / "bench" / "results"
NS_PREFIX = "zdr-bench-"
CANARY_STEPS = [
    {"setWeight": 25},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
    {"pause": {}},
]
SURGE_STEPS = [{"setWeight": 50}, {"pause": {}}]


@dataclass
class Config:
    rate: float = 200.0
    """Requests per second per HTTP mode (new connections, kept-alive)."""
    ws_clients: int = 20
    replicas: int = 4
    shutdown: str = "abrupt"
    """The app's SHUTDOWN: ``abrupt`` resets every connection at SIGTERM (no drain of its own)."""
    drain: str = "0s"
    pre_stop_seconds: int = 3
    hold_seconds: float = 2.0
    """Traffic kept after the rollback, and at least this long before the undo."""
    scale_down_delay: int = 10
    """zdr keeps the previous revision warm this long after a rollout (fast undo)."""
    rollout_timeout: float = 180.0
    load: int = 0
    """Busy processes spinning beside the scenario (bench.load)."""
    vegeta_share: float = 0.25
    """vegeta's rate on new connections, as a share of ``rate`` (0: off)."""

    @property
    def before_undo(self) -> float:
        """Seconds from the rollout's completion to the undo."""
        return max(self.hold_seconds, self.pre_stop_seconds + 4.0)

    @property
    def app(self) -> App:
        return App(
            replicas=self.replicas,
            drain=self.drain,
            shutdown=self.shutdown,
            pre_stop_seconds=self.pre_stop_seconds,
        )


@dataclass
class Result:
    scenario: str
    description: str
    run: int = 1
    valid: bool = False
    invalid_reasons: list[str] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    failure_pct: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    failed_by_mode: dict[str, int] = field(default_factory=dict)
    app_reset: dict[str, int] = field(default_factory=dict)
    """Per mode (and ``ws``): failures the abrupt app caused by resetting connections at its own
    SIGTERM on a pod already out of the Service (bench.scenarios.explained_by_app_reset): cut in
    flight, or a later connection the kernel sent after such a reset; counted in ``failed_by_mode``."""
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
    """Undo to the last moment any connection (new, kept-alive, WebSocket) was on another version than v1."""
    promotion_all_s: float | None = None
    """Completion of v2 to the last moment any connection was on another version than v2 (None: still
    one at the undo)."""
    rollback_complete_s: float | None = None
    new_share_before_undo: dict[str, float | None] = field(default_factory=dict)
    """Per mode: share of the responses in the second before the undo that came from v2."""
    flow_events_lost: bool = False
    """conntrack dropped events in this run: a failure without a recorded flow cannot be traced."""
    propagation_s: float | None = None
    """Longest time from a retired pod leaving the Service to the last new connection still sent to it."""
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    vegeta: dict[str, Any] | None = None
    """vegeta's own report on new connections beside the prober (requests, failed, status codes)."""
    failure_pods: list[dict[str, Any]] = field(default_factory=list)
    """For each failed request: the pod its connection went to (conntrack) and that pod's history."""
    reactions_s: list[float] = field(default_factory=list)
    reactions_skipped: dict[str, int] = field(default_factory=dict)
    prober_lag_p99_ms: dict[str, float | None] = field(default_factory=dict)
    prober_min_window: dict[str, int | None] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    timeline_by_mode: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cluster_events: list[tuple[float, str, str]] = field(default_factory=list)
    """(seconds, gate | write, what) seen by the watches."""
    kernel: dict[str, int] = field(default_factory=dict)
    """Kernel counters (bench.kernel) that moved while the traffic ran."""
    controller: str = ""
    """Who rolled it out: zdr, argo, or kube (the Deployment controller)."""
    peak_pods: int | None = None
    """The most pods that existed at once from the change to v2 to its completion (terminating ones
    included; the warm standby zdr starts after completion is not in it)."""
    new_pods: int | None = None
    """Pods created from the change to v2 to its completion."""
    start_s: float | None = None
    """From the change to completion, how long new pods were on their way from creation to ready
    endpoint (overlaps counted once): the part of the rollout no controller can save."""
    overhead_s: float | None = None
    """rollout_s - start_s: time the controller added on top of starting pods."""
    controller_cpu_s: float | None = None
    controller_peak_rss_mib: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    target: Callable[[Kube, str, Config], Target]
    during: Callable[[Target, Traffic, dict[str, float]], None] | None = None
    """Run after the change to v2 (e.g. a promote at a pause)."""

    @property
    def controller(self) -> str:
        return self.name.split("-", 1)[0] if self.name.startswith(("zdr-", "argo-")) else "kube"


def _promote_at_pause(step: int) -> Callable[[Target, Traffic, dict[str, float]], None]:
    def during(target: Target, traffic: Traffic, marks: dict[str, float]) -> None:
        assert isinstance(target, ZdrTarget | ArgoTarget)
        target.wait_phase("Paused", step=step, timeout=120)
        marks["paused"] = traffic.now()
        time.sleep(1.0)
        marks["promote"] = traffic.now()
        target.promote()

    return during


def _zdr(
    strategy: Strategy, *, replicas: int | None = None, **params: Any
) -> Callable[[Kube, str, Config], Target]:
    """A zdr rollout of the scenario's app (``replicas`` overrides its size)."""

    def target(kube: Kube, ns: str, cfg: Config) -> Target:
        app = cfg.app if replicas is None else replace(cfg.app, replicas=replicas)
        return ZdrTarget(kube, ns, "web", app, strategy, scale_down_delay=cfg.scale_down_delay, **params)

    return target


def _argo(
    strategy: ArgoStrategy, *, pre_stop: bool = True, replicas: int | None = None, **params: Any
) -> Callable[[Kube, str, Config], Target]:
    """An Argo Rollout of the scenario's app, with zdr's preStop sleep written into the template
    by hand (``pre_stop=False``: none, as a user who forgets it has)."""

    def target(kube: Kube, ns: str, cfg: Config) -> Target:
        app = cfg.app if replicas is None else replace(cfg.app, replicas=replicas)
        stop = cfg.pre_stop_seconds if pre_stop else None
        extra = {"scale_down_delay": cfg.scale_down_delay} if strategy == "BlueGreen" else {}
        return ArgoTarget(kube, ns, "web", app, strategy, pre_stop=stop, **extra, **params)

    return target


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "deployment",
            "the control: Deployment, no readiness probe, no preStop, always the abrupt app",
            lambda kube, ns, cfg: DeploymentTarget(
                kube,
                ns,
                "web",
                replace(cfg.app, shutdown="abrupt", drain="0s"),
                readiness=False,
                pre_stop=None,
            ),
        ),
        Scenario(
            "deployment-probes",
            "Deployment, readiness probe, preStop sleep = zdr's",
            lambda kube, ns, cfg: DeploymentTarget(
                kube, ns, "web", cfg.app, readiness=True, pre_stop=cfg.pre_stop_seconds
            ),
        ),
        Scenario("zdr-rolling", "zdr RollingUpdate, maxSurge 1, maxUnavailable 0", _zdr("RollingUpdate")),
        Scenario("zdr-bluegreen", "zdr BlueGreen, autoPromotion", _zdr("BlueGreen", auto_promotion=True)),
        Scenario(
            "zdr-canary",
            "zdr Canary, 25% / pause 2s / 50% / pause until promote (after 1 s), maxSurge 1",
            _zdr("Canary", canary_steps=CANARY_STEPS),
            _promote_at_pause(3),
        ),
        Scenario(
            "argo-bluegreen",
            "Argo Rollouts BlueGreen, activeService + previewService, autoPromotionEnabled, preStop written by hand",
            _argo("BlueGreen"),
        ),
        Scenario(
            "argo-canary",
            "Argo Rollouts Canary without a traffic router, the same steps, maxSurge 1, maxUnavailable 0",
            _argo("Canary", canary_steps=CANARY_STEPS),
            _promote_at_pause(3),
        ),
        Scenario(
            "zdr-bluegreen-no-prestop",
            "zdr BlueGreen with no drain settings: what a user who writes none gets (zdr's default drain)",
            _zdr("BlueGreen", auto_promotion=True, default_drain=True),
        ),
        Scenario(
            "argo-bluegreen-no-prestop",
            "Argo Rollouts BlueGreen with no preStop in the template: what a user who forgets it gets",
            _argo("BlueGreen", pre_stop=False),
        ),
        Scenario(
            "zdr-canary-surge",
            "zdr Canary, 8 replicas, setWeight 50 then pause until promote, maxSurge 1 (argo-rollouts #3284)",
            _zdr("Canary", replicas=8, canary_steps=SURGE_STEPS),
            _promote_at_pause(1),
        ),
        Scenario(
            "argo-canary-surge",
            "Argo Rollouts Canary, 8 replicas, setWeight 50 then pause until promote, maxSurge 1 (#3284)",
            _argo("Canary", replicas=8, canary_steps=SURGE_STEPS),
            _promote_at_pause(1),
        ),
    ]
}


def say(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", flush=True)


def run_scenario(
    kube: Kube,
    scenario: Scenario,
    cfg: Config,
    out_dir: Path,
    run: int,
    pids: dict[str, int | None] | None = None,
) -> tuple[Result, list[Record]]:
    """One run of ``scenario``; ``pids`` are the controllers' processes (zdr, argo, kube) whose CPU
    and memory the run records."""
    ns = NS_PREFIX + scenario.name
    target = scenario.target(kube, ns, cfg)
    result = Result(
        scenario=scenario.name, description=scenario.description, run=run, controller=scenario.controller
    )
    usage = Usage((pids or {}).get(scenario.controller))
    say(f"{scenario.name} #{run}: {scenario.description}" + (f", {cfg.load} busy loops" if cfg.load else ""))
    kube.create_namespace(target.ns, replace=True)
    records: list[Record] = []
    try:
        target.create("v1")
        target.wait_complete("v1", timeout=cfg.rollout_timeout)
        ip = kube.cluster_ip(target.ns, target.service)
        wait_serving(ip, "v1")
        out_dir.mkdir(parents=True, exist_ok=True)
        with (
            BusyLoad(cfg.load, seconds=900) if cfg.load else contextlib.nullcontext(),
            Traffic(ip, out_dir, rate=cfg.rate, ws_clients=cfg.ws_clients, duration=600) as traffic,
            FlowLog(ip, 80, out_dir / "flows.log", traffic.epoch) as flows,
            VegetaAttack() as vegeta,
        ):
            recorder = EventRecorder(
                kube, target.ns, traffic.epoch, target.name, replicasets=scenario.controller == "argo"
            )
            terms = PodTerminations(kube, target.ns, traffic.epoch, service=target.service)
            recorder.start()
            terms.start()
            recorder.wait_primed()
            counters = Counters.read()
            usage.start()
            try:
                traffic.start()
                vegeta_rate = round(cfg.rate * cfg.vegeta_share)
                if vegeta_rate > 0:
                    vegeta.start(f"http://{ip}:80/", vegeta_rate, 600, out_dir / "vegeta")
                marks = result.marks
                marks["change"] = traffic.now()
                target.set_version("v2")
                if scenario.during is not None:
                    scenario.during(target, traffic, marks)
                marks["complete"] = target.wait_reported(timeout=cfg.rollout_timeout) - traffic.epoch
                say(f"{scenario.name}: v2 complete after {marks['complete'] - marks['change']:.1f}s")
                # Long enough after the completion to see every connection leave v1 (its pods'
                # preStop plus the app's shutdown), yet within the warm window.
                time.sleep(max(0.0, marks["complete"] + cfg.before_undo - traffic.now()))
                marks["undo"] = traffic.now()
                target.undo("v1")
                marks["undo_complete"] = (
                    target.wait_complete("v1", timeout=cfg.rollout_timeout) - traffic.epoch
                )
                marks["undo_clean"] = traffic.now()
                say(f"{scenario.name}: back on v1 after {marks['undo_clean'] - marks['undo']:.1f}s")
                time.sleep(cfg.hold_seconds)
                if vegeta_rate > 0:
                    result.vegeta = vegeta.stop().as_dict()
                records = traffic.stop()
            finally:
                recorder.stop()
                terms.stop()
                usage.stop()
                result.kernel = counters.delta(Counters.read())
                result.controller_cpu_s, result.controller_peak_rss_mib = usage.cpu_s, usage.peak_rss_mib
        measure(result, records, recorder, terms, flows, target.pre_stop_seconds)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        say(f"{scenario.name}: FAILED: {result.error}")
    finally:
        kube.delete_namespace(target.ns)
    return result, records


def rollback_seconds(records: Sequence[Record], undo: float, mode: str | None = None) -> float | None:
    """Seconds from the undo to the last response from another version than v1 on HTTP connections
    (of ``mode``, or both), or None (not measured) when the responses cannot show it: none came
    after the undo, or no v1 response came after the last other one. Failures are counted apart."""
    answers = [r for r in http_records(records) if mode in (None, r["mode"])]
    if not any(not is_failure(r) and float(r["t_send"]) >= undo for r in answers):
        return None
    return last_on_other_version(answers, "v1", undo)


def measure(
    result: Result,
    records: list[Record],
    recorder: EventRecorder,
    terms: PodTerminations,
    flows: FlowLog,
    pre_stop: float,
) -> None:
    m = result.marks
    whole: Summary = summarize(records, bucket=0.5)
    rollout = summarize(records, window=(m["change"], m["undo"]))
    rollback = summarize(records, window=(m["undo"], float("inf")))
    result.valid, result.invalid_reasons = whole.valid, whole.validity.reasons
    result.sent, result.failed, result.failure_pct = whole.sent, whole.failed, whole.failure_pct
    result.errors = whole.errors
    result.failed_by_mode = {mode: ms.failed for mode, ms in whole.modes.items()}
    result.failed_by_mode["ws"] = whole.ws_abnormal
    bad = failed(records)
    result.app_reset = {mode: 0 for mode in [*MODES, "ws"]}
    for r in app_reset_failures(records, flows, terms, pre_stop):
        result.app_reset[str(r.get("mode") or "ws")] += 1
    for r in bad:
        if r.get("kind") == "http":
            pod_ip = flows.pod_ip(r.get("sport"), float(r["t_send"]))
            pod = r.get("pod") or terms.pod_ips.get(pod_ip or "")
            result.failure_pods.append(
                {
                    "t": r["t_send"],
                    "mode": r["mode"],
                    "outcome": r.get("outcome"),
                    "sport": r.get("sport"),
                    "pod_ip": pod_ip,
                    "pod": pod,
                    "terminating_at": terms.terminating.get(pod or ""),
                    "left_service_at": terms.left_service.get(pod or ""),
                    "fresh_translation": flows.began(r.get("sport"), float(r["t_send"])),
                    "previous_flow": flows.previous(r.get("sport"), float(r["t_send"])),
                    "conntrack_now": [] if pod_ip else flows.entries(r.get("sport")),
                }
            )
    result.flow_events_lost = flows.lost_events()
    lags = propagation_lags(flows, terms)
    result.propagation_s = max(lags.values()) if lags else None
    ips = {pod: ip for ip, pod in terms.pod_ips.items()}
    result.pods = {
        pod: {
            "ip": ips.get(pod),
            "terminating_at": terms.terminating.get(pod),
            "left_service_at": terms.last_left.get(pod),
            "propagation_s": lags.get(pod),
        }
        for pod in sorted(set(terms.terminating) | set(terms.last_left))
    }
    result.failed_in_rollout, result.failed_in_rollback = rollout.failed, rollback.failed
    result.p50_ms, result.p99_ms = rollout.p50_ms, rollout.p99_ms
    result.rollout_s = round(m["complete"] - m["change"], 2)
    result.ws_connections, result.ws_abnormal = whole.ws_connections, whole.ws_abnormal
    result.ws_close_codes = whole.ws_close_codes
    result.rollback_new_conn_s = rollback_seconds(records, m["undo"], "new")
    result.rollback_all_s = last_on_other_version(records, "v1", m["undo"])
    result.promotion_all_s = last_on_other_version(records, "v2", m["complete"], m["undo"])
    result.rollback_complete_s = round(m["undo_complete"] - m["undo"], 2)
    for mode in MODES:
        last = [r for r in records if r.get("mode") == mode and m["undo"] - 1.0 <= r["t_send"] < m["undo"]]
        answered = [r for r in last if not is_failure(r)]
        share = sum(1 for r in answered if r.get("version") == "v2") / len(answered) if answered else None
        result.new_share_before_undo[mode] = None if share is None else round(share, 3)
    result.peak_pods = terms.peak_pods(m["change"], m["complete"])
    result.new_pods = sum(1 for t in terms.created.values() if m["change"] <= t <= m["complete"])
    result.start_s = terms.start_seconds(m["change"], m["complete"])
    result.overhead_s = round(max(0.0, result.rollout_s - result.start_s), 2)
    if result.controller in ("zdr", "argo"):
        samples, skipped = recorder.reactions()
        result.reactions_s = [r[0] for r in samples]
        result.reactions_skipped = skipped
    for mode, ms in whole.modes.items():
        result.prober_lag_p99_ms[mode] = ms.lag_p99_ms
        result.prober_min_window[mode] = ms.min_window_rate
    result.timeline = whole.timeline[1:-1]  # the first and last buckets are partial
    for mode in MODES:
        result.timeline_by_mode[mode] = timeline([r for r in records if r.get("mode") == mode], 0.5)[1:-1]
    result.cluster_events = [(o.t, o.kind, o.what) for o in recorder.observations]


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def spread(values: Sequence[float | None], digits: int = 0) -> str:
    """``min / median / max`` of the measured values ("not measured" when none is)."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return "not measured"
    fmt = (lambda v: f"{v:.{digits}f}") if digits else (lambda v: f"{v:g}")
    lo, mid, hi = vals[0], statistics.median(vals), vals[-1]
    return fmt(lo) if lo == hi else f"{fmt(lo)} / {fmt(mid)} / {fmt(hi)}"


def moved(values: Sequence[float | None]) -> str:
    """``spread`` of "all connections moved" figures, saying in how many runs it was not seen."""
    missing = sum(1 for v in values if v is None)
    text = spread(values, 1)
    return text if not missing or text == "not measured" else f"{text} ({missing} not measured)"


def by_scenario(results: Sequence[Result]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for r in results:
        out.setdefault(r.scenario, []).append(r)
    return out


def table(results: Sequence[Result]) -> str:
    """One row per scenario over its runs: min / median / max of each figure, from valid runs only."""
    head = (
        "| scenario | valid runs | requests | failed: new conns (app's reset) | failed: kept-alive (app's reset) "
        "| WS abnormal (app's reset) | vegeta failed of sent (runs where it agrees with the prober) | rollout s "
        "| all conns on v2 after completion s | rollback s (new conns) | all conns on v1 after undo s "
        "| propagation s | errors |"
    )
    lines = [head, "|" + "---|" * 13]
    for name, runs in by_scenario(results).items():
        ok = [r for r in runs if not r.error and r.valid]
        if not ok:
            why = "; ".join(
                sorted({(r.error or "INVALID: " + "; ".join(r.invalid_reasons))[:120] for r in runs})
            )
            lines.append(f"| {name} | 0 / {len(runs)} | {why} |" + " |" * 10)
            continue
        errors: dict[str, int] = {}
        for r in ok:
            for k, v in r.errors.items():
                errors[k] = errors.get(k, 0) + v
        err = ", ".join(f"{k} {v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])) or "none"
        veg = [r.vegeta for r in ok if r.vegeta]
        sent = [v["requests"] for v in veg]
        vegeta = f"{spread([v['failed'] for v in veg])} of {min(sent)}-{max(sent)}" if veg else "off"
        if veg:
            vegeta += f" ({sum(agrees(r) for r in ok if r.vegeta)} of {len(veg)} agree)"
        lines.append(
            f"| {name} | {len(ok)} / {len(runs)} | {spread([r.sent for r in ok])} "
            f"| {spread([r.failed_by_mode.get('new') for r in ok])} ({spread([r.app_reset.get('new') for r in ok])}) "
            f"| {spread([r.failed_by_mode.get('keepalive') for r in ok])} ({spread([r.app_reset.get('keepalive') for r in ok])}) "
            f"| {spread([r.failed_by_mode.get('ws') for r in ok])} ({spread([r.app_reset.get('ws') for r in ok])}) "
            f"| {vegeta} | {spread([r.rollout_s for r in ok], 1)} | {moved([r.promotion_all_s for r in ok])} "
            f"| {spread([r.rollback_new_conn_s for r in ok], 1)} "
            f"| {moved([r.rollback_all_s for r in ok])} | {spread([r.propagation_s for r in ok], 2)} | {err} |"
        )
    return "\n".join(lines)


def cost_table(results: Sequence[Result]) -> str:
    """Per scenario: what the controller added and what it cost, from the same valid runs."""
    head = (
        "| scenario | controller | rollout s | pod start s | overhead s | reaction ms p50 / p99 | peak pods "
        "| new pods | controller CPU s | controller peak RSS MiB |"
    )
    lines = [head, "|" + "---|" * 10]
    for name, runs in by_scenario(results).items():
        ok = [r for r in runs if not r.error and r.valid]
        if not ok:
            continue
        samples = [x for r in ok for x in r.reactions_s]
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        reaction = "-" if p50 is None or p99 is None else f"{p50 * 1000:.0f} / {p99 * 1000:.0f}"
        lines.append(
            f"| {name} | {ok[0].controller} | {spread([r.rollout_s for r in ok], 1)} "
            f"| {spread([r.start_s for r in ok], 1)} | {spread([r.overhead_s for r in ok], 1)} | {reaction} "
            f"| {spread([r.peak_pods for r in ok])} | {spread([r.new_pods for r in ok])} "
            f"| {spread([r.controller_cpu_s for r in ok], 1)} | {spread([r.controller_peak_rss_mib for r in ok], 1)} |"
        )
    return "\n".join(lines)


PEERS = {
    "zdr-bluegreen": "argo-bluegreen",
    "zdr-canary": "argo-canary",
    "zdr-bluegreen-no-prestop": "argo-bluegreen-no-prestop",
    "zdr-canary-surge": "argo-canary-surge",
}
"""zdr's scenario -> Argo's, run with the same app, traffic and undo."""

LOWER_IS_BETTER: dict[str, Callable[[Result], float | None]] = {
    "failed requests on new connections": lambda r: r.failed_by_mode.get("new"),
    "failed requests on kept-alive connections": lambda r: r.failed_by_mode.get("keepalive"),
    "abnormal WebSocket ends": lambda r: r.failed_by_mode.get("ws"),
    "vegeta failures": lambda r: (r.vegeta or {}).get("failed"),
    "rollout s": lambda r: r.rollout_s,
    "overhead s": lambda r: r.overhead_s,
    "all conns on v2 after completion s": lambda r: r.promotion_all_s,
    "rollback s (new conns)": lambda r: r.rollback_new_conn_s,
    "all conns on v1 after undo s": lambda r: r.rollback_all_s,
    "reaction ms p50": lambda r: None if not r.reactions_s else statistics.median(r.reactions_s) * 1000,
    "peak pods": lambda r: r.peak_pods,
    "new pods": lambda r: r.new_pods,
    "controller CPU s": lambda r: r.controller_cpu_s,
    "controller peak RSS MiB": lambda r: r.controller_peak_rss_mib,
}


def peer_wins(results: Sequence[Result]) -> list[str]:
    """Every figure where Argo's median beats zdr's in the same run of the bench."""
    runs = by_scenario(results)
    wins = []
    for mine, theirs in PEERS.items():
        ours = [r for r in runs.get(mine, []) if r.valid and not r.error]
        peer = [r for r in runs.get(theirs, []) if r.valid and not r.error]
        if not ours or not peer:
            continue
        for label, get in LOWER_IS_BETTER.items():
            a = [v for v in map(get, ours) if v is not None]
            b = [v for v in map(get, peer) if v is not None]
            if a and b and statistics.median(b) < statistics.median(a):
                wins.append(
                    f"{theirs} beats {mine} on {label}: {statistics.median(b):g} against {statistics.median(a):g} (medians)"
                )
    return wins


def agrees(r: Result) -> bool:
    """The prober and vegeta tell the same story about new connections: both saw failures a
    controller caused (beyond the app's own resets), or neither did."""
    unexplained = (r.failed_by_mode.get("new") or 0) - (r.app_reset.get("new") or 0)
    return (int((r.vegeta or {}).get("failed") or 0) > 0) == (unexplained > 0)


def invalid_runs(results: Sequence[Result]) -> list[str]:
    return [
        f"{r.scenario} #{r.run}: " + (r.error or "INVALID: " + "; ".join(r.invalid_reasons))
        for r in results
        if r.error or not r.valid
    ]


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


SHUTDOWN_TEXT = {
    "abrupt": "at SIGTERM it closes its listener and resets every connection and WebSocket: no drain of its own",
    "graceful": (
        "at SIGTERM it turns readiness off, keeps serving for DRAIN, finishes the requests in flight, "
        "closes kept-alive connections and ends WebSockets with code 1001"
    ),
}


def failure_notes(results: Sequence[Result]) -> list[str]:
    """Each zdr run's failed requests with their evidence: the pod conntrack sent them to, or, for a
    request without a recorded flow, the entries conntrack holds for its client port now and the
    kernel's drop counters that moved during the run."""
    notes = []
    for r in results:
        if not r.scenario.startswith("zdr-") or not r.failure_pods:
            continue
        signs = ", ".join(f"{k} +{v}" for k, v in drop_signs(r.kernel).items()) or "none moved"
        for f in r.failure_pods:
            where = f"pod {f['pod'] or f['pod_ip']}" if f.get("pod_ip") else "no flow recorded"
            entries = f.get("conntrack_now")
            if not f.get("pod_ip"):
                where += "; conntrack now: " + ("; ".join(entries) if entries else "no entry for that port")
            notes.append(
                f"{r.scenario} #{r.run}: {f['outcome']} ({f['mode']}) at {f['t']:.2f}s, client port {f['sport']}, "
                f"{where}; kernel drop counters in the run: {signs}"
            )
    return notes


def markdown(results: Sequence[Result], cfg: Config, reaction: dict[str, Any], when: str, runs: int) -> str:
    bad = invalid_runs(results)
    notes = failure_notes(results)
    wins = peer_wins(results)
    has_peer = any(r.controller == "argo" for r in results)
    load = f"{cfg.load} busy loops beside it" if cfg.load else "no extra load"
    return (
        f"# zdr benchmark ({when})\n\n"
        f"{runs} run(s) of each scenario on {platform.machine()} with {os.cpu_count()} cores, {load}. "
        f"Test app SHUTDOWN={cfg.shutdown} DRAIN={cfg.drain} ({SHUTDOWN_TEXT.get(cfg.shutdown, 'as configured')}; the control always "
        f"runs the abrupt app), {cfg.replicas} replicas, preStop {cfg.pre_stop_seconds}s, "
        f"{cfg.rate:.0f} requests/s on new connections + {cfg.rate:.0f} requests/s over kept-alive "
        f"connections + {cfg.ws_clients} WebSocket clients (bench.prober: raw sockets, no retries), and vegeta "
        f"at {cfg.rate * cfg.vegeta_share:.0f} requests/s on new connections as an independent count; from v1 "
        f"to v2 and back (undo {cfg.before_undo:.0f}s after the rollout completed).\n\n"
        "Each cell is min / median / max over the valid runs (a run is valid when every prober kept >= 95 % of "
        "its rate in every 1 s window and its send-lag p99 stayed <= 250 ms, and every request and WebSocket "
        "client is accounted for). Failures count the whole run. *app's reset*: failures the abrupt app "
        "caused itself by resetting connections at its SIGTERM, on a pod that had already left the "
        "Service's endpoints: a request in flight on a kept-alive connection, a WebSocket held open, or "
        "a new connection from a client port whose last connection that pod reset (conntrack keeps a "
        "reset connection's translation for 10 s and a SYN from the same port reuses it). No controller "
        "can save those; the app must close its connections cleanly. rollout s: change to the controller "
        "reporting completion; all conns on v2 after completion s: from that report to the last moment any "
        "connection (new, kept-alive or WebSocket) was on v1; rollback s (new conns): undo request to the "
        "last response not from v1 on a new connection; all conns on v1 after undo s: to the last moment any "
        "connection was on v2 (not measured, -, when the records cannot show the end).\n\n"
        f"{table(results)}\n\n"
        "What each controller added and cost (pod start s: from the change to completion, how long new pods were on "
        "their way from creation to ready endpoint, overlaps once; overhead s: rollout s minus that; reaction: a pod "
        "becoming a ready endpoint -> the controller's next Deployment, ReplicaSet or Service write, seen by the same "
        "watches; peak pods: the most pods at once from the change to completion, terminating ones included; new "
        "pods: created in that time; CPU and peak RSS of the controller's process over the run):\n\n"
        f"{cost_table(results)}\n\n"
        + (
            (
                "Where Argo Rollouts does better than zdr in this run:\n"
                + "\n".join(f"- {w}" for w in wins)
                + "\n\n"
            )
            if wins
            else ("Argo Rollouts did better than zdr on no figure in this run.\n\n" if has_peer else "")
        )
        + (("Invalid or failed runs:\n" + "\n".join(f"- {b}" for b in bad) + "\n\n") if bad else "")
        + (
            (
                "Failed requests in zdr runs, with their evidence:\n"
                + "\n".join(f"- {n}" for n in notes)
                + "\n\n"
            )
            if notes
            else ""
        )
        + f"Operator reaction latency (a new pod listed as a ready endpoint -> the operator's next Deployment or "
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
    styles = {"new": ("-", "new conns"), "keepalive": (":", "kept-alive")}
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
            f"{r.scenario} ({r.controller or '?'}): {r.failed} failed of {r.sent}; rollout {_num(r.rollout_s)} s, "
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
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each scenario (default 3)")
    ap.add_argument("--load", type=int, default=0, help="busy processes spinning beside each run (e.g. 2)")
    ap.add_argument("--rate", type=float, default=Config.rate, help="requests/s per HTTP mode")
    ap.add_argument("--ws-clients", type=int, default=Config.ws_clients)
    ap.add_argument("--replicas", type=int, default=Config.replicas)
    ap.add_argument(
        "--shutdown", choices=("abrupt", "graceful"), default=Config.shutdown, help="the app's SHUTDOWN"
    )
    ap.add_argument("--drain", default=Config.drain, help="the app's DRAIN after SIGTERM when graceful")
    ap.add_argument(
        "--vegeta-share", type=float, default=Config.vegeta_share, help="vegeta's share of the rate"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--report", type=Path, default=None, help="only rebuild latest.md from this latest.json")
    return ap.parse_args(argv)


def report(path: Path) -> int:
    """Rebuilds latest.md next to a latest.json written by an earlier run."""
    doc = json.loads(path.read_text())
    results = [
        Result(**{**r, "cluster_events": [tuple(e) for e in r["cluster_events"]]}) for r in doc["scenarios"]
    ]
    fields = {f for f in Config.__dataclass_fields__}
    cfg = Config(**{k: v for k, v in doc["config"].items() if k in fields})
    md = markdown(results, cfg, doc["operator_reaction"], doc["when"], doc["runs"])
    (path.parent / "latest.md").write_text(md)
    print(md)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        return report(args.report)
    scenarios = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in scenarios:
        if s not in SCENARIOS:
            print(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
            return 2
    if not 1 <= args.runs <= 20:
        print("--runs must be between 1 and 20", file=sys.stderr)
        return 2
    if not 0 <= args.load <= 8:
        print("--load must be between 0 and 8", file=sys.stderr)
        return 2
    cfg = Config(
        rate=args.rate,
        ws_clients=args.ws_clients,
        replicas=args.replicas,
        shutdown=args.shutdown,
        drain=args.drain,
        load=args.load,
        vegeta_share=args.vegeta_share,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / "raw"
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
    argo = ArgoController() if any(SCENARIOS[n].controller == "argo" for n in scenarios) else None
    results: list[Result] = []
    started = time.monotonic()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with operator, contextlib.ExitStack() as stack:
        say(f"operator started (log: {log})")
        if argo is not None:
            argo.start(kube)
            stack.callback(argo.stop)
            say(f"Argo Rollouts controller started (log: {argo.log})")
        pids = {
            "zdr": operator.proc.pid if operator.proc else None,
            "argo": argo.pid if argo else None,
            "kube": find_pid("kube-controller-manager"),
        }
        for n in range(1, args.runs + 1):
            for name in scenarios:
                result, _ = run_scenario(kube, SCENARIOS[name], cfg, raw / f"run{n}" / name, n, pids)
                say(
                    f"{name} #{n}: failed new {result.failed_by_mode.get('new')} (app's reset {result.app_reset.get('new')}), kept-alive "
                    f"{result.failed_by_mode.get('keepalive')} (app's reset {result.app_reset.get('keepalive')}), "
                    f"ws {result.failed_by_mode.get('ws')} (app's reset {result.app_reset.get('ws')}), vegeta "
                    f"{(result.vegeta or {}).get('failed')}; {'valid' if result.valid else 'INVALID ' + '; '.join(result.invalid_reasons)}"
                )
                results.append(result)
    reaction = reaction_stats([r for r in results if r.controller == "zdr"])
    doc = {
        "when": when,
        "host": {"machine": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()},
        "config": asdict(cfg),
        "runs": args.runs,
        "modes": list(MODES),
        "duration_s": round(time.monotonic() - started, 1),
        "other_operators": others,
        "operator_log": str(log),
        "operator_reaction": reaction,
        "invalid_runs": invalid_runs(results),
        "scenarios": [asdict(r) for r in results],
    }
    (out / "latest.json").write_text(json.dumps(doc, indent=1))
    md = markdown(results, cfg, reaction, when, args.runs)
    (out / "latest.md").write_text(md)
    plot([r for r in results if r.run == 1], out / "timeline.png")
    print()
    print(md)
    print(f"written: {out / 'latest.json'}, {out / 'latest.md'}, {out / 'timeline.png'}")
    print(f"operator log: {log}")
    disagree = [f"{r.scenario} #{r.run}" for r in results if r.valid and r.vegeta and not agrees(r)]
    if disagree:
        print(f"the prober and vegeta disagree in: {', '.join(disagree)}")
    return 1 if any(r.error or not r.valid for r in results) or disagree else 0


if __name__ == "__main__":
    sys.exit(main())
