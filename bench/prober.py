"""Open-loop HTTP and WebSocket probers that record every request and every connection.

HTTP (``run_http``): requests are scheduled by send time at a fixed rate (open loop: a slow
answer never delays the next send, so the prober does not hide an outage behind its own
waiting), for at most ``duration`` seconds and at most ``max_requests`` requests, in one of two
modes:

- ``close``: a new TCP connection per request (``Connection: close``, a force-close connector);
  every request is a new conntrack flow, so it exercises endpoint propagation;
- ``keepalive``: a small pool of persistent connections; it exercises how pods drain
  connections that clients hold open.

Each request becomes one JSON line: ``t_send`` (the scheduled send time, seconds after the
epoch, a ``time.monotonic()`` value shared by every prober process), ``lag_ms`` (how late the
send actually started), ``status`` (or null), ``error`` (null or one kind: ``refused``,
``reset``, ``disconnected``, ``timeout``, ``connect_timeout``, ``unreachable``, ``truncated``,
``protocol``, ``http_5xx``, ``http_4xx``, ``http_other``, ``other:<Exception>``),
``version`` (X-Version), ``pod`` (X-Pod) and ``latency_ms``.

WebSocket (``run_ws``): N clients hold a connection to ``/ws`` each and reconnect when it
ends. Every connection becomes an ``open`` line and an ``end`` line. A close frame with
1000 or 1001 is a clean end; anything else is abnormal: a connection lost without a close frame
(1006, reset, EOF), another close code, a failed handshake or connect, or no message for
``stall_seconds`` (the test app sends one every second).

Network safety: ``check_target`` refuses every address other than 127.0.0.1, the cluster's
Service range 10.96.0.0/16 (kube-proxy maps it to pods) and the pod range 10.88.0.0/16 on the
local bridge; host names are refused too, so no resolver can send traffic elsewhere. Every loop
is bounded both in count and in time.

Capacity, measured on this machine (2 cores, the local cluster running, against a ClusterIP
Service of 4 test app pods; both HTTP modes and 20 WebSocket clients at once, each prober a
separate process with its own event loop, as ``Traffic`` runs them):

=====================  ==================  ===================  ====================
rate per mode          sent per mode       send lag p99 / max   send lag p99 / max
                       (achieved rate)     close mode           keep-alive mode
=====================  ==================  ===================  ====================
200 req/s, 20 s        4000 (200.0/s)      45 ms / 92 ms        29 ms / 95 ms
400 req/s, 15 s        6000 (400.0/s)      114 ms / 229 ms      47 ms / 123 ms
800 req/s, 10 s        8000 (800.0/s)      206 ms / 254 ms      60 ms / 86 ms
=====================  ==================  ===================  ====================

No run fell behind (the lag does not grow), so Python asyncio holds 200 req/s in both modes
with room to spare. CPU cost: about 1.0 ms per request on a new connection and 0.57 ms over
keep-alive (0.2 and 0.11 of a core at 200 req/s); a hand-written HTTP/1.1 client on raw asyncio
streams saved only a third of that, so aiohttp stays. When other work saturates the machine
(load average 5 to 10 on 2 cores) the close-mode lag p99 rises to 0.3-1 s, still without
backlog; ``lag_ms`` in every record shows whether a given run kept its schedule, and the probers
run at a slightly raised CPU priority where permitted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import aiohttp

Mode = Literal["close", "keepalive"]
MODES: tuple[Mode, ...] = ("close", "keepalive")
Record = dict[str, Any]

ALLOWED_NETWORKS = (
    ipaddress.ip_network("10.96.0.0/16"),  # Service ClusterIPs, translated by kube-proxy
    ipaddress.ip_network("10.88.0.0/16"),  # pod IPs on the local CNI bridge
    ipaddress.ip_network("127.0.0.1/32"),  # loopback (unit tests)
)
MAX_DURATION = 1800.0
MAX_RATE = 5000.0
MAX_REQUESTS = 2_000_000
MAX_WS_CLIENTS = 500
CLEAN_CLOSE_CODES = frozenset({1000, 1001})

ROOT = Path(__file__).resolve().parents[1]


class UnsafeTarget(ValueError):
    """The target is not an address the probers may send traffic to."""


def check_target(host: str) -> str:
    """Returns ``host`` when it is an IPv4 literal inside ``ALLOWED_NETWORKS``; raises otherwise."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError as exc:
        raise UnsafeTarget(f"{host!r}: only IP literals are probed (no name resolution)") from exc
    if not any(addr in net for net in ALLOWED_NETWORKS):
        allowed = ", ".join(str(n) for n in ALLOWED_NETWORKS)
        raise UnsafeTarget(f"{host}: outside the allowed networks ({allowed})")
    return str(addr)


