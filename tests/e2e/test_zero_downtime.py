"""Zero downtime under live traffic, for every strategy, on the local cluster.

Each test rolls the test app from v1 to v2 while three probers run for the whole rollout:
HTTP at 200 requests/s on a new connection per request, HTTP at 200 requests/s over a pool of
kept-alive connections, and 20 WebSocket clients that reconnect whenever their connection ends.
Every request and every connection is recorded (bench/prober: raw sockets, no retries, one
function decides each outcome). The app runs with ``SHUTDOWN=abrupt``: at SIGTERM it closes its
listener and resets every connection and WebSocket, with no drain of its own, so only zdr's
injected drain (the pod leaves the endpoints, the preStop sleep covers propagation) stands
between it and a failure. A test passes only if the run was valid (the probers kept their
schedule), no request on a new connection failed, every failure on a kept-alive connection and
every abnormal WebSocket end is one the app caused itself at its SIGTERM on a pod that had
already left the Service (a request in flight, a WebSocket held open: no controller can save
those, ``bench.scenarios.cut_by_app``), no reconnect failed, and every response after the last
old pod went away came from v2.

The negative control rolls a plain Deployment without readiness probe and without preStop of the
same abrupt app under the same traffic, and asserts that failures are seen on new connections,
on kept-alive connections and on WebSockets, each on its own: the probers do catch a careless
rollout in every mode.

Sessions: with the host's redis-server (listening on the pod bridge only) as the test app's
cart store, shoppers holding their session cookie add items through the Service during a
rollout of each strategy; every answer must show the whole cart so far, and the cart must be
intact afterwards. With ``sessionAffinity: ClientIP`` a client must stay on its pod until that
pod leaves the Service, and never return to a pod it left.
"""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from bench.flows import FlowLog
from bench.prober import Record, Summary, Traffic, check_target, failed, summarize
from bench.scenarios import (
    App,
    DeploymentTarget,
    EventRecorder,
    Kube,
    PodTerminations,
    Strategy,
    Target,
    ZdrTarget,
    app_reset_failures,
    describe_failures,
    operator_log_tail,
    summarize_events,
    versions_after,
    wait_for,
    wait_serving,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

RATE = 200.0
WS_CLIENTS = 20
APP = App(replicas=4, drain="0s", shutdown="abrupt", pre_stop_seconds=3)
GENTLE_APP = App(replicas=4, drain="2s", pre_stop_seconds=3)
"""The sessions tests' app: graceful shutdown (carts are the subject there, not the drain)."""
SETTLE_AFTER = 2.0
"""Seconds of traffic kept after the last old pod is gone (the end-state check)."""


@pytest.fixture(scope="module")
def kube(cluster: Path) -> Kube:
    return Kube(cluster)


@dataclass
class Outcome:
    records: list[Record]
    summary: Summary
    t_change: float
    t_complete: float
    t_done: float
    marks: dict[str, float]
    recorder: EventRecorder
    terms: PodTerminations
    flows: FlowLog
    pre_stop: float

    def context(self, log: Path | None, log_offset: int) -> str:
        text = (
            f"\nsummary: {self.summary.line()}\nt_change={self.t_change:.3f}s t_complete={self.t_complete:.3f}s "
            f"t_done={self.t_done:.3f}s marks={self.marks}\n"
            f"failures:\n{describe_failures(self.records)}\n"
            f"pods terminating at: {self.terms.terminating}\npods left the Service at: {self.terms.left_service}\n"
            f"operator writes and gates:\n{summarize_events(self.recorder.observations, 0, 1e9)}"
        )
        if log is not None:
            text += f"\noperator log ({log}):\n{operator_log_tail(log, log_offset)}"
        return text


def roll_under_traffic(
    kube: Kube,
    target: Target,
    tmp_path: Path,
    during: Callable[[Traffic, dict[str, float]], None] | None = None,
    timeout: float = 120,
) -> Outcome:
    """Creates ``target`` at v1, starts the probers, changes it to v2, runs ``during`` (commands),
    waits until only v2 pods remain, keeps probing ``SETTLE_AFTER`` seconds, and stops."""
    target.create("v1")
    target.wait_complete("v1", timeout=90)
    ip = kube.cluster_ip(target.ns, target.service)
    wait_serving(ip, "v1")
    with (
        Traffic(ip, tmp_path / "traffic", rate=RATE, ws_clients=WS_CLIENTS, duration=240) as traffic,
        FlowLog(ip, 80, tmp_path / "traffic" / "flows.log", traffic.epoch) as flows,
    ):
        recorder = EventRecorder(kube, target.ns, traffic.epoch, target.name)
        terms = PodTerminations(kube, target.ns, traffic.epoch, service=target.service)
        recorder.start()
        terms.start()
        recorder.wait_primed()
        try:
            traffic.start()
            marks: dict[str, float] = {}
            t_change = traffic.now()
            target.set_version("v2")
            if during is not None:
                during(traffic, marks)
            t_complete = target.wait_complete("v2", timeout=timeout) - traffic.epoch
            t_done = traffic.now()
            time.sleep(SETTLE_AFTER)
            records = traffic.stop()
        finally:
            recorder.stop()
            terms.stop()
    summary = summarize(records)
    (tmp_path / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1, default=str))
    print(f"\n{target.label} {target.ns}/{target.name}: {summary.line()}")
    for mode, m in summary.modes.items():
        print(
            f"  {mode}: sent {m.sent} at {m.rate:.1f}/s, failed {m.failed}, p50 {m.p50_ms} ms, "
            f"p99 {m.p99_ms} ms, send lag p99 {m.lag_p99_ms} ms"
        )
    print(
        f"  ws: {summary.ws_connections} connections, ends {summary.ws_ends}, codes {summary.ws_close_codes}"
    )
    print(f"  rollout {t_complete - t_change:.1f}s, old pods gone after {t_done - t_change:.1f}s")
    return Outcome(
        records, summary, t_change, t_complete, t_done, marks, recorder, terms, flows, target.pre_stop_seconds
    )


