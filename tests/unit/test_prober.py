"""The traffic prober against local servers on 127.0.0.1 that fail on purpose and count what they
did: every failure a server causes is counted exactly once by the prober, per mode, and nothing a
server does wrong can pass as a success. Also: schedule, bounds, the validity rule, the command
line, and the refusal of every target outside the cluster."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from bench import prober
from bench.prober import (
    HttpConfig,
    Record,
    Response,
    UnsafeTarget,
    WsConfig,
    check_target,
    decide,
    run_http,
    run_ws,
    summarize,
    validity,
)

ROOT = Path(__file__).resolve().parents[2]
OK_HEAD = b"HTTP/1.1 200 OK\r\nX-Version: v1\r\nX-Pod: pod-a\r\nContent-Length: 2\r\n"


@dataclass
class Counts:
    """What a test server did, by its own count."""

    connections: int = 0
    requests: int = 0
    answered: int = 0
    resets: int = 0
    unanswered: int = 0
    ws_cut: int = 0
    peers: set[Any] = field(default_factory=set)


Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Counts, int], Awaitable[None]]


def reset(writer: asyncio.StreamWriter) -> None:
    """Closes the connection with a TCP RST (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


@asynccontextmanager
async def raw_server(behaviour: Behaviour) -> AsyncIterator[tuple[int, Counts]]:
    counts = Counts()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts.connections += 1
        counts.peers.add(writer.get_extra_info("peername"))
        try:
            await behaviour(reader, writer, counts, counts.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort() if writer.transport.is_closing() else writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    try:
        yield port, counts
    finally:
        server.close()


async def answer_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, c: Counts, n: int) -> None:
    while (req := await read_request(reader)) is not None:
        c.requests += 1
        close = b"connection: close" in req.lower()
        writer.write(OK_HEAD + (b"Connection: close\r\n" if close else b"") + b"\r\nok")
        await writer.drain()
        c.answered += 1
        if close:
            return


async def reset_every_other_connection(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Counts, n: int
) -> None:
    if n % 2 == 0:
        if await read_request(r) is not None:
            c.requests += 1
            c.resets += 1
            reset(w)
        return
    await answer_all(r, w, c, n)


async def reset_fifth_request(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Counts, n: int) -> None:
    served = 0
    while await read_request(r) is not None:
        c.requests += 1
        served += 1
        if served == 5:
            c.resets += 1
            reset(w)
            return
        w.write(OK_HEAD + b"\r\nok")
        await w.drain()
        c.answered += 1


async def never_answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Counts, n: int) -> None:
    while await read_request(r) is not None:
        c.requests += 1
        c.unanswered += 1


async def answer_503(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Counts, n: int) -> None:
    while await read_request(r) is not None:
        c.requests += 1
        w.write(b"HTTP/1.1 503 Service Unavailable\r\nX-Version: v1\r\nContent-Length: 0\r\n\r\n")
        await w.drain()
        c.answered += 1


def fixed_answer(raw: bytes, *, close_after: bool = True) -> Behaviour:
    async def behaviour(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Counts, n: int) -> None:
        while await read_request(r) is not None:
            c.requests += 1
            w.write(raw)
            await w.drain()
            if close_after:
                return

    return behaviour


def run_against(behaviour: Behaviour, cfg: HttpConfig) -> tuple[list[Record], Counts]:
    records: list[Record] = []

    async def main() -> Counts:
        async with raw_server(behaviour) as (port, counts):
            await run_http(replace(cfg, port=port), records.append)
            await asyncio.sleep(0.05)
            return counts

    counts = asyncio.run(main())
    return records, counts