def _check_bounds(duration: float, count: int, what: str, cap: int) -> None:
    if not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be in (0, {MAX_DURATION:.0f}] seconds (got {duration})")
    if not 0 < count <= cap:
        raise ValueError(f"{what} must be in [1, {cap}] (got {count})")


# ---------------------------------------------------------------------------------------------
# Error classification
# ---------------------------------------------------------------------------------------------
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def classify(exc: BaseException) -> str:
    """The error kind of an exception raised while sending a request or opening a connection."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connect_timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "refused"
        if isinstance(os_error, TimeoutError):
            return "connect_timeout"
        if os_error.errno in _UNREACHABLE_ERRNOS:
            return "unreachable"
        if os_error.errno in _RESET_ERRNOS:
            return "reset"
        return f"connect:{os_error.errno}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "truncated"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "protocol"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
        return "reset"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return "unreachable"
    return f"other:{type(exc).__name__}"


def status_error(status: int) -> str | None:
    if 200 <= status < 400:
        return None
    if status >= 500:
        return "http_5xx"
    if status >= 400:
        return "http_4xx"
    return "http_other"


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------
class JsonlWriter:
    """Appends records as JSON lines; flushed by ``flush`` (called periodically) and on close."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0

    def __call__(self, record: Record) -> None:
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.count += 1

    def flush(self) -> None:
        self.out.flush()