def assert_valid(outcome: Outcome) -> None:
    """A run whose probers fell behind proves nothing (the validity rule, bench.prober.records)."""
    s = outcome.summary
    assert s.valid, f"the probers could not keep their schedule, nothing is proven: {s.validity.message()}"
    assert set(s.modes) == {"new", "keepalive"} and s.ws_clients == {"stopped": WS_CLIENTS}, s.line()


def unexplained(outcome: Outcome) -> list[Record]:
    """Failures that are not the abrupt app's own reset of a drained pod's connections."""
    explained = {
        id(r) for r in app_reset_failures(outcome.records, outcome.flows, outcome.terms, outcome.pre_stop)
    }
    return [r for r in failed(outcome.records) if id(r) not in explained]


def assert_zero_downtime(outcome: Outcome, log: Path, log_offset: int) -> None:
    context = outcome.context(log, log_offset)
    assert_valid(outcome)
    early = outcome.terms.deleted_while_listed()
    assert early == [], f"pods deleted before they left the Service's endpoints: {early}{context}"
    bad = unexplained(outcome)
    assert bad == [], (
        f"{len(bad)} failures not caused by the app's own reset at SIGTERM:\n{describe_failures(bad)}{context}"
    )
    cut = len(failed(outcome.records))
    print(
        f"  the app's own resets at SIGTERM, after zdr drained the pod: {cut} (in flight, WebSockets, port reuse)"
    )
    answered = [r for r in outcome.records if r.get("kind") == "http" and r.get("outcome") == "ok"]
    for mode in ("new", "keepalive"):
        after = versions_after([r for r in answered if r["mode"] == mode], outcome.t_done)
        assert set(after) == {"v2"} and after["v2"] >= RATE, (
            f"{mode}: responses after the last old pod went away: {after}{context}"
        )
    still_open = [r for r in outcome.records if r.get("kind") == "ws" and r.get("end_kind") == "stopped"]
    assert len(still_open) == WS_CLIENTS and {r["version"] for r in still_open} == {"v2"}, (
        f"WebSockets open at the end: {[(r['pod'], r['version']) for r in still_open]}{context}"
    )


def log_offset(operator: Any) -> int:
    path: Path = operator.log_path
    return path.stat().st_size if path.exists() else 0


@pytest.fixture
def op_log(operator: Any) -> Iterator[tuple[Path, int]]:
    yield operator.log_path, log_offset(operator)