def outcomes(records: list[Record]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        out[r["outcome"]] = out.get(r["outcome"], 0) + 1
    return out


def cfg(mode: str = "new", **kw: Any) -> HttpConfig:
    base: dict[str, Any] = {"host": "127.0.0.1", "mode": mode, "rate": 100, "duration": 1.0}
    return HttpConfig(**{**base, **kw})


# ---------------------------------------------------------------------------------------------
# Each failure a server causes is counted exactly, per mode
# ---------------------------------------------------------------------------------------------
def test_a_reset_of_every_other_new_connection_is_counted_exactly() -> None:
    records, server = run_against(reset_every_other_connection, cfg("new"))
    assert len(records) == 100 == server.connections
    assert server.resets == 50
    assert outcomes(records) == {"ok": server.answered, "reset": server.resets}


def test_b_a_reset_of_the_fifth_request_of_each_kept_alive_connection_is_keepalive_reset() -> None:
    # Two seconds: on a busy machine the pool opens extra connections while all are busy (up to
    # 4x its size), fewer of which reach their 5th request; one second then gave as few as 13.
    records, server = run_against(reset_fifth_request, cfg("keepalive", pool=3, rate=150, duration=2.0))
    assert server.resets >= 20
    assert outcomes(records) == {"ok": server.answered, "keepalive_reset": server.resets}
    assert all(r["reused"] and r["conn_requests"] == 4 for r in records if r["outcome"] != "ok")


def test_c_a_server_that_accepts_and_never_answers_times_every_request_out() -> None:
    records, server = run_against(never_answer, cfg("new", rate=40, duration=0.5, timeout=0.3))
    assert server.unanswered == len(records) == 20
    assert outcomes(records) == {"timeout": server.unanswered}
    records, server = run_against(never_answer, cfg("keepalive", rate=40, duration=0.5, timeout=0.3, pool=2))
    assert outcomes(records) == {"timeout": len(records)} and server.unanswered == len(records)


@pytest.mark.parametrize("mode", ["new", "keepalive"])
def test_d_503_is_a_failure_in_both_modes(mode: str) -> None:
    records, server = run_against(answer_503, cfg(mode, rate=50, duration=0.5))
    assert outcomes(records) == {"http_5xx": server.answered} and server.answered == 25


def test_refused_connections_are_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    records: list[Record] = []
    asyncio.run(run_http(cfg("new", port=port, rate=20, duration=0.25), records.append))
    assert outcomes(records) == {"refused": 5}


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nX-Version: v1\r\nContent-Length: 0\r\n\r\n",
            "http_3xx",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "no_version"),
        (b"HTTP/1.1 200 OK\r\nX-Version: v1\r\nContent-Length: 10\r\n\r\nok", "truncated"),
        (b"HTTP/1.1 200 OK\r\nX-Version: v1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "truncated"),
        (b"HTTP/1.1 200 OK\r\nX-Ver", "truncated"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "protocol"),
        (b"", "eof"),
    ],
)
def test_only_a_complete_2xx_with_a_version_is_a_success(raw: bytes, kind: str) -> None:
    records, _ = run_against(fixed_answer(raw), cfg("new", rate=20, duration=0.1))
    assert outcomes(records) == {kind: 2}


def test_expected_versions() -> None:
    records, _ = run_against(answer_all, cfg("new", rate=20, duration=0.1, expect=frozenset({"v2"})))
    assert outcomes(records) == {"unexpected_version": 2}
    records, _ = run_against(answer_all, cfg("new", rate=20, duration=0.1, expect=frozenset({"v1", "v2"})))
    assert outcomes(records) == {"ok": 2}


def test_decide_has_one_path_to_success() -> None:
    ok = Response(200, {"x-version": "v1"}, b"")
    assert decide(ok, None, reused=False) == "ok"
    assert decide(ok, RuntimeError("late"), reused=False) != "ok"
    assert decide(None, None, reused=True) == "prober_error"
    assert decide(Response(204, {}, b""), None, reused=False) == "no_version"


def test_chunked_bodies_and_connection_close_in_keepalive_mode_are_reopened_without_counting() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nX-Version: v1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    records, server = run_against(fixed_answer(chunked), cfg("keepalive", rate=50, duration=0.4, pool=2))
    assert outcomes(records) == {"ok": 20}
    assert server.connections == 20  # each answer said Connection: close: a new connection each time


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_record() -> None:
    async def one_then_close(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Counts, n: int) -> None:
        if await read_request(r) is None:
            return
        c.requests += 1
        w.write(OK_HEAD + b"\r\nok")
        await w.drain()
        c.answered += 1
        await asyncio.sleep(0.02)
        w.close()  # idle close, as servers do after an idle timeout

    records, server = run_against(one_then_close, cfg("keepalive", rate=20, duration=0.5, pool=1))
    assert outcomes(records) == {"ok": 10}
    assert server.connections == 10


def test_new_mode_opens_a_connection_per_request_and_keepalive_reuses_a_pool() -> None:
    _, server = run_against(answer_all, cfg("new", rate=100, duration=0.4))
    assert server.connections == 40 == len(server.peers)
    records, server = run_against(answer_all, cfg("keepalive", rate=100, duration=0.4, pool=3))
    assert outcomes(records) == {"ok": 40} and server.connections <= 3


