"""`make demo`: a rollout under live traffic, start to finish, in about a minute.

Creates the namespace ``zdr-demo``, starts the operator (its log goes to
``.cluster/logs/zdr-demo-operator.log``), applies a ZeroDowntimeRollout of the test app at v1,
waits until it is Healthy, then starts traffic (HTTP on new connections and over keep-alive
connections, plus WebSocket clients) and rolls out v2. A progress line per second shows the
rollout's phase, step and ready pods, the versions answering, and the failures so far; a table
sums it up at the end. Exits 1 if any request failed or any WebSocket ended abnormally.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.prober import Record, Traffic, is_failure, summarize
from bench.scenarios import LOGS, ROOT, App, Kube, OperatorProcess, ZdrTarget, other_operators, wait_serving

NAMESPACE = "zdr-demo"
NAME = "web"


class Progress:
    """Counts from the probers' records as they arrive."""

    def __init__(self) -> None:
        self.recent: deque[tuple[float, str]] = deque()
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.ws_open = 0
        self.ws_abnormal = 0

    def add(self, records: list[Record]) -> None:
        for r in records:
            if r.get("kind") == "http":
                self.sent += 1
                bad = is_failure(r)
                key = f"error:{r.get('outcome')}" if bad else str(r.get("version"))
                if bad:
                    self.errors[str(r.get("outcome"))] += 1
                self.recent.append((float(r["t_send"]), key))
            elif r.get("event") == "open":
                self.ws_open += 1
            elif r.get("event") == "end":
                self.ws_open -= 1
                self.ws_abnormal += is_failure(r)

    def last_second(self, now: float) -> Counter[str]:
        while self.recent and self.recent[0][0] < now - 2.0:
            self.recent.popleft()
        return Counter(k for t, k in self.recent if now - 2.0 <= t < now - 1.0)


def version_text(counts: Counter[str]) -> str:
    parts = []
    for key in sorted(counts):
        style = "red" if key.startswith("error") else ("cyan" if key == "v1" else "green")
        parts.append(f"[{style}]{key} {counts[key]:>3}/s[/{style}]")
    return "  ".join(parts) or "[dim]no answers yet[/dim]"