def test_rolling_update_drops_nothing(
    kube: Kube, namespace: str, op_log: tuple[Path, int], tmp_path: Path
) -> None:
    target = ZdrTarget(kube, namespace, "web", APP, "RollingUpdate")
    outcome = roll_under_traffic(kube, target, tmp_path)
    assert_zero_downtime(outcome, *op_log)


def test_blue_green_auto_promotion_drops_nothing(
    kube: Kube, namespace: str, op_log: tuple[Path, int], tmp_path: Path
) -> None:
    target = ZdrTarget(kube, namespace, "shop", APP, "BlueGreen", auto_promotion=True, scale_down_delay=3)
    outcome = roll_under_traffic(kube, target, tmp_path)
    assert_zero_downtime(outcome, *op_log)


def test_blue_green_manual_promotion_drops_nothing(
    kube: Kube, namespace: str, op_log: tuple[Path, int], tmp_path: Path
) -> None:
    target = ZdrTarget(kube, namespace, "shop", APP, "BlueGreen", auto_promotion=False, scale_down_delay=3)

    def promote_when_previewed(traffic: Traffic, marks: dict[str, float]) -> None:
        target.wait_phase("Paused", timeout=90)
        marks["preview_ready"] = traffic.now()
        time.sleep(2.0)  # traffic keeps going to v1 while v2 waits behind the preview Service
        marks["promote"] = traffic.now()
        target.promote()

    outcome = roll_under_traffic(kube, target, tmp_path, promote_when_previewed)
    assert_zero_downtime(outcome, *op_log)
    waiting = [
        r
        for r in outcome.records
        if r.get("kind") == "http"
        and outcome.marks["preview_ready"] <= r["t_send"] <= outcome.marks["promote"]
    ]
    assert waiting and {r.get("version") for r in waiting} == {"v1"}, (
        "before the promote, every response must come from v1" + outcome.context(*op_log)
    )


def test_canary_timed_pause_then_promote_drops_nothing(
    kube: Kube, namespace: str, op_log: tuple[Path, int], tmp_path: Path
) -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "3s"}}, {"setWeight": 50}, {"pause": {}}]
    target = ZdrTarget(kube, namespace, "api", APP, "Canary", canary_steps=steps, scale_down_delay=3)

    def promote_at_last_pause(traffic: Traffic, marks: dict[str, float]) -> None:
        target.wait_phase("Paused", step=3, timeout=90)
        marks["paused"] = traffic.now()
        time.sleep(2.0)
        marks["promote"] = traffic.now()
        target.promote()

    outcome = roll_under_traffic(kube, target, tmp_path, promote_at_last_pause)
    assert_zero_downtime(outcome, *op_log)
    paused = [
        r
        for r in outcome.records
        if r.get("mode") == "new" and outcome.marks["paused"] <= r["t_send"] <= outcome.marks["promote"]
    ]
    shares = {v: sum(1 for r in paused if r.get("version") == v) for v in ("v1", "v2")}
    assert shares["v1"] > 0 and shares["v2"] > 0, (
        f"during the pause at weight 50 both versions must serve: {shares}" + outcome.context(*op_log)
    )


def test_negative_control_plain_deployment_drops_requests(kube: Kube, namespace: str, tmp_path: Path) -> None:
    """No readiness probe, no preStop, the same abrupt app: the same instrument sees failures on new
    connections, on kept-alive connections and on WebSockets, each asserted on its own."""
    target = DeploymentTarget(kube, namespace, "naive", APP, readiness=False, pre_stop=None)
    outcome = roll_under_traffic(kube, target, tmp_path)
    assert_valid(outcome)
    s, context = outcome.summary, outcome.context(None, 0)
    assert s.modes["new"].failed > 0, (
        f"no failure on new connections: the prober would not catch one{context}"
    )
    assert s.modes["keepalive"].failed > 0, f"no failure on kept-alive connections{context}"
    assert s.ws_abnormal > 0, f"no abnormal WebSocket end{context}"
    early = outcome.terms.deleted_while_listed()
    assert early, f"no pod seen deleted while still an endpoint: the order check would not catch one{context}"
    print(
        f"  negative control: {len(early)} pods deleted while still endpoints; new {s.modes['new'].failed} {s.modes['new'].errors}, kept-alive "
        f"{s.modes['keepalive'].failed} {s.modes['keepalive'].errors}, {s.ws_abnormal} abnormal WebSocket ends"
    )