def test_open_loop_schedule_does_not_wait_for_slow_answers() -> None:
    async def slow(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Counts, n: int) -> None:
        if await read_request(r) is not None:
            await asyncio.sleep(0.4)
            w.write(OK_HEAD + b"\r\nok")
            await w.drain()

    started = time.monotonic()
    records, _ = run_against(slow, cfg("new", rate=50, duration=0.6))
    assert time.monotonic() - started < 2.5  # closed-loop sending would take 30 * 0.4 s
    assert outcomes(records) == {"ok": 30}
    assert sorted(r["t_send"] for r in records) == pytest.approx([i / 50 for i in range(30)], abs=1e-3)
    assert all(r["latency_ms"] >= 390 for r in records)


def test_bounded_by_count_and_by_time_and_by_stop() -> None:
    assert len(run_against(answer_all, cfg(rate=200, duration=5, max_requests=7))[0]) == 7
    assert len(run_against(answer_all, cfg(rate=100, duration=0.3))[0]) == 30
    records: list[Record] = []

    async def main() -> None:
        async with raw_server(answer_all) as (port, _):
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.25, stop.set)
            await run_http(cfg(port=port, duration=30), records.append, stop=stop)

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 2 and 15 <= len(records) <= 35


# ---------------------------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------------------------
def ws_server(
    after_messages: Callable[[asyncio.StreamWriter, Counts], Awaitable[None]], messages: int = 2
) -> Behaviour:
    """A WebSocket server on raw streams: handshake, ``messages`` text frames, then ``after_messages``."""

    async def behaviour(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Counts, n: int) -> None:
        head = await read_request(r)
        if head is None:
            return
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        w.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept
            + b"\r\n\r\n"
        )
        for seq in range(messages):
            body = json.dumps({"version": "v3", "pod": "pod-w", "seq": seq}).encode()
            w.write(bytes([0x81, len(body)]) + body)
            await w.drain()
            await asyncio.sleep(0.03)
        await after_messages(w, c)

    return behaviour