async def _flusher(writer: JsonlWriter, every: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        writer.flush()


# ---------------------------------------------------------------------------------------------
# HTTP prober
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpConfig:
    host: str
    port: int = 80
    path: str = "/"
    mode: Mode = "close"
    rate: float = 200.0
    duration: float = 60.0
    max_requests: int | None = None
    """Defaults to ``ceil(rate * duration)``."""
    timeout: float = 5.0
    connect_timeout: float = 2.0
    pool: int = 8
    """Persistent connections in keep-alive mode."""

    def limit(self) -> int:
        cap = math.ceil(self.rate * self.duration)
        return min(self.max_requests, cap) if self.max_requests is not None else cap


async def run_http(
    cfg: HttpConfig,
    sink: Callable[[Record], None],
    *,
    epoch: float | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Sends ``cfg.limit()`` requests at ``cfg.rate`` per second (fewer when stopped); returns the count."""
    host = check_target(cfg.host)
    if not 0 < cfg.rate <= MAX_RATE:
        raise ValueError(f"rate must be in (0, {MAX_RATE:.0f}] requests/s (got {cfg.rate})")
    _check_bounds(cfg.duration, cfg.limit(), "max_requests", MAX_REQUESTS)
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} (got {cfg.mode!r})")
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    url = f"http://{host}:{cfg.port}{cfg.path}"
    timeout = aiohttp.ClientTimeout(total=cfg.timeout, connect=cfg.connect_timeout)
    if cfg.mode == "close":
        connector = aiohttp.TCPConnector(force_close=True, limit=0, use_dns_cache=False)
        headers = {"Connection": "close"}
    else:
        connector = aiohttp.TCPConnector(limit=cfg.pool, keepalive_timeout=60, use_dns_cache=False)
        headers = {}
    pending: set[asyncio.Task[None]] = set()
    sent = 0
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers, auto_decompress=False
    ) as session:
        start = loop.time()
        base = start if epoch is None else epoch

        async def one(seq: int, due: float) -> None:
            began = loop.time()
            rec: Record = {
                "kind": "http",
                "mode": cfg.mode,
                "seq": seq,
                "t_send": round(due - base, 4),
                "lag_ms": round((began - due) * 1000, 2),
                "status": None,
                "error": None,
                "version": None,
                "pod": None,
                "latency_ms": None,
            }
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    rec["status"] = resp.status
                    rec["version"] = resp.headers.get("X-Version")
                    rec["pod"] = resp.headers.get("X-Pod")
                    rec["error"] = status_error(resp.status)
            except asyncio.CancelledError:
                rec["error"] = "cancelled"
                raise
            except Exception as exc:  # every failure is recorded, none ends the run
                rec["error"] = classify(exc)
                rec["detail"] = f"{type(exc).__name__}: {exc}"[:200]
            finally:
                rec["latency_ms"] = round((loop.time() - began) * 1000, 2)
                sink(rec)

        limit = cfg.limit()
        for seq in range(limit):
            due = start + seq / cfg.rate
            if due - start >= cfg.duration or stop.is_set():
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                if stop.is_set():
                    break
            task = asyncio.create_task(one(seq, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        if pending:
            await asyncio.wait(set(pending), timeout=cfg.timeout + 2)
        for task in list(pending):
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return sent


# ---------------------------------------------------------------------------------------------
# WebSocket prober
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WsConfig:
    host: str
    port: int = 80
    path: str = "/ws"
    clients: int = 20
    duration: float = 60.0
    max_connects: int | None = None
    """Per client; defaults to ``4 * duration + 10``."""
    stall_seconds: float = 4.0
    handshake_timeout: float = 3.0

    def connect_limit(self) -> int:
        return self.max_connects if self.max_connects is not None else int(4 * self.duration) + 10


async def _ws_client(
    client_id: int,
    cfg: WsConfig,
    session: aiohttp.ClientSession,
    url: str,
    sink: Callable[[Record], None],
    base: float,
    deadline: float,
    stop: asyncio.Event,
) -> None:
    loop = asyncio.get_running_loop()
    stop_wait = asyncio.ensure_future(stop.wait())
    try:
        for conn in range(cfg.connect_limit()):
            if stop.is_set() or loop.time() >= deadline:
                return
            t_open = loop.time()
            end: Record = {
                "kind": "ws",
                "event": "end",
                "client": client_id,
                "conn": conn,
                "t_open": round(t_open - base, 4),
                "messages": 0,
                "version": None,
                "pod": None,
            }
            ws: aiohttp.ClientWebSocketResponse | None = None
            try:
                ws = await session.ws_connect(
                    url,
                    autoclose=True,
                    autoping=True,
                    heartbeat=None,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                )
            except aiohttp.WSServerHandshakeError as exc:
                end.update(end_kind="handshake", code=None, abnormal=True, detail=f"HTTP {exc.status}")
            except Exception as exc:
                end.update(end_kind="connect", code=None, abnormal=True, detail=classify(exc))
            if ws is None:
                end["t"] = round(loop.time() - base, 4)
                sink(end)
                await asyncio.sleep(0.2)
                continue
            sink(
                {
                    "kind": "ws",
                    "event": "open",
                    "client": client_id,
                    "conn": conn,
                    "t": round(loop.time() - base, 4),
                }
            )
            end.update(await _ws_session(ws, cfg, end, deadline, stop_wait))
            end["t"] = round(loop.time() - base, 4)
            sink(end)
            if end["abnormal"]:
                await asyncio.sleep(0.2)
    finally:
        stop_wait.cancel()


async def _ws_session(
    ws: aiohttp.ClientWebSocketResponse,
    cfg: WsConfig,
    info: Record,
    deadline: float,
    stop_wait: asyncio.Future[Any],
) -> Record:
    """Reads one connection until it ends; returns the fields describing the end."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or stop_wait.done():
                await ws.close(code=1000)
                return {"end_kind": "stopped", "code": 1000, "abnormal": False}
            recv = asyncio.ensure_future(ws.receive())
            done, _ = await asyncio.wait(
                {recv, stop_wait},
                timeout=min(cfg.stall_seconds, remaining),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if recv not in done:
                recv.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await recv
                if stop_wait.done() or loop.time() >= deadline:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(code=1000), 3)
                    return {"end_kind": "stopped", "code": 1000, "abnormal": False}
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(code=1000), 3)
                return {
                    "end_kind": "stalled",
                    "code": None,
                    "abnormal": True,
                    "detail": f"no message for {cfg.stall_seconds:g}s",
                }
            msg = recv.result()
            if msg.type == aiohttp.WSMsgType.TEXT:
                info["messages"] += 1
                if info["version"] is None or info["pod"] is None:
                    with contextlib.suppress(ValueError, AttributeError):
                        body = json.loads(msg.data)
                        info["version"] = info["version"] or body.get("version")
                        info["pod"] = info["pod"] or body.get("pod")
                continue
            if msg.type == aiohttp.WSMsgType.CLOSE:
                code = int(msg.data) if msg.data is not None else None
                return {
                    "end_kind": "closed",
                    "code": code,
                    "abnormal": code not in CLEAN_CLOSE_CODES,
                    "detail": str(msg.extra or "")[:120],
                }
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                # Lost without a close frame: 1006 in RFC 6455 terms (a reset, an EOF).
                return {
                    "end_kind": "lost",
                    "code": 1006,
                    "abnormal": True,
                    "detail": f"{msg.type.name}, aiohttp code {ws.close_code}",
                }
            if msg.type == aiohttp.WSMsgType.ERROR:
                exc = msg.data
                return {
                    "end_kind": "error",
                    "code": ws.close_code or 1006,
                    "abnormal": True,
                    "detail": classify(exc) if isinstance(exc, BaseException) else str(exc)[:120],
                }
            # binary or other frames are unexpected but harmless
    except Exception as exc:
        return {"end_kind": "error", "code": 1006, "abnormal": True, "detail": classify(exc)}
    finally:
        if not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1000), 3)


