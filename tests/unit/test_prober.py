"""The traffic prober against a local aiohttp server on 127.0.0.1: schedule, bounds, modes,
error kinds, WebSocket ends, summaries, and the refusal of every target outside the cluster."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSCloseCode, web

# tests/unit has no package marker, so the repository root (home of `bench`) is added here.
from bench import prober  # noqa: E402
from bench.prober import (  # noqa: E402
    HttpConfig,
    Record,
    UnsafeTarget,
    WsConfig,
    check_target,
    run_http,
    run_ws,
    summarize,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(routes: dict[str, Handler]) -> AsyncIterator[int]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port
    finally:
        await runner.cleanup()


def version_handler(version: str = "v1", peers: list[Any] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if peers is not None and request.transport is not None:
            peers.append(request.transport.get_extra_info("peername"))
        return web.json_response({"version": version}, headers={"X-Version": version, "X-Pod": "pod-a"})

    return handler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_http_sync(cfg: HttpConfig, routes: dict[str, Handler] | None = None) -> list[Record]:
    records: list[Record] = []

    async def main() -> None:
        if routes is None:
            await run_http(cfg, records.append)
            return
        async with serve(routes) as port:
            await run_http(HttpConfig(**{**cfg.__dict__, "port": port}), records.append)

    asyncio.run(main())
    return records


# ---------------------------------------------------------------------------------------------
# Network safety
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["10.96.0.10", "10.96.255.254", "10.88.0.5", "127.0.0.1"])
def test_cluster_ranges_and_loopback_are_allowed(host: str) -> None:
    assert check_target(host) == host


@pytest.mark.parametrize(
    "host",
    [
        "8.8.8.8",
        "10.97.0.1",
        "10.87.255.255",
        "192.168.1.10",
        "172.17.0.1",
        "127.0.0.2",
        "::1",
        "localhost",
        "example.com",
        "10.96.0.0/16",
        "",
    ],
)
def test_every_other_target_is_refused(host: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(host)


def test_probers_refuse_before_sending_anything() -> None:
    with pytest.raises(UnsafeTarget):
        asyncio.run(run_http(HttpConfig(host="1.1.1.1"), lambda r: None))
    with pytest.raises(UnsafeTarget):
        asyncio.run(run_ws(WsConfig(host="1.1.1.1"), lambda r: None))
    with pytest.raises(UnsafeTarget):
        prober.Traffic("192.168.0.1", Path("/nonexistent"))


def test_command_line_refuses_unsafe_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert prober.main(["http", "--host", "9.9.9.9", "--duration", "1", "--out", str(out)]) == 2
    assert "refused" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "cfg",
    [
        HttpConfig(host="127.0.0.1", duration=0),
        HttpConfig(host="127.0.0.1", duration=prober.MAX_DURATION + 1),
        HttpConfig(host="127.0.0.1", rate=0),
        HttpConfig(host="127.0.0.1", rate=prober.MAX_RATE * 2),
        HttpConfig(host="127.0.0.1", max_requests=0),
    ],
)
def test_unbounded_or_empty_runs_are_refused(cfg: HttpConfig) -> None:
    with pytest.raises(ValueError):
        asyncio.run(run_http(cfg, lambda r: None))


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------
def test_open_loop_schedule_does_not_wait_for_slow_answers() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.4)
        return web.Response(text="{}", headers={"X-Version": "v1", "X-Pod": "p"})

    started = time.monotonic()
    records = run_http_sync(HttpConfig(host="127.0.0.1", rate=50, duration=0.6), {"/": slow})
    elapsed = time.monotonic() - started
    assert len(records) == 30
    assert all(r["error"] is None and r["status"] == 200 for r in records)
    sends = sorted(r["t_send"] for r in records)
    assert sends == pytest.approx([i / 50 for i in range(30)], abs=1e-3)
    assert all(r["latency_ms"] >= 390 for r in records)
    assert elapsed < 2.5  # closed-loop sending would take 30 * 0.4 s


def test_bounded_by_count_and_by_time() -> None:
    routes = {"/": version_handler()}
    assert len(run_http_sync(HttpConfig(host="127.0.0.1", rate=200, duration=5, max_requests=7), routes)) == 7
    assert len(run_http_sync(HttpConfig(host="127.0.0.1", rate=100, duration=0.3), routes)) == 30


def test_records_version_pod_and_latency() -> None:
    records = run_http_sync(
        HttpConfig(host="127.0.0.1", rate=100, duration=0.1), {"/": version_handler("v7")}
    )
    assert records
    for r in records:
        assert r["kind"] == "http" and r["mode"] == "close"
        assert (r["status"], r["version"], r["pod"], r["error"]) == (200, "v7", "pod-a", None)
        assert r["latency_ms"] >= 0 and r["lag_ms"] is not None
    assert sorted(r["seq"] for r in records) == list(range(len(records)))


def test_close_mode_opens_a_connection_per_request_and_keepalive_reuses_a_pool() -> None:
    peers: list[Any] = []
    run_http_sync(
        HttpConfig(host="127.0.0.1", rate=100, duration=0.4, mode="close"),
        {"/": version_handler(peers=peers)},
    )
    assert len(peers) == 40 and len(set(peers)) == 40

    peers.clear()
    run_http_sync(
        HttpConfig(host="127.0.0.1", rate=100, duration=0.4, mode="keepalive", pool=3),
        {"/": version_handler(peers=peers)},
    )
    assert len(peers) == 40 and len(set(peers)) <= 3


def test_error_kinds() -> None:
    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"X-Version": "v1"})

    async def reset(request: web.Request) -> web.Response:
        assert request.transport is not None
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        request.transport.abort()
        await asyncio.sleep(0.1)
        return web.Response()

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.Response()

    def kinds(cfg: HttpConfig, routes: dict[str, Handler] | None) -> set[str]:
        return {r["error"] for r in run_http_sync(cfg, routes)}

    assert kinds(HttpConfig(host="127.0.0.1", port=free_port(), rate=20, duration=0.1), None) == {"refused"}
    assert kinds(HttpConfig(host="127.0.0.1", rate=20, duration=0.1), {"/": fail}) == {"http_5xx"}
    assert kinds(HttpConfig(host="127.0.0.1", rate=20, duration=0.1), {"/": reset}) <= {
        "reset",
        "disconnected",
    }
    assert kinds(HttpConfig(host="127.0.0.1", rate=20, duration=0.1, timeout=0.3), {"/": hang}) == {"timeout"}


def test_stop_event_ends_the_run_early() -> None:
    records: list[Record] = []

    async def main() -> None:
        async with serve({"/": version_handler()}) as port:
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.25, stop.set)
            await run_http(
                HttpConfig(host="127.0.0.1", port=port, rate=100, duration=30), records.append, stop=stop
            )

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 2
    assert 15 <= len(records) <= 35


# ---------------------------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------------------------
def ws_handler(behaviour: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if behaviour == "refuse":
            return web.Response(status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if behaviour == "silent":
            async for _ in ws:  # never sends; returns when the client closes
                pass
            return ws
        for seq in range(2):
            await ws.send_str(json.dumps({"version": "v3", "pod": "pod-w", "seq": seq}))
            await asyncio.sleep(0.05)
        if behaviour == "going-away":
            await ws.close(code=WSCloseCode.GOING_AWAY)
        elif behaviour == "error-code":
            await ws.close(code=WSCloseCode.INTERNAL_ERROR)
        elif behaviour == "drop":
            assert request.transport is not None
            request.transport.abort()
        else:  # "steady": keep sending until the client leaves
            while not ws.closed:
                await ws.send_str(json.dumps({"version": "v3", "pod": "pod-w"}))
                await asyncio.sleep(0.05)
        return ws

    return handler


def run_ws_sync(behaviour: str, clients: int = 2, duration: float = 0.5, stall: float = 4.0) -> list[Record]:
    records: list[Record] = []

    async def main() -> None:
        async with serve({"/ws": ws_handler(behaviour)}) as port:
            cfg = WsConfig(
                host="127.0.0.1", port=port, clients=clients, duration=duration, stall_seconds=stall
            )
            await run_ws(cfg, records.append)

    asyncio.run(main())
    return records


def ends(records: list[Record]) -> list[Record]:
    return [r for r in records if r["event"] == "end"]


def test_ws_going_away_is_clean_and_clients_reconnect() -> None:
    records = run_ws_sync("going-away", clients=2, duration=0.6)
    closed = [e for e in ends(records) if e["end_kind"] == "closed"]
    assert len(closed) >= 4  # each client reconnected after its 1001
    assert all(e["code"] == 1001 and not e["abnormal"] and e["messages"] == 2 for e in closed)
    assert {(e["version"], e["pod"]) for e in closed} == {("v3", "pod-w")}
    assert summarize(records).ws_abnormal == 0


def test_ws_client_stop_is_clean() -> None:
    records = run_ws_sync("steady", clients=3, duration=0.4)
    assert [e["end_kind"] for e in ends(records)] == ["stopped"] * 3
    assert all(e["code"] == 1000 and not e["abnormal"] and e["messages"] > 2 for e in ends(records))
    assert len([r for r in records if r["event"] == "open"]) == 3


@pytest.mark.parametrize(
    ("behaviour", "kind", "code"),
    [("drop", "lost", 1006), ("error-code", "closed", 1011), ("refuse", "handshake", None)],
)
def test_ws_abnormal_ends_are_recorded(behaviour: str, kind: str, code: int | None) -> None:
    records = run_ws_sync(behaviour, clients=1, duration=0.5)
    bad = [e for e in ends(records) if e["abnormal"]]
    assert bad and all(e["end_kind"] == kind and e["code"] == code for e in bad)
    assert summarize(records).ws_abnormal == len(bad)


def test_ws_silence_is_a_stall() -> None:
    records = run_ws_sync("silent", clients=1, duration=1.0, stall=0.3)
    assert [e["end_kind"] for e in ends(records)][0] == "stalled"
    assert ends(records)[0]["abnormal"]


def test_ws_connect_refused_is_abnormal() -> None:
    records: list[Record] = []
    cfg = WsConfig(host="127.0.0.1", port=free_port(), clients=1, duration=0.5, max_connects=2)
    asyncio.run(run_ws(cfg, records.append))
    assert len(ends(records)) == 2  # bounded by max_connects
    assert all(
        e["end_kind"] == "connect" and e["detail"] == "refused" and e["abnormal"] for e in ends(records)
    )


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------
def http(
    t: float, version: str | None = "v1", error: str | None = None, latency: float = 1.0, mode: str = "close"
) -> Record:
    return {
        "kind": "http",
        "mode": mode,
        "t_send": t,
        "lag_ms": 0.0,
        "status": None if error else 200,
        "error": error,
        "version": None if error else version,
        "pod": "p",
        "latency_ms": latency,
    }


def test_summary_counts_percentiles_and_versions() -> None:
    records = [http(i * 0.01, "v1" if i < 50 else "v2", latency=float(i + 1)) for i in range(100)]
    records += [http(1.0, error="refused"), http(1.01, error="reset", mode="keepalive")]
    records += [
        {
            "kind": "ws",
            "event": "end",
            "t_open": 0.0,
            "t": 0.5,
            "end_kind": "closed",
            "code": 1001,
            "abnormal": False,
            "version": "v1",
        },
        {
            "kind": "ws",
            "event": "end",
            "t_open": 0.5,
            "t": 0.9,
            "end_kind": "lost",
            "code": 1006,
            "abnormal": True,
            "version": "v2",
        },
    ]
    s = summarize(records)
    assert (s.sent, s.failed) == (102, 2)
    assert s.failure_pct == pytest.approx(100 * 2 / 102)
    assert (s.p50_ms, s.p99_ms) == (50.0, 99.0)
    assert s.errors == {"refused": 1, "reset": 1}
    assert s.modes["close"].failed == 1 and s.modes["keepalive"].sent == 1
    assert s.versions["v1"].count == 50 and s.versions["v1"].last == pytest.approx(0.49)
    assert s.versions["v2"].first == pytest.approx(0.5)
    assert (s.ws_connections, s.ws_abnormal) == (2, 1)
    assert s.ws_close_codes == {"1001": 1, "1006": 1}
    assert s.timeline[0]["versions"] == {"v1": 50, "v2": 50}
    assert s.timeline[1]["errors"] == {"refused": 1, "reset": 1}

    window = summarize(records, window=(0.6, 0.8))
    assert window.sent == 21 and window.failed == 0 and window.ws_abnormal == 1


def test_percentile_is_nearest_rank() -> None:
    assert prober.percentile([], 50) is None
    assert prober.percentile([3.0], 99) == 3.0
    assert prober.percentile([float(i) for i in range(1, 11)], 50) == 5.0
    assert prober.percentile([float(i) for i in range(1, 11)], 99) == 10.0


def test_tail_reads_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    tail = prober.Tail(path)
    assert tail.read() == []
    path.write_text('{"a": 1}\n{"b"')
    assert tail.read() == [{"a": 1}]
    with path.open("a") as f:
        f.write(": 2}\n")
    assert tail.read() == [{"b": 2}]
    assert tail.read() == []


# ---------------------------------------------------------------------------------------------
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
