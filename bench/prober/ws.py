"""The WebSocket prober: N clients on raw asyncio streams (RFC 6455), each holding one connection
to ``/ws`` and reconnecting when it ends.

Every connection becomes an ``open`` record (or a failed-connect ``end``) and an ``end`` record.
A close frame with 1000 or 1001 is a clean end; anything else is abnormal: a connection lost
without a close frame (1006: reset, EOF), another close code, a failed handshake or connect, or
no message for ``stall_seconds`` (the test app sends one every second). When the run ends, each
of the N clients is accounted for with one ``client`` record: ``stopped`` (its last connection
was open and the prober closed it with 1000) or ``dead`` (its task failed: an abnormal end of its
own, so a client that vanishes can never go unnoticed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from bench.prober.http import (
    ConnectFailed,
    Connection,
    ProtocolError,
    Record,
    Sink,
    Truncated,
    decide,
)
from bench.prober.target import MAX_WS_CLIENTS, check_bounds, check_target

CLEAN_CLOSE_CODES = frozenset({1000, 1001})
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


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


class Ended(Exception):
    """The connection ended; ``fields`` describe how."""

    def __init__(self, **fields: Any) -> None:
        super().__init__(fields.get("detail", ""))
        self.fields = fields


def _frame(opcode: int, payload: bytes = b"") -> bytes:
    """A client frame: FIN set, masked (clients must mask)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _read_frame(reader: asyncio.StreamReader) -> tuple[bool, int, bytes]:
    b0, b1 = await reader.readexactly(2)
    if b1 & 0x80:
        raise ProtocolError("masked frame from the server")
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if n > 1 << 20:
        raise ProtocolError("frame too large")
    return bool(b0 & 0x80), b0 & 0x0F, await reader.readexactly(n)