async def answer_close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """Waits for the client's close frame and answers it (the clean end the client starts)."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            b0, b1 = await r.readexactly(2)
            payload = await r.readexactly((b1 & 0x7F) + 4)  # masked: 4 key bytes first
            if b0 & 0x0F == 0x8:
                w.write(bytes([0x88, 2]) + bytes(a ^ payload[i % 4] for i, a in enumerate(payload[4:6])))
                await w.drain()
                return


def cut_first(n: int) -> Behaviour:
    """A WebSocket server that cuts (RST, no close frame) its first ``n`` connections after two
    messages and holds every later one open until the client closes it."""

    async def behaviour(r: asyncio.StreamReader, w: asyncio.StreamWriter, c: Counts, conn: int) -> None:
        async def after(w: asyncio.StreamWriter, c: Counts) -> None:
            if conn <= n:
                c.ws_cut += 1
                reset(w)
            else:
                await answer_close(r, w)

        await ws_server(after)(r, w, c, conn)

    return behaviour


def close_with(code: int) -> Callable[[asyncio.StreamWriter, Counts], Awaitable[None]]:
    async def after(w: asyncio.StreamWriter, c: Counts) -> None:
        w.write(bytes([0x88, 2]) + struct.pack("!H", code))
        await w.drain()
        await asyncio.sleep(0.05)

    return after


def run_ws_against(
    behaviour: Behaviour, clients: int = 2, duration: float = 0.6, stall: float = 4.0
) -> tuple[list[Record], Counts]:
    records: list[Record] = []

    async def main() -> Counts:
        async with raw_server(behaviour) as (port, counts):
            await run_ws(
                WsConfig(
                    host="127.0.0.1", port=port, clients=clients, duration=duration, stall_seconds=stall
                ),
                records.append,
            )
            return counts

    return records, asyncio.run(main())


def ends(records: list[Record]) -> list[Record]:
    return [r for r in records if r.get("event") == "end"]


def test_e_a_websocket_closed_without_a_close_frame_is_an_abnormal_end_counted_exactly() -> None:
    records, server = run_ws_against(cut_first(7), clients=3, duration=1.5)
    lost = [e for e in ends(records) if e["end_kind"] == "lost"]
    assert server.ws_cut == 7
    assert len(lost) == server.ws_cut
    assert all(e["abnormal"] and e["code"] == 1006 and e["messages"] == 2 for e in lost)
    assert [e for e in ends(records) if e["abnormal"]] == lost
    assert {c["state"] for c in records if c.get("event") == "client"} == {"stopped"}


def test_ws_going_away_is_clean_and_clients_reconnect() -> None:
    records, server = run_ws_against(ws_server(close_with(1001)), clients=2, duration=0.6)
    closed = [e for e in ends(records) if e["end_kind"] == "closed"]
    assert len(closed) >= 4 and all(e["code"] == 1001 and not e["abnormal"] for e in closed)
    assert {(e["version"], e["pod"]) for e in closed} == {("v3", "pod-w")}


def test_ws_other_close_codes_and_silence_are_abnormal() -> None:
    records, _ = run_ws_against(ws_server(close_with(1011)), clients=1, duration=0.4)
    assert {
        (e["end_kind"], e["code"], e["abnormal"]) for e in ends(records) if e["end_kind"] != "stopped"
    } == {("closed", 1011, True)}

    async def silent(w: asyncio.StreamWriter, c: Counts) -> None:
        await asyncio.sleep(2)

    records, _ = run_ws_against(ws_server(silent, messages=0), clients=1, duration=1.0, stall=0.3)
    assert ends(records)[0]["end_kind"] == "stalled" and ends(records)[0]["abnormal"]


def test_ws_refused_handshake_and_connect_are_abnormal() -> None:
    records, _ = run_ws_against(
        fixed_answer(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"), clients=1, duration=0.3
    )
    assert {(e["end_kind"], e["detail"]) for e in ends(records)} == {("handshake", "HTTP 503")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recs: list[Record] = []
    asyncio.run(
        run_ws(WsConfig(host="127.0.0.1", port=port, clients=1, duration=0.5, max_connects=2), recs.append)
    )
    assert [(e["end_kind"], e["detail"], e["abnormal"]) for e in ends(recs)] == [
        ("connect", "refused", True)
    ] * 2


def test_ws_client_stop_is_clean_and_every_client_is_accounted_for() -> None:
    async def hold(w: asyncio.StreamWriter, c: Counts) -> None:
        await asyncio.sleep(5)

    records, _ = run_ws_against(ws_server(hold, messages=1), clients=3, duration=0.4)
    assert [e["end_kind"] for e in ends(records)] == ["stopped"] * 3
    assert sorted(c["client"] for c in records if c.get("event") == "client") == [0, 1, 2]


def test_a_dead_client_task_is_an_abnormal_end(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.prober import ws as ws_module

    async def boom(*args: Any) -> Record:
        raise RuntimeError("client bug")

    monkeypatch.setattr(ws_module, "_session", boom)
    records, _ = run_ws_against(ws_server(close_with(1000)), clients=2, duration=0.3)
    dead = [c for c in records if c.get("event") == "client" and c["state"] == "dead"]
    assert len(dead) == 2
    assert len([e for e in ends(records) if e["end_kind"] == "client_died" and e["abnormal"]]) == 2


# ---------------------------------------------------------------------------------------------
# The validity rule and summaries
# ---------------------------------------------------------------------------------------------
def rec(t: float, outcome: str = "ok", mode: str = "new", lag: float = 1.0, version: str = "v1") -> Record:
    return {
        "kind": "http",
        "mode": mode,
        "t_send": t,
        "lag_ms": lag,
        "outcome": outcome,
        "error": None if outcome == "ok" else outcome,
        "version": version if outcome == "ok" else None,
        "latency_ms": 1.0,
    }


def run_of(records: list[Record], rate: float = 100, mode: str = "new") -> list[Record]:
    sent = len([r for r in records if r.get("kind") == "http" and r["mode"] == mode])
    return [
        {
            "kind": "meta",
            "event": "start",
            "prober": f"http-{mode}",
            "http_mode": mode,
            "rate": rate,
            "t_start": 0.0,
        },
        *records,
        {"kind": "meta", "event": "done", "prober": f"http-{mode}", "sent": sent},
    ]


def test_a_run_that_kept_its_schedule_is_valid() -> None:
    assert validity(run_of([rec(i / 100) for i in range(300)])).valid


def test_a_stall_caught_up_in_a_burst_is_invalid() -> None:
    # 2 s stall: scheduled times look perfect, but the sends left late, in a burst.
    records = [
        rec(i / 100, lag=(max(0.0, 3.0 - i / 100) * 1000 if 100 <= i < 300 else 1.0)) for i in range(500)
    ]
    v = validity(run_of(records))
    assert not v.valid
    assert any("window" in r for r in v.schedule) and any("lag p99" in r for r in v.schedule)


def test_lag_alone_makes_a_run_invalid() -> None:
    v = validity(run_of([rec(i / 100, lag=300.0 if i % 20 == 0 else 1.0) for i in range(400)]))
    assert v.schedule and "lag p99" in v.schedule[0]


def test_missing_records_outcomes_and_done_records_are_prober_errors() -> None:
    records = run_of([rec(i / 100) for i in range(200)])
    del records[5]["outcome"]
    v = validity(records)
    assert any("without an outcome" in r for r in v.prober_errors)
    assert summarize(records).failed == 1  # a record without an outcome is never a success
    assert any("no done record" in r for r in validity(records[:-1]).prober_errors)
    assert any("but 199 records" in r for r in validity(records[:3] + records[4:]).prober_errors)
    assert not validity([rec(0.0)]).valid  # no start record: nothing can be judged
    ws = [
        {"kind": "meta", "event": "start", "prober": "ws", "ws_clients": 3},
        {"kind": "ws", "event": "client", "client": 0, "state": "stopped"},
    ]
    assert any("1 of 3 clients" in r for r in validity(ws).prober_errors)


def test_unparseable_lines_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(prober.BadRecords):
        prober.read_jsonl([path])
    path.write_text('{"a": 1}\n{"b"')  # a line still being written is left for later
    assert prober.read_jsonl([path]) == [{"a": 1}]


def test_summary_counts_percentiles_versions_and_windows() -> None:
    records = [rec(i * 0.01, version="v1" if i < 50 else "v2") for i in range(100)]
    records += [rec(1.0, "refused"), rec(1.01, "keepalive_reset", mode="keepalive")]
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
    assert s.errors == {"refused": 1, "keepalive_reset": 1}
    assert s.modes["new"].failed == 1 and s.modes["keepalive"].sent == 1
    assert s.versions["v1"].count == 50 and s.versions["v2"].first == pytest.approx(0.5)
    assert (s.ws_connections, s.ws_abnormal) == (2, 1)
    window = summarize(records, window=(0.6, 0.8))
    assert window.sent == 21 and window.failed == 0 and window.ws_abnormal == 1


def test_tail_reads_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    tail = prober.Tail(path)
    assert tail.read() == []
    path.write_text('{"a": 1}\n{"b"')
    assert tail.read() == [{"a": 1}]
    with path.open("a") as f:
        f.write(": 2}\n")
    assert tail.read() == [{"b": 2}]


# ---------------------------------------------------------------------------------------------
# Network safety and the command line
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
        "",
    ],
)
def test_every_other_target_is_refused(host: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(host)


def test_probers_refuse_before_sending_anything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnsafeTarget):
        asyncio.run(run_http(HttpConfig(host="1.1.1.1"), lambda r: None))
    with pytest.raises(UnsafeTarget):
        asyncio.run(run_ws(WsConfig(host="1.1.1.1"), lambda r: None))
    with pytest.raises(UnsafeTarget):
        prober.Traffic("192.168.0.1", Path("/nonexistent"))
    from bench.prober.__main__ import main

    out = tmp_path / "out.jsonl"
    assert main(["http://9.9.9.9/", "--seconds", "1", "--out", str(out)]) == 2
    assert main(["http://example.com/", "--seconds", "1"]) == 2
    assert "refused" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    "bad",
    [
        {"duration": 0},
        {"duration": prober.MAX_DURATION + 1},
        {"rate": 0},
        {"rate": prober.MAX_RATE * 2},
        {"max_requests": 0},
    ],
)
def test_unbounded_or_empty_runs_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        asyncio.run(run_http(cfg(**bad), lambda r: None))


def test_command_line_prints_one_json_summary(tmp_path: Path) -> None:
    async def serve_and_probe() -> tuple[str, Counts]:
        async with raw_server(reset_every_other_connection) as (port, counts):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.prober",
                f"http://127.0.0.1:{port}/",
                "--rate",
                "50",
                "--seconds",
                "3",
                "--modes",
                "new,keepalive",
                "--json",
                "--out",
                str(tmp_path / "r.jsonl"),
                cwd=ROOT,
                stdout=subprocess.PIPE,
            )
            stdout, _ = await proc.communicate()
            assert proc.returncode == 0
            return stdout.decode(), counts

    stdout, server = asyncio.run(serve_and_probe())
    lines = stdout.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert set(report["modes"]) == {"new", "keepalive"}
    assert report["modes"]["new"]["sent"] == report["modes"]["keepalive"]["sent"] == 150
    failed = report["modes"]["new"]["failed"] + report["modes"]["keepalive"]["failed"]
    assert failed == server.resets > 0
    for m in report["modes"].values():
        assert set(m["lag_ms"]) == {"p50", "p99", "max"} and len(m["per_second"]) >= 1
    assert isinstance(report["valid"], bool)