async def run_ws(
    cfg: WsConfig,
    sink: Callable[[Record], None],
    *,
    epoch: float | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Runs ``cfg.clients`` reconnecting clients until ``cfg.duration`` passes or ``stop`` is set."""
    host = check_target(cfg.host)
    _check_bounds(cfg.duration, cfg.clients, "clients", MAX_WS_CLIENTS)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    start = loop.time()
    base = start if epoch is None else epoch
    deadline = start + cfg.duration
    url = f"http://{host}:{cfg.port}{cfg.path}"
    timeout = aiohttp.ClientTimeout(
        total=None, connect=cfg.handshake_timeout, sock_connect=cfg.handshake_timeout
    )
    connector = aiohttp.TCPConnector(limit=0, force_close=True, use_dns_cache=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        clients = [
            asyncio.create_task(_ws_client(i, cfg, session, url, sink, base, deadline, stop))
            for i in range(cfg.clients)
        ]
        # Bounded: each client leaves at the deadline; the margin covers close handshakes.
        _, late = await asyncio.wait(clients, timeout=cfg.duration + 15)
        for task in late:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# Reading and summarizing
# ---------------------------------------------------------------------------------------------
def read_jsonl(paths: Iterable[Path]) -> list[Record]:
    records: list[Record] = []
    for path in paths:
        if not path.exists():
            continue
        with path.open() as f:
            for line in f:
                if line.endswith("\n"):
                    with contextlib.suppress(ValueError):
                        records.append(json.loads(line))
    return records


class Tail:
    """Reads the complete lines appended to a JSONL file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""

    def read(self) -> list[Record]:
        if not self.path.exists():
            return []
        with self.path.open() as f:
            f.seek(self.offset)
            chunk = f.read()
            self.offset = f.tell()
        text = self.partial + chunk
        lines = text.split("\n")
        self.partial = lines.pop()
        out: list[Record] = []
        for line in lines:
            if line:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def http_records(records: Iterable[Record]) -> Iterator[Record]:
    return (r for r in records if r.get("kind") == "http")


def ws_ends(records: Iterable[Record]) -> Iterator[Record]:
    return (r for r in records if r.get("kind") == "ws" and r.get("event") == "end")


def failed(records: Iterable[Record]) -> list[Record]:
    """HTTP requests that failed and WebSocket connections that ended abnormally."""
    return [
        r
        for r in records
        if (r.get("kind") == "http" and r.get("error")) or (r.get("kind") == "ws" and r.get("abnormal"))
    ]


@dataclass(frozen=True)
class ModeSummary:
    sent: int
    failed: int
    failure_pct: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    rate: float
    """Requests per second actually sent (first to last actual send)."""
    lag_p99_ms: float | None
    lag_max_ms: float | None
    errors: dict[str, int]


@dataclass(frozen=True)
class VersionSpan:
    count: int
    first: float
    last: float


@dataclass(frozen=True)
class Summary:
    sent: int
    failed: int
    failure_pct: float
    p50_ms: float | None
    p99_ms: float | None
    errors: dict[str, int]
    modes: dict[str, ModeSummary]
    versions: dict[str, VersionSpan]
    """Responses per version with the first and last send time that got one."""
    ws_connections: int
    ws_abnormal: int
    ws_ends: dict[str, int]
    ws_close_codes: dict[str, int]
    ws_versions: dict[str, int]
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        p50 = "-" if self.p50_ms is None else f"{self.p50_ms:.1f}"
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.1f}"
        versions = ", ".join(f"{v}: {s.count}" for v, s in self.versions.items())
        return (
            f"sent {self.sent}, failed {self.failed} ({self.failure_pct:.3f}%), p50 {p50} ms, "
            f"p99 {p99} ms, ws connections {self.ws_connections}, abnormal ws ends {self.ws_abnormal}; "
            f"versions {versions}; errors {dict(self.errors) or 'none'}"
        )