class WsConnection:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.partial = b""

    @classmethod
    async def open(
        cls, host: str, port: int, path: str, timeout: float, rec: Record | None = None
    ) -> WsConnection:
        """Connects and completes the handshake; raises ``Ended`` with the reason when it cannot."""
        try:
            async with asyncio.timeout(timeout):
                conn = await Connection.open(host, port, timeout, rec)
                key = base64.b64encode(os.urandom(16)).decode()
                conn.writer.write(
                    (
                        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\nUser-Agent: zdr-prober\r\n\r\n"
                    ).encode()
                )
                await conn.writer.drain()
                resp = await read_head(conn)
        except (ConnectFailed, TimeoutError, OSError, Truncated, ProtocolError) as exc:
            kind = decide(None, exc, reused=False)
            raise Ended(end_kind="connect", code=None, abnormal=True, detail=kind) from exc
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        if resp[0] != 101 or resp[1].get("sec-websocket-accept") != accept:
            conn.close()
            raise Ended(end_kind="handshake", code=None, abnormal=True, detail=f"HTTP {resp[0]}")
        return cls(conn)

    async def receive(self) -> tuple[int, bytes]:
        """The next text/binary message or close frame; answers pings on the way."""
        while True:
            fin, op, payload = await _read_frame(self.conn.reader)
            if op == OP_PING:
                await self.send(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                return op, payload
            if op in (OP_TEXT, OP_BINARY, OP_CONT):
                self.partial += payload
                if fin:
                    data, self.partial = self.partial, b""
                    return OP_TEXT if op != OP_BINARY else op, data
                continue
            raise ProtocolError(f"unknown opcode {op}")

    async def send(self, opcode: int, payload: bytes = b"") -> None:
        self.conn.writer.write(_frame(opcode, payload))
        await self.conn.writer.drain()

    async def close(self, code: int = 1000, wait: float = 2.0) -> None:
        """Sends a close frame and waits (bounded) for the server's; then closes the socket."""
        with contextlib.suppress(Exception):
            await self.send(OP_CLOSE, struct.pack("!H", code))
            async with asyncio.timeout(wait):
                while (await self.receive())[0] != OP_CLOSE:
                    pass
        self.conn.close()


async def read_head(conn: Connection) -> tuple[int, dict[str, str]]:
    """The handshake's response head (a 101 has no body; any other answer is read whole)."""
    head = await conn.reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _session(
    ws: WsConnection, cfg: WsConfig, info: Record, deadline: float, stop: asyncio.Event
) -> Record:
    """Reads one connection until it ends; returns the fields describing the end."""
    loop = asyncio.get_running_loop()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0 or stop.is_set():
            await ws.close(1000)
            return {"end_kind": "stopped", "code": 1000, "abnormal": False}
        recv = asyncio.ensure_future(ws.receive())
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait(
            {recv, stopping}, timeout=min(cfg.stall_seconds, remaining), return_when=asyncio.FIRST_COMPLETED
        )
        stopping.cancel()
        if recv not in done:
            recv.cancel()
            with contextlib.suppress(BaseException):
                await recv
            if stop.is_set() or loop.time() >= deadline:
                await ws.close(1000)
                return {"end_kind": "stopped", "code": 1000, "abnormal": False}
            ws.conn.close()
            return {
                "end_kind": "stalled",
                "code": None,
                "abnormal": True,
                "detail": f"no message for {cfg.stall_seconds:g}s",
            }
        try:
            op, data = recv.result()
        except asyncio.IncompleteReadError:
            return {"end_kind": "lost", "code": 1006, "abnormal": True, "detail": "EOF without a close frame"}
        except OSError as exc:
            return {
                "end_kind": "lost",
                "code": 1006,
                "abnormal": True,
                "detail": f"{type(exc).__name__}: {exc}"[:120],
            }
        except ProtocolError as exc:
            ws.conn.close()
            return {"end_kind": "protocol", "code": 1002, "abnormal": True, "detail": str(exc)[:120]}
        if op == OP_CLOSE:
            code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
            with contextlib.suppress(Exception):
                await ws.send(OP_CLOSE, data[:2])
            ws.conn.close()
            return {
                "end_kind": "closed",
                "code": code,
                "abnormal": code not in CLEAN_CLOSE_CODES,
                "detail": data[2:].decode(errors="replace")[:120],
            }
        info["messages"] += 1
        if info["version"] is None or info["pod"] is None:
            with contextlib.suppress(ValueError, AttributeError, UnicodeDecodeError):
                body = json.loads(data)
                info["version"] = info["version"] or body.get("version")
                info["pod"] = info["pod"] or body.get("pod")


async def _client(
    client_id: int, cfg: WsConfig, host: str, sink: Sink, base: float, deadline: float, stop: asyncio.Event
) -> int:
    """One reconnecting client; returns how many connections it made."""
    loop = asyncio.get_running_loop()
    conns = 0
    for conn in range(cfg.connect_limit()):
        if stop.is_set() or loop.time() >= deadline:
            break
        conns += 1
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
        try:
            ws = await WsConnection.open(host, cfg.port, cfg.path, cfg.handshake_timeout, end)
        except Ended as exc:
            end.update(exc.fields, t=round(loop.time() - base, 4))
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
                "sport": end.get("sport"),
            }
        )
        try:
            end.update(await _session(ws, cfg, end, deadline, stop))
        finally:
            ws.conn.close()
        end["t"] = round(loop.time() - base, 4)
        sink(end)
        if end["abnormal"]:
            await asyncio.sleep(0.2)
    return conns


async def run_ws(
    cfg: WsConfig, sink: Sink, *, epoch: float | None = None, stop: asyncio.Event | None = None
) -> None:
    """Runs ``cfg.clients`` reconnecting clients until ``cfg.duration`` passes or ``stop`` is set."""
    host = check_target(cfg.host)
    check_bounds(cfg.duration, cfg.clients, "clients", MAX_WS_CLIENTS)
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    start = loop.time()
    base = start if epoch is None else epoch
    deadline = start + cfg.duration
    tasks = [
        asyncio.create_task(_client(i, cfg, host, sink, base, deadline, stop)) for i in range(cfg.clients)
    ]
    # Bounded: each client leaves at the deadline; the margin covers close handshakes.
    _, late = await asyncio.wait(tasks, timeout=cfg.duration + 15)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for i, task in enumerate(tasks):
        t = round(loop.time() - base, 4)
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            detail = (
                "cancelled: did not end by the deadline"
                if task.cancelled()
                else f"{type(exc).__name__}: {exc}"[:200]
            )
            sink(
                {
                    "kind": "ws",
                    "event": "end",
                    "client": i,
                    "conn": -1,
                    "t_open": t,
                    "t": t,
                    "messages": 0,
                    "version": None,
                    "pod": None,
                    "end_kind": "client_died",
                    "code": None,
                    "abnormal": True,
                    "detail": detail,
                }
            )
            sink({"kind": "ws", "event": "client", "client": i, "state": "dead", "detail": detail})
        else:
            sink(
                {
                    "kind": "ws",
                    "event": "client",
                    "client": i,
                    "state": "stopped",
                    "connections": task.result(),
                }
            )
