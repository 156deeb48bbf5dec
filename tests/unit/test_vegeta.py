"""bench.vegeta against a local fault-injecting HTTP server on 127.0.0.1: vegeta's failed count
must equal, exactly, the number of failures the server produced; targets outside the allowed
networks are refused before any process starts."""

from __future__ import annotations

import os
import socket
import socketserver
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from bench import vegeta
from bench.vegeta import VegetaAttack, VegetaError, VegetaReport

Fault = Literal["none", "every_other_503", "reset_every_3rd"]

OK_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
)
UNAVAILABLE_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
    b"Connection: close\r\n\r\nbusy"
)


class FaultServer(socketserver.ThreadingTCPServer):
    """HTTP/1.1 on raw sockets, one request per connection, with a fault on a fixed share of them.

    ``connections`` counts connections that delivered a whole request from vegeta (it sends
    ``X-Vegeta-Seq``; ``seqs`` keeps those numbers, so a retried request would show as a repeated
    one); ``failures`` counts the ones this server failed on purpose (a 503, or a reset: SO_LINGER 0
    and close, so the client gets a RST after its request was read). Connections from anything
    else on the machine that happens to hit the port (``strays``) get a 200 and are not counted.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, fault: Fault) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fault = fault
        self.lock = threading.Lock()
        self.connections = 0
        self.failures = 0
        self.incomplete = 0
        self.strays = 0
        self.seqs: list[int] = []

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def next_connection(self, seq: int) -> int:
        with self.lock:
            self.connections += 1
            self.seqs.append(seq)
            return self.connections

    def failed(self) -> None:
        with self.lock:
            self.failures += 1


def _vegeta_seq(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-vegeta-seq":
            return int(value.strip())
    return None


class _Handler(socketserver.BaseRequestHandler):
    server: FaultServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        if b"\r\n\r\n" not in data:
            with self.server.lock:
                self.server.incomplete += 1
            return
        seq = _vegeta_seq(data)
        if seq is None:
            with self.server.lock:
                self.server.strays += 1
            sock.sendall(OK_RESPONSE)
            return
        n = self.server.next_connection(seq)
        fault = self.server.fault
        if fault == "reset_every_3rd" and n % 3 == 0:
            self.server.failed()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            return
        if fault == "every_other_503" and n % 2 == 0:
            self.server.failed()
            sock.sendall(UNAVAILABLE_RESPONSE)
            return
        sock.sendall(OK_RESPONSE)


@contextmanager
def serve(fault: Fault) -> Iterator[FaultServer]:
    server = FaultServer(fault)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def vegeta_bin() -> Path:
    try:
        return vegeta.vegeta_binary()
    except VegetaError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI=true: `make test` builds the binaries in its cluster step)")
        pytest.skip(f"vegeta binary not built: {exc}")


# ---------------------------------------------------------------------------------------------
# Counting against a real vegeta
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "expected_failures"),
    [("none", 0), ("every_other_503", 50), ("reset_every_3rd", 33)],
)
def test_failed_count_matches_the_server(
    vegeta_bin: Path, tmp_path: Path, fault: Fault, expected_failures: int
) -> None:
    with serve(fault) as server:
        with VegetaAttack() as attack:
            attack.start(f"http://127.0.0.1:{server.port}/", rate=50, seconds=2, out_dir=tmp_path)
            report = attack.wait()
        seen = (report.as_dict(), server.connections, server.failures, server.incomplete, server.strays)
        assert report.requests == server.connections == 100, seen
        assert sorted(server.seqs) == list(range(100)), seen  # each request sent once, none retried
        assert report.failed == server.failures == expected_failures, seen
        assert report.ok == 100 - expected_failures
        if fault == "every_other_503":
            assert report.status_codes == {200: 50, 503: 50}
            assert report.transport_errors == 0
        elif fault == "reset_every_3rd":
            assert report.status_codes == {200: 67, 0: 33}
            assert report.transport_errors == 33
            assert report.errors and all("reset" in e or "EOF" in e for e in report.errors)
        else:
            assert report.status_codes == {200: 100}
            assert report.errors == []
            assert report.success == 1.0


def test_command_line(vegeta_bin: Path, tmp_path: Path) -> None:
    with serve("none") as server:
        with VegetaAttack() as attack:
            attack.start(f"http://127.0.0.1:{server.port}/", rate=20, seconds=1, out_dir=tmp_path)
            attack.wait()
        assert attack.argv == [
            str(vegeta_bin),
            "attack",
            "-rate=20/s",
            "-duration=1s",
            "-keepalive=false",
            "-redirects=-1",
            "-timeout=5s",
            "-max-workers=120",
            "-max-body=0",
            f"-output={tmp_path / 'vegeta.bin'}",
        ]


def test_stop_ends_the_attack_early(vegeta_bin: Path, tmp_path: Path) -> None:
    with serve("none") as server:
        with VegetaAttack() as attack:
            t0 = time.monotonic()
            attack.start(f"http://127.0.0.1:{server.port}/", rate=50, seconds=60, out_dir=tmp_path)
            time.sleep(1)
            report = attack.stop()
            assert not attack.running
        assert time.monotonic() - t0 < 10
        assert 20 <= report.requests <= 100
        assert report.requests == server.connections
        assert report.failed == 0


def test_an_overrun_is_stopped_and_reported(
    vegeta_bin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vegeta, "EXIT_MARGIN", -10.0)  # the bound: 10 s + 1 s - 10 s = 1 s
    with serve("none") as server:
        with VegetaAttack() as attack:
            t0 = time.monotonic()
            attack.start(f"http://127.0.0.1:{server.port}/", rate=10, seconds=10, out_dir=tmp_path, timeout=1)
            with pytest.raises(VegetaError, match="time bound"):
                attack.wait()
            assert not attack.running
        assert time.monotonic() - t0 < 8


# ---------------------------------------------------------------------------------------------
# Network safety: nothing starts for a target outside the allowed networks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8/",
        "http://8.8.8.8:80/",
        "http://localhost:8080/",
        "http://example.com/",
        "http://127.0.0.2/",
        "http://10.0.0.1/",
        "http://10.97.0.1/",
        "http://[::1]:80/",
        "https://127.0.0.1/",
        "127.0.0.1:80",
        "http://127.0.0.1:80/\nGET http://8.8.8.8/",
        "http://127.0.0.1/ http://8.8.8.8/",
        "http://user@127.0.0.1/",
    ],
)
def test_refuses_targets_outside_the_allowed_networks(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_process(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a process was started: {args}")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    monkeypatch.setattr(subprocess, "run", no_process)
    out_dir = tmp_path / "out"
    attack = VegetaAttack(binary=Path("/nonexistent/vegeta"))
    with pytest.raises(ValueError):
        attack.start(url, rate=50, seconds=2, out_dir=out_dir)
    assert not attack.running
    assert not out_dir.exists()


def test_refusal_names_the_allowed_networks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(subprocess, "Popen", None)
    with pytest.raises(ValueError, match=r"10\.88\.0\.0/16.*127\.0\.0\.1/32|127\.0\.0\.1/32.*10\.88"):
        VegetaAttack().start("http://8.8.8.8/", rate=50, seconds=2, out_dir=tmp_path)
    with pytest.raises(ValueError, match="only IP literals"):
        VegetaAttack().start("http://example.com/", rate=50, seconds=2, out_dir=tmp_path)


@pytest.mark.parametrize(("rate", "seconds"), [(0, 2.0), (-1, 2.0), (5001, 2.0), (50, 0.0), (50, 1801.0)])
def test_refuses_unbounded_attacks(rate: int, seconds: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        VegetaAttack(binary=Path("/nonexistent/vegeta")).start(
            "http://127.0.0.1:1/", rate=rate, seconds=seconds, out_dir=tmp_path / "out"
        )
    assert not (tmp_path / "out").exists()


def test_target_line() -> None:
    assert vegeta.check_url("http://127.0.0.1:8080/") == "GET http://127.0.0.1:8080/"
    assert vegeta.check_url("http://10.96.0.10") == "GET http://10.96.0.10:80/"
    assert vegeta.check_url("http://10.88.1.2:8080/healthz?x=1") == "GET http://10.88.1.2:8080/healthz?x=1"


def test_proxy_variables_are_removed() -> None:
    env = vegeta._clean_env({"HTTP_PROXY": "http://8.8.8.8:3128", "https_proxy": "x", "PATH": "/bin"})
    assert env == {"PATH": "/bin", "NO_PROXY": "*", "no_proxy": "*"}


# ---------------------------------------------------------------------------------------------
# Parsing and counting rules (no binary needed)
# ---------------------------------------------------------------------------------------------
def test_report_counts_everything_but_2xx_as_failed() -> None:
    report = VegetaReport.from_json(
        {
            "latencies": {"mean": 2_000_000, "99th": 9_000_000, "max": 12_000_000},
            "requests": 10,
            "rate": 5.0,
            "success": 0.7,
            "status_codes": {"200": 5, "204": 1, "301": 1, "503": 2, "0": 1},
            "errors": ["503 Service Unavailable", 'Get "http://127.0.0.1:1/": connection reset by peer'],
        }
    )
    assert report.ok == 6
    assert report.failed == 4
    assert report.transport_errors == 1
    assert report.latency_p99_ms == 9.0
    assert report.as_dict()["failed"] == 4


def test_report_without_errors() -> None:
    report = VegetaReport.from_json({"requests": 0, "success": 0, "status_codes": None, "errors": None})
    assert (report.requests, report.failed, report.errors) == (0, 0, [])


def test_inconsistent_report_is_an_error() -> None:
    with pytest.raises(VegetaError, match="do not add up"):
        VegetaReport.from_json({"requests": 3, "success": 1, "status_codes": {"200": 2}})
    with pytest.raises(VegetaError, match="unexpected"):
        VegetaReport.from_json({"success": 1})


def test_missing_binary_names_make_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(vegeta, "VEGETA_BIN", tmp_path / "vegeta")
    with pytest.raises(VegetaError, match="make binaries"):
        vegeta.vegeta_binary()