def _mode_summary(recs: Sequence[Record]) -> ModeSummary:
    bad = [r for r in recs if r.get("error")]
    ok_lat = [float(r["latency_ms"]) for r in recs if not r.get("error") and r.get("latency_ms") is not None]
    lags = [float(r.get("lag_ms") or 0.0) for r in recs]
    times = [float(r["t_send"]) + float(r.get("lag_ms") or 0.0) / 1000 for r in recs]
    span = max(times) - min(times) if len(times) > 1 else 0.0
    return ModeSummary(
        sent=len(recs),
        failed=len(bad),
        failure_pct=100.0 * len(bad) / len(recs) if recs else 0.0,
        p50_ms=percentile(ok_lat, 50),
        p99_ms=percentile(ok_lat, 99),
        max_ms=max(ok_lat) if ok_lat else None,
        rate=(len(recs) - 1) / span if span > 0 else 0.0,
        lag_p99_ms=percentile(lags, 99),
        lag_max_ms=max(lags) if lags else None,
        errors=dict(Counter(str(r["error"]) for r in bad)),
    )


def timeline(records: Iterable[Record], bucket: float = 1.0) -> list[dict[str, Any]]:
    """Per ``bucket`` seconds of send time: responses per version and failures per error kind."""
    rows: dict[int, dict[str, Any]] = {}
    for r in http_records(records):
        b = math.floor(float(r["t_send"]) / bucket)
        row = rows.setdefault(b, {"t": round(b * bucket, 3), "versions": {}, "errors": {}})
        if r.get("error"):
            row["errors"][r["error"]] = row["errors"].get(r["error"], 0) + 1
        else:
            v = r.get("version") or "?"
            row["versions"][v] = row["versions"].get(v, 0) + 1
    return [rows[k] for k in sorted(rows)]


def _inside(r: Record, lo: float, hi: float) -> bool:
    if r.get("kind") == "http":
        return lo <= float(r["t_send"]) <= hi
    if r.get("event") == "end":
        return float(r.get("t_open", 0.0)) <= hi and float(r.get("t", 0.0)) >= lo
    return lo <= float(r.get("t", 0.0)) <= hi


