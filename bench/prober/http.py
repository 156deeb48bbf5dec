"""The HTTP prober: an open-loop HTTP/1.1 client on raw asyncio streams that never retries.

Requests are scheduled by send time at a fixed rate (open loop: a slow answer never delays the
next send), for at most ``duration`` seconds and ``limit()`` requests, in one of two modes:

- ``new``: a new TCP connection per request (``Connection: close``); every request is a new
  conntrack flow through kube-proxy, so it exercises endpoint propagation;
- ``keepalive``: up to ``pool`` persistent connections, used in turn; it exercises how pods drain
  the connections clients hold open.

Nothing here can turn a failure into a success: there is no retry, no redirect is followed, and
the outcome of every request is decided by ``decide`` alone, which has one path to ``ok``: a
complete 2xx response that carries an ``X-Version`` header (from ``expect``, when given). A
request sent on a reused connection that gets no complete response is ``keepalive_reset``. A
kept-alive connection the server closed while it was idle (seen before a request is written to
it), or after it answered ``Connection: close``, is closed and replaced without a record: no
request was sent on it.
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import select
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.prober.target import MAX_REQUESTS, check_bounds, check_rate, check_target

Mode = Literal["new", "keepalive"]
MODES: tuple[Mode, ...] = ("new", "keepalive")
Record = dict[str, Any]
Sink = Callable[[Record], None]

MAX_HEAD = 64 * 1024
MAX_BODY = 4 * 1024 * 1024

_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


# ---------------------------------------------------------------------------------------------
# What a request got, and the one function that judges it
# ---------------------------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        """The server will close the connection after this response."""
        return "close" in self.headers.get("connection", "").lower()


class ProtocolError(Exception):
    """The server sent something that is not an HTTP/1.1 response."""


class Truncated(Exception):
    """The connection ended inside a response (``got`` bytes of it were read)."""

    def __init__(self, got: int, cause: BaseException | None = None) -> None:
        super().__init__(f"connection ended after {got} byte(s) of the response")
        self.got = got
        self.cause = cause


class ConnectFailed(Exception):
    """Opening the TCP connection failed; ``cause`` says how."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _os_kind(exc: BaseException) -> str | None:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
        return "reset"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return "unreachable"
    return None


def decide(
    response: Response | None,
    exc: BaseException | None,
    *,
    reused: bool,
    expect: frozenset[str] | None = None,
) -> str:
    """The outcome of one request: ``"ok"`` or the kind of failure. The only judge there is."""
    if response is not None and exc is None:
        status = response.status
        if not 200 <= status < 300:
            if status >= 500:
                return "http_5xx"
            if status >= 400:
                return "http_4xx"
            if status >= 300:
                return "http_3xx"  # redirects are never followed
            return "http_other"
        version = response.headers.get("x-version")
        if not version:
            return "no_version"
        if expect is not None and version not in expect:
            return "unexpected_version"
        return "ok"
    if isinstance(exc, ConnectFailed):
        cause = exc.cause
        if isinstance(cause, TimeoutError):
            return "connect_timeout"
        return _os_kind(cause) or f"connect:{type(cause).__name__}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ProtocolError):
        return "protocol"
    lost = isinstance(exc, Truncated) or (exc is not None and _os_kind(exc) in ("reset", "refused"))
    if reused and lost:
        return "keepalive_reset"
    if isinstance(exc, Truncated):
        if exc.got:
            return "truncated"
        return "eof" if exc.cause is None else (_os_kind(exc.cause) or "reset")
    if exc is not None:
        return _os_kind(exc) or f"other:{type(exc).__name__}"
    return "prober_error"  # neither a response nor an exception: never a success