def status_line(st: dict[str, Any]) -> str:
    step = st.get("currentStepIndex")
    phase = st.get("phase") or "-"
    color = {"Healthy": "green", "Progressing": "yellow", "Paused": "blue"}.get(phase, "red")
    return (
        f"[{color}]{phase:<11}[/{color}] step {'-' if step is None else step}  "
        f"ready {st.get('readyReplicas', 0)}/{st.get('replicas', 0)}  updated {st.get('updatedReplicas', 0)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--strategy", choices=("RollingUpdate", "BlueGreen"), default="RollingUpdate")
    ap.add_argument("--rate", type=float, default=200.0, help="HTTP requests/s in each mode")
    ap.add_argument("--ws-clients", type=int, default=20)
    ap.add_argument("--replicas", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="leave the namespace in place afterwards")
    args = ap.parse_args(argv)
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)
    kube = Kube()
    kube.ensure_crd()
    for other in other_operators(NAMESPACE):
        console.print(f"[yellow]note: another zdr operator is running ({other.split(':')[0]})[/yellow]")

    app = App(replicas=args.replicas, drain="2s", pre_stop_seconds=3)
    params: dict[str, Any] = {"scale_down_delay": 5}
    target = ZdrTarget(kube, NAMESPACE, NAME, app, args.strategy, **params)
    log = LOGS / "zdr-demo-operator.log"
    console.rule(f"[bold]zdr demo: {args.strategy} of {args.replicas} pods under live traffic")
    console.print(f"namespace [bold]{NAMESPACE}[/bold] (re)created")
    kube.create_namespace(NAMESPACE, replace=True)
    operator = OperatorProcess(log, namespaces=[NAMESPACE])
    failed_run = True
    try:
        operator.start()
        console.print(f"operator started, log: {log}")
        target.create("v1")
        console.print(
            f"ZeroDowntimeRollout [bold]{NAME}[/bold] at [cyan]v1[/cyan] applied; waiting for Healthy ..."
        )
        t0 = time.monotonic()
        target.wait_complete("v1", timeout=120)
        console.print(f"[green]Healthy[/green] after {time.monotonic() - t0:.1f}s: {target.progress()}")
        ip = kube.cluster_ip(NAMESPACE, target.service)
        wait_serving(ip, "v1")
        out = ROOT / "bench" / "results" / "demo"
        console.print(
            f"traffic to Service {NAME} ({ip}): {args.rate:.0f} req/s on new connections, {args.rate:.0f} req/s "
            f"over keep-alive connections, {args.ws_clients} WebSocket clients"
        )
        progress = Progress()
        with Traffic(ip, out, rate=args.rate, ws_clients=args.ws_clients, duration=300) as traffic:
            traffic.start()
            progress.add(traffic.seen)
            for _ in range(2):
                time.sleep(1.0)
                progress.add(traffic.poll())
                console.print(
                    f"  {traffic.now():5.1f}s  {status_line(target.status())}  "
                    f"{version_text(progress.last_second(traffic.now()))}"
                )
            t_change = traffic.now()
            console.print(f"[bold]  {t_change:5.1f}s  rolling out v2[/bold] (spec.template env VERSION=v2)")
            target.set_version("v2")
            t_complete: float | None = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                time.sleep(1.0)
                progress.add(traffic.poll())
                now = traffic.now()
                st = target.status()
                errors = sum(progress.errors.values())
                err_text = f"[red]errors {errors}[/red]" if errors else "[green]errors 0[/green]"
                ws_text = f"ws {progress.ws_open} open" + (
                    f", [red]{progress.ws_abnormal} abnormal[/red]"
                    if progress.ws_abnormal
                    else ", 0 abnormal"
                )
                console.print(
                    f"  {now:5.1f}s  {status_line(st)}  {version_text(progress.last_second(now))}  "
                    f"{err_text}  {ws_text}"
                )
                if t_complete is None and target.complete():
                    t_complete = traffic.now()
                    console.print(
                        f"[bold green]  {t_complete:5.1f}s  rollout complete[/bold green]: "
                        f"{st.get('message')}"
                    )
                if t_complete is not None and target.only("v2"):
                    break
            else:
                console.print("[red]the rollout did not finish within 120 s[/red]: " + target.progress())
            time.sleep(2.0)
            records = traffic.stop()
        summary = summarize(records)
        table = Table(title="result", title_justify="left")
        for col in ("traffic", "requests", "failed", "p50 ms", "p99 ms"):
            table.add_column(col, justify="right" if col != "traffic" else "left")
        for mode, m in summary.modes.items():
            label = "new connection per request" if mode == "new" else "keep-alive connections"
            table.add_row(label, str(m.sent), str(m.failed), f"{m.p50_ms or 0:.1f}", f"{m.p99_ms or 0:.1f}")
        table.add_row(
            "[bold]all HTTP[/bold]",
            str(summary.sent),
            str(summary.failed),
            f"{summary.p50_ms or 0:.1f}",
            f"{summary.p99_ms or 0:.1f}",
        )
        table.add_row(
            "WebSocket connections", str(summary.ws_connections), f"{summary.ws_abnormal} abnormal", "", ""
        )
        console.print(table)
        versions = ", ".join(f"{v}: {s.count}" for v, s in summary.versions.items())
        rollout = f"{t_complete - t_change:.1f}s" if t_complete is not None else "did not complete"
        console.print(
            f"rollout time: [bold]{rollout}[/bold]; responses by version: {versions}; "
            f"WebSocket close codes: {summary.ws_close_codes}"
        )
        if summary.errors:
            console.print(f"[red]errors: {summary.errors}[/red]")
        console.print(f"records: {out}/*.jsonl   operator log: {log}")
        console.print(
            f"the measurement: {summary.validity.message()} (bench.prober: raw sockets, no retries)"
        )
        failed_run = summary.failed > 0 or summary.ws_abnormal > 0 or t_complete is None or not summary.valid
        if failed_run:
            console.print("[bold red]FAILED: requests were lost or the rollout did not finish[/bold red]")
        else:
            console.print("[bold green]zero failed requests, zero abnormal WebSocket ends[/bold green]")
    finally:
        operator.stop()
        if not args.keep:
            kube.delete_namespace(NAMESPACE)
    return 1 if failed_run else 0


if __name__ == "__main__":
    sys.exit(main())