def summarize(
    records: Iterable[Record],
    window: tuple[float, float] | None = None,
    bucket: float = 1.0,
) -> Summary:
    """Summary of HTTP requests sent (and WebSocket connections ended) inside ``window``, if given."""
    recs = list(records)
    if window is not None:
        recs = [r for r in recs if _inside(r, *window)]
    http = list(http_records(recs))
    by_mode: dict[str, list[Record]] = {}
    for r in http:
        by_mode.setdefault(str(r["mode"]), []).append(r)
    total = _mode_summary(http)
    versions: dict[str, VersionSpan] = {}
    for r in sorted(http, key=lambda r: float(r["t_send"])):
        v = r.get("version")
        if r.get("error") or not v:
            continue
        t = float(r["t_send"])
        cur = versions.get(v)
        versions[v] = VersionSpan(1, t, t) if cur is None else VersionSpan(cur.count + 1, cur.first, t)
    ends = list(ws_ends(recs))
    return Summary(
        sent=total.sent,
        failed=total.failed,
        failure_pct=total.failure_pct,
        p50_ms=total.p50_ms,
        p99_ms=total.p99_ms,
        errors=total.errors,
        modes={m: _mode_summary(rs) for m, rs in sorted(by_mode.items())},
        versions=versions,
        ws_connections=len(ends),
        ws_abnormal=sum(1 for e in ends if e.get("abnormal")),
        ws_ends=dict(Counter(str(e.get("end_kind")) for e in ends)),
        ws_close_codes=dict(Counter(str(e.get("code")) for e in ends)),
        ws_versions=dict(Counter(str(e.get("version")) for e in ends)),
        timeline=timeline(recs, bucket),
    )


# ---------------------------------------------------------------------------------------------
# Running probers as processes (one event loop per process, so they use both cores)
# ---------------------------------------------------------------------------------------------
def _raise_priority() -> None:
    """Runs in the prober's child process: a slightly higher CPU priority (where permitted), so that
    other load on a small machine delays the probers' sends less than the system they measure."""
    with contextlib.suppress(OSError):
        os.nice(-5)