# ---------------------------------------------------------------------------------------------
# Sessions: carts in Redis survive every strategy; ClientIP affinity holds until the pod drains
# ---------------------------------------------------------------------------------------------
BRIDGE_IP = "10.88.0.1"
"""The host's address on the pod bridge: pods reach the host's Redis there."""


@pytest.fixture(scope="module")
def redis_addr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's redis-server on the host, listening only on the pod bridge, no persistence."""
    with socket.socket() as s:
        s.bind((BRIDGE_IP, 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    log = workdir / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                BRIDGE_IP,
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
                str(workdir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def up() -> bool:
        try:
            with socket.create_connection((BRIDGE_IP, port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                return c.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_for("redis-server to answer", up, timeout=15)
        yield f"{BRIDGE_IP}:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class CartReply:
    t: float
    status: int | None
    error: str | None
    items: list[str]
    expected: list[str]
    version: str
    pod: str


class CartClient(threading.Thread):
    """One shopper: adds an item every ``interval`` seconds through the Service, holding its cookie,
    on a new connection each time; every answer must show the whole cart so far."""

    def __init__(self, host: str, name: str, epoch: float, interval: float = 0.1, limit: int = 3000) -> None:
        super().__init__(name=f"cart-{name}", daemon=True)
        self.host, self.label, self.epoch, self.interval, self.limit = host, name, epoch, interval, limit
        self.cookie: str | None = None
        self.added: list[str] = []
        self.replies: list[CartReply] = []
        self.stop = threading.Event()

    def request(self, method: str, path: str) -> tuple[int, dict[str, Any], str | None]:
        conn = http.client.HTTPConnection(check_target(self.host), 80, timeout=3)
        try:
            headers = {
                "Connection": "close",
                **({"Cookie": f"zdr_session={self.cookie}"} if self.cookie else {}),
            }
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            cookie = None
            for header in resp.headers.get_all("Set-Cookie") or []:
                if header.startswith("zdr_session="):
                    cookie = header.split(";", 1)[0].split("=", 1)[1]
            return resp.status, (json.loads(body) if resp.status == 200 else {}), cookie
        finally:
            conn.close()

    def run(self) -> None:
        start = time.monotonic()
        for i in range(self.limit):
            if self.stop.is_set():
                break
            item = f"{self.label}-{i}"
            t = time.monotonic() - self.epoch
            expected = [*self.added, item]
            try:
                status, body, cookie = self.request("POST", f"/cart?item={item}")
            except OSError as exc:
                self.replies.append(CartReply(t, None, type(exc).__name__, [], expected, "", ""))
            else:
                if status == 200:
                    self.added.append(item)
                    self.cookie = self.cookie or cookie
                self.replies.append(
                    CartReply(
                        t,
                        status,
                        None if status == 200 else f"http {status}",
                        list(body.get("items") or []),
                        expected,
                        str(body.get("version", "")),
                        str(body.get("pod", "")),
                    )
                )
            self.stop.wait(max(0.0, start + (i + 1) * self.interval - time.monotonic()))

    def final_cart(self) -> list[str]:
        status, body, _ = self.request("GET", "/cart")
        assert status == 200, f"GET /cart answered {status}"
        return list(body.get("items") or [])


def run_carts(
    kube: Kube, target: ZdrTarget, shoppers: int, interval: float, terminations: bool = False
) -> tuple[list[CartClient], float, float, PodTerminations | None]:
    target.create("v1")
    target.wait_complete("v1", timeout=90)
    ip = kube.cluster_ip(target.ns, target.service)
    wait_serving(ip, "v1")
    epoch = time.monotonic()
    watcher = PodTerminations(kube, target.ns, epoch, service=target.service) if terminations else None
    if watcher:
        watcher.start()
    clients = [CartClient(ip, f"s{i}", epoch, interval) for i in range(shoppers)]
    try:
        for c in clients:
            c.start()
        time.sleep(1.0)
        t_change = time.monotonic() - epoch
        target.set_version("v2")
        target.wait_complete("v2", timeout=120)
        t_done = time.monotonic() - epoch
        time.sleep(1.0)
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(timeout=10)
        if watcher:
            watcher.stop()
    return clients, t_change, t_done, watcher


def cart_params(strategy: str) -> dict[str, Any]:
    if strategy == "BlueGreen":
        return {"scale_down_delay": 3}
    if strategy == "Canary":
        steps = [
            {"setWeight": 25},
            {"pause": {"duration": "2s"}},
            {"setWeight": 50},
            {"pause": {"duration": "2s"}},
        ]
        return {"canary_steps": steps, "scale_down_delay": 2}
    return {}


@pytest.mark.parametrize("strategy", ["RollingUpdate", "BlueGreen", "Canary"])
def test_carts_in_redis_survive_the_rollout(
    strategy: Strategy, kube: Kube, namespace: str, op_log: tuple[Path, int], redis_addr: str
) -> None:
    app = replace(GENTLE_APP, env=(("REDIS_ADDR", redis_addr),))
    target = ZdrTarget(kube, namespace, "cart", app, strategy, **cart_params(strategy))
    clients, t_change, t_done, _ = run_carts(kube, target, shoppers=4, interval=0.1)
    total = 0
    for c in clients:
        bad = [r for r in c.replies if r.error or r.items != r.expected]
        assert not bad, (
            f"{c.label}: {len(bad)} of {len(c.replies)} cart answers failed or showed a different cart, "
            f"first: {bad[0]}\noperator log:\n{operator_log_tail(*op_log)}"
        )
        assert c.final_cart() == c.added, f"{c.label}: the cart after the rollout differs from what was added"
        versions = {r.version for r in c.replies}
        assert versions == {"v1", "v2"}, f"{c.label} was served by {versions} only"
        total += len(c.replies)
    pods = {r.pod for c in clients for r in c.replies}
    print(
        f"\n{strategy}: {total} cart writes by {len(clients)} sessions over {len(pods)} pods, "
        f"rollout {t_done - t_change:.1f}s, every cart intact"
    )


def test_client_ip_affinity_holds_until_the_pod_drains(
    kube: Kube, namespace: str, op_log: tuple[Path, int], redis_addr: str
) -> None:
    app = replace(GENTLE_APP, env=(("REDIS_ADDR", redis_addr),))
    target = ZdrTarget(kube, namespace, "sticky", app, "RollingUpdate", session_affinity="ClientIP")
    clients, t_change, t_done, watcher = run_carts(kube, target, shoppers=1, interval=0.05, terminations=True)
    assert watcher is not None
    replies = clients[0].replies
    bad = [r for r in replies if r.error or r.items != r.expected]
    assert not bad, f"{len(bad)} cart answers failed, first: {bad[0]}"
    segments: list[tuple[str, float]] = []  # (pod, first send time)
    for r in replies:
        if not segments or segments[-1][0] != r.pod:
            segments.append((r.pod, r.t))
    pods = [p for p, _ in segments]
    assert len(pods) == len(set(pods)), f"the client came back to a pod it had left: {pods}"
    assert len(segments) >= 2, f"the client never moved although every v1 pod was replaced: {pods}"
    # A client moves only once its pod has left the Service (terminating, or deselected while the
    # previous revision is kept warm); 0.3 s covers the polling.
    for (old, _), (new, t_new) in itertools.pairwise(segments):
        left = watcher.left_service.get(old)
        assert left is not None and left <= t_new + 0.3, (
            f"moved from {old} to {new} at t={t_new:.2f}s, but {old} "
            + ("never left the Service" if left is None else f"left the Service only at t={left:.2f}s")
            + f" (terminating from t={watcher.terminating.get(old, float('nan')):.2f}s)"
        )
    assert replies[-1].version == "v2"
    print(
        f"\nClientIP: {len(replies)} requests, rollout {t_done - t_change:.1f}s, pods in order: "
        + " -> ".join(
            f"{p} (from t={t:.1f}s, left the Service t={watcher.left_service.get(p, float('nan')):.1f}s, "
            f"terminating t={watcher.terminating.get(p, float('nan')):.1f}s)"
            for p, t in segments
        )
    )