# ---------------------------------------------------------------------------------------------
# HTTP/1.1 on raw streams
# ---------------------------------------------------------------------------------------------
class Connection:
    """One TCP connection; ``requests`` counts the requests already answered on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.requests = 0
        self.pod: str | None = None
        sockname = writer.get_extra_info("sockname")
        self.sport: int | None = sockname[1] if sockname else None

    @classmethod
    async def open(cls, host: str, port: int, timeout: float, rec: Record | None = None) -> Connection:
        """Connects as any client does (``connect()`` picks the local port: no bind before it, whose
        port choice would reuse ports at once and so meet a closed flow's conntrack entry, still
        translated to its old pod). The local port goes into ``rec["sport"]`` as soon as the SYN
        is sent, so a failed connect has one too: it names the flow in conntrack, hence the pod."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            err = sock.connect_ex((host, port))
            if rec is not None:
                rec["sport"] = sock.getsockname()[1]
            if err == errno.EINPROGRESS:
                writable: asyncio.Future[None] = loop.create_future()

                def connected() -> None:
                    if not writable.done():
                        writable.set_result(None)

                loop.add_writer(sock.fileno(), connected)
                try:
                    await asyncio.wait_for(writable, timeout)
                finally:
                    loop.remove_writer(sock.fileno())
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_HEAD)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise ConnectFailed(exc) from exc
        except BaseException:
            sock.close()
            raise
        return cls(reader, writer)

    def closed_while_idle(self) -> bool:
        """The server closed (or reset) this idle connection, or sent something unasked."""
        if self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None:
            return True
        sock = self.writer.get_extra_info("socket")
        if sock is None:
            return True
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
        return bool(readable)

    async def request(self, host: str, path: str, *, close: bool) -> Response:
        head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: zdr-prober\r\nAccept: */*\r\n"
        if close:
            head += "Connection: close\r\n"
        self.writer.write((head + "\r\n").encode())
        await self.writer.drain()
        response = await read_response(self.reader)
        self.requests += 1
        return response

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


async def read_response(reader: asyncio.StreamReader) -> Response:
    got = 0
    try:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise Truncated(len(exc.partial)) from exc
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError("response head too long") from exc
        got = len(head)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0][:60]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:60]!r}")
            headers[name.strip().lower()] = value.strip()
        if parts[0] == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
            headers["connection"] = "close"
        body = await _read_body(reader, status, headers)
        return Response(status, headers, body)
    except asyncio.IncompleteReadError as exc:
        raise Truncated(got + len(exc.partial)) from exc
    except OSError as exc:
        raise Truncated(got, exc) from exc


async def _read_body(reader: asyncio.StreamReader, status: int, headers: dict[str, str]) -> bytes:
    if status < 200 or status in (204, 304):
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise ProtocolError("bad chunk size") from exc
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers
                return b"".join(chunks)
            if size > MAX_BODY:
                raise ProtocolError("chunk too large")
            chunks.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError as exc:
            raise ProtocolError("bad Content-Length") from exc
        if not 0 <= length <= MAX_BODY:
            raise ProtocolError("Content-Length out of range")
        return await reader.readexactly(length)
    # No length: the body ends with the connection (a complete response only if it closes).
    headers["connection"] = "close"
    return await reader.read(MAX_BODY)


# ---------------------------------------------------------------------------------------------
# The prober
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpConfig:
    host: str
    port: int = 80
    path: str = "/"
    mode: Mode = "new"
    rate: float = 200.0
    duration: float = 60.0
    max_requests: int | None = None
    """Defaults to ``ceil(rate * duration)``."""
    timeout: float = 5.0
    """From the moment the request is sent (connect included) to its complete response."""
    connect_timeout: float = 2.0
    pool: int = 8
    """Persistent connections in keep-alive mode (up to 4x as many open while all are busy)."""
    expect: frozenset[str] | None = None
    """X-Version values that count as a success; None: any non-empty one."""

    def limit(self) -> int:
        cap = math.ceil(self.rate * self.duration)
        return min(self.max_requests, cap) if self.max_requests is not None else cap


@dataclass
class _Pool:
    """Kept-alive connections, used in turn (oldest idle first) so every one keeps carrying traffic."""

    size: int
    idle: deque[Connection] = field(default_factory=deque)
    open: int = 0
    replaced: int = 0
    """Connections the server closed while idle or after ``Connection: close`` (not failures)."""
    freed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def take(self) -> Connection | None:
        """An idle connection still open, or None when a new one may be opened (waits at the cap)."""
        while True:
            while self.idle:
                conn = self.idle.popleft()
                if not conn.closed_while_idle():
                    return conn
                self.drop(conn)
                self.replaced += 1
            if self.open < 4 * self.size:
                self.open += 1
                return None
            async with self.freed:
                await self.freed.wait()

    async def give(self, conn: Connection | None, reusable: bool) -> None:
        if conn is not None and reusable and len(self.idle) < self.size:
            self.idle.append(conn)
        else:
            if conn is not None:
                conn.close()
            self.open -= 1
        async with self.freed:
            self.freed.notify()

    def drop(self, conn: Connection) -> None:
        conn.close()
        self.open -= 1

    def close_all(self) -> None:
        while self.idle:
            self.drop(self.idle.popleft())


@dataclass
class HttpStats:
    sent: int = 0
    replaced: int = 0
    connections: int = 0


async def run_http(
    cfg: HttpConfig,
    sink: Sink,
    *,
    epoch: float | None = None,
    stop: asyncio.Event | None = None,
) -> HttpStats:
    """Sends up to ``cfg.limit()`` requests at ``cfg.rate`` per second; one record per request."""
    host = check_target(cfg.host)
    check_rate(cfg.rate)
    check_bounds(cfg.duration, cfg.limit(), "max_requests", MAX_REQUESTS)
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (got {cfg.mode!r})")
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    pool = _Pool(max(1, cfg.pool))
    stats = HttpStats()
    pending: set[asyncio.Task[None]] = set()
    start = loop.time()
    base = start if epoch is None else epoch

    async def one(seq: int, due: float) -> None:
        rec: Record = {"kind": "http", "mode": cfg.mode, "seq": seq, "t_send": round(due - base, 4)}
        response: Response | None = None
        error: BaseException | None = None
        conn: Connection | None = None
        reused = False
        sent_at = loop.time()
        try:
            if cfg.mode == "keepalive":
                conn = await pool.take()
                reused = conn is not None
            sent_at = loop.time()
            async with asyncio.timeout(cfg.timeout):
                if conn is None:
                    conn = await Connection.open(host, cfg.port, cfg.connect_timeout, rec)
                    stats.connections += 1
                rec["conn_requests"] = conn.requests
                rec.setdefault("sport", conn.sport)
                response = await conn.request(host, cfg.path, close=cfg.mode == "new")
        except asyncio.CancelledError:
            error = TimeoutError("cancelled at the end of the run")
            raise
        except Exception as exc:  # every failure becomes the record's outcome, none ends the run
            error = exc
        finally:
            outcome = decide(response, error, reused=reused, expect=cfg.expect)
            rec.update(
                lag_ms=round((sent_at - due) * 1000, 2),
                latency_ms=round((loop.time() - sent_at) * 1000, 2),
                reused=reused,
                outcome=outcome,
                error=None if outcome == "ok" else outcome,
                status=response.status if response is not None else None,
                version=response.headers.get("x-version") if response is not None else None,
                pod=response.headers.get("x-pod") if response is not None else (conn.pod if conn else None),
            )
            if error is not None:
                rec["detail"] = f"{type(error).__name__}: {error}"[:200]
            if response is not None and conn is not None:
                conn.pod = rec["pod"]
            reusable = (
                cfg.mode == "keepalive" and response is not None and error is None and not response.closes
            )
            if conn is not None and not reusable:
                conn.close()
            if cfg.mode == "keepalive":
                if response is not None and response.closes:
                    pool.replaced += 1
                await pool.give(conn, reusable)
            sink(rec)

    try:
        for seq in range(cfg.limit()):
            due = start + seq / cfg.rate
            if due - start >= cfg.duration or stop.is_set():
                break
            delay = due - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            task = asyncio.create_task(one(seq, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
            stats.sent += 1
        if pending:
            await asyncio.wait(set(pending), timeout=cfg.timeout + 2)
    finally:
        for task in list(pending):
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        pool.close_all()
    stats.replaced = pool.replaced
    return stats