class ProbeProcess:
    """One prober (``python -m bench.prober ...``) writing JSON lines to ``out``."""

    def __init__(self, args: Sequence[str], out: Path, log: Path) -> None:
        self.args = list(args)
        self.out = out
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.tail = Tail(out)

    def start(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text("")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.prober", *self.args, "--out", str(self.out)],
                preexec_fn=_raise_priority,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def stop(self, wait: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Traffic:
    """HTTP probers in both modes plus WebSocket clients against one target, as child processes.

    All of them share ``epoch`` (a ``time.monotonic()`` value of this process), so their records
    and the caller's own timestamps (``self.now()``) are on one time axis.
    """

    def __init__(
        self,
        host: str,
        out_dir: Path,
        *,
        port: int = 80,
        rate: float = 200.0,
        ws_clients: int = 20,
        duration: float = 300.0,
        modes: Sequence[Mode] = MODES,
        pool: int = 8,
    ) -> None:
        self.host = check_target(host)
        self.out_dir = out_dir
        self.epoch = time.monotonic()
        self.rate = rate
        self.ws_clients = ws_clients
        self.procs: dict[str, ProbeProcess] = {}
        common = [
            "--host",
            self.host,
            "--port",
            str(port),
            "--duration",
            str(duration),
            "--epoch",
            repr(self.epoch),
        ]
        log = out_dir / "probers.log"
        for mode in modes:
            self.procs[mode] = ProbeProcess(
                ["http", *common, "--mode", mode, "--rate", str(rate), "--pool", str(pool)],
                out_dir / f"http-{mode}.jsonl",
                log,
            )
        if ws_clients:
            self.procs["ws"] = ProbeProcess(
                ["ws", *common, "--clients", str(ws_clients)], out_dir / "ws.jsonl", log
            )
        self.seen: list[Record] = []

    def now(self) -> float:
        return time.monotonic() - self.epoch

    def start(self, settle: float = 1.5, timeout: float = 20.0) -> None:
        """Starts every prober and waits until each has recorded ``settle`` seconds of traffic."""
        for p in self.procs.values():
            p.start()
        deadline = time.monotonic() + timeout
        need = {name: (int(self.rate * settle) if name != "ws" else self.ws_clients) for name in self.procs}
        got: Counter[str] = Counter()
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                for r in p.tail.read():
                    self.seen.append(r)
                    if r.get("kind") == "http" or r.get("event") == "open":
                        got[name] += 1
                if not p.running():
                    raise RuntimeError(f"prober {name} exited early; see {p.log}")
            if all(got[n] >= k for n, k in need.items()):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"probers did not start within {timeout:.0f}s (records: {dict(got)}); see "
            f"{self.out_dir / 'probers.log'}"
        )

    def poll(self) -> list[Record]:
        """Records written since the last call (for live progress)."""
        new: list[Record] = []
        for p in self.procs.values():
            new.extend(p.tail.read())
        self.seen.extend(new)
        return new

    def stop(self) -> list[Record]:
        """Stops every prober (in-flight requests finish, clients close with 1000); returns all records."""
        for p in self.procs.values():
            if p.proc is not None and p.proc.poll() is None:
                p.proc.send_signal(signal.SIGINT)
        for p in self.procs.values():
            p.stop()
        return self.records()

    def records(self) -> list[Record]:
        return read_jsonl(p.out for p in self.procs.values())

    def __enter__(self) -> Traffic:
        return self

    def __exit__(self, *_: object) -> None:
        for p in self.procs.values():
            if p.running():
                p.stop()


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.prober", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("http", "ws"):
        p = sub.add_parser(name)
        p.add_argument("--host", required=True, help="an IP in 10.96.0.0/16, 10.88.0.0/16 or 127.0.0.1")
        p.add_argument("--port", type=int, default=80)
        p.add_argument("--duration", type=float, default=60.0, help="seconds (upper bound)")
        p.add_argument("--epoch", type=float, default=None, help="time.monotonic() value of t=0")
        p.add_argument("--out", type=Path, required=True, help="JSON lines file")
        if name == "http":
            p.add_argument("--mode", choices=MODES, default="close")
            p.add_argument("--rate", type=float, default=200.0, help="requests per second")
            p.add_argument("--max-requests", type=int, default=None)
            p.add_argument("--pool", type=int, default=8, help="keep-alive connections")
            p.add_argument("--path", default="/")
            p.add_argument("--timeout", type=float, default=5.0)
        else:
            p.add_argument("--clients", type=int, default=20)
            p.add_argument("--path", default="/ws")
    s = sub.add_parser("summary", help="summarize JSON lines files")
    s.add_argument("files", nargs="+", type=Path)
    return ap


async def _run_cli(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with args.out.open("a") as f:
        writer = JsonlWriter(f)
        flusher = asyncio.create_task(_flusher(writer, 0.2, stop))
        try:
            if args.cmd == "http":
                cfg = HttpConfig(
                    host=args.host,
                    port=args.port,
                    path=args.path,
                    mode=args.mode,
                    rate=args.rate,
                    duration=args.duration,
                    max_requests=args.max_requests,
                    timeout=args.timeout,
                    pool=args.pool,
                )
                await run_http(cfg, writer, epoch=args.epoch, stop=stop)
            else:
                wcfg = WsConfig(
                    host=args.host,
                    port=args.port,
                    path=args.path,
                    clients=args.clients,
                    duration=args.duration,
                )
                await run_ws(wcfg, writer, epoch=args.epoch, stop=stop)
        finally:
            stop.set()
            await flusher
            writer.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "summary":
        print(summarize(read_jsonl(args.files)).line())
        return 0
    try:
        check_target(args.host)
    except UnsafeTarget as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run_cli(args))


def summary_table(summaries: Mapping[str, Summary]) -> str:
    """A plain-text table, one line per named summary."""
    return "\n".join(f"{name}: {s.line()}" for name, s in summaries.items())


if __name__ == "__main__":
    sys.exit(main())
