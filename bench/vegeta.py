"""vegeta (github.com/tsenart/vegeta/v12), run beside the project's prober as an independent counter.

The benchmark's own prober (``bench.prober``) decides whether a rollout dropped requests. To
check that the prober does not hide or invent failures, ``VegetaAttack`` runs vegeta, a Go HTTP
load tool that shares no code with it, against the same target at the same time, and reads
back how many requests vegeta sent and how many did not get a 2xx answer.

The command line (one process per attack; the target comes on stdin as ``GET http://IP:PORT/``)::

    vegeta attack -rate=R/s -duration=Ss -keepalive=false -redirects=-1 -timeout=5s \\
        -max-workers=W -max-body=0 -output=<out_dir>/vegeta.bin
    vegeta report -type=json <out_dir>/vegeta.bin

What the flags mean, checked in the v12.13.0 source (``attack.go`` and ``lib/attack.go``):

- ``-keepalive=false`` makes vegeta's ``KeepAlive`` option set ``Transport.DisableKeepAlives``
  (and a dialer without TCP keep-alive), so every request opens a new TCP connection and carries
  ``Connection: close``: each request is a new conntrack flow, like the prober's ``close`` mode.
  It also means Go's net/http never retries a request behind vegeta's back:
  ``persistConn.shouldRetryRequest`` returns false for a connection that was not reused ("This
  was a fresh connection"), and only HTTP/1.1 is spoken (``-http2`` applies to TLS only, and
  ``-h2c`` is off), so one request sent is exactly one attempt, counted once.
- ``-redirects=-1`` is ``NoFollow``: ``CheckRedirect`` returns ``http.ErrUseLastResponse``, so
  a 3xx answer is recorded as it is and no ``Location`` is ever followed (which could lead away
  from the allowed networks). vegeta itself counts a 3xx as a success; ``VegetaReport.failed``
  does not (see below).
- ``-timeout=5s`` sets ``http.Client.Timeout``: the whole request, body included.
- ``-max-workers=W`` with W = rate x (timeout + 1 s): vegeta adds workers only when all are busy,
  and a worker is busy for at most the timeout, so the cap is never reached at the given rate
  (the attack stays open loop) but still bounds the number of concurrent connections.
- ``-max-body=0`` keeps no response body in the results file; vegeta still reads the body to
  the end (``io.Copy(io.Discard, ...)``), so a truncated answer is still an error.

How vegeta counts (``lib/attack.go`` ``hit`` and ``lib/metrics.go`` ``Add``): every request is
one result; ``status_codes`` maps each answer's status code to a count, and code 0 means no
complete answer at all (refused, reset, timeout, truncated body: a transport error, whose
message lands in ``errors``, a de-duplicated list). vegeta's ``success`` ratio counts codes 200
to 399. Here ``failed = requests - (number of 2xx answers)``: transport errors, 5xx, 4xx and
3xx all count as failures, the prober's rule for status codes (``bench.prober.decide``).

vegeta only sees transport errors and status codes: it does not check the ``X-Version`` header
or the body, so it cannot tell which version answered, and a 2xx without the expected version
(a failure for the prober) is a success here. It cross-checks the count of requests that got no
2xx answer, nothing else.

Network safety: the target must be an ``http://`` URL whose host is an IP literal inside
127.0.0.1/32, 10.88.0.0/16 or 10.96.0.0/16 (``bench.prober.check_target``); anything else,
host names included, raises ``ValueError`` before any process starts. vegeta's transport uses
``http.ProxyFromEnvironment``, so the proxy variables are removed from its environment (and
``NO_PROXY=*`` set): the traffic goes straight to the target. Every attack is bounded in rate
and in time: the process is interrupted, then killed, if it runs past its duration plus the
request timeout plus a margin.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from bench.prober import MAX_DURATION, MAX_RATE, check_target

ROOT = Path(__file__).resolve().parents[1]
VEGETA_BIN = ROOT / ".cluster" / "bin" / "vegeta"

REQUEST_TIMEOUT = 5.0
EXIT_MARGIN = 10.0  # seconds past duration + timeout before the attack counts as overrun
STOP_GRACE = 5.0  # seconds between SIGINT and SIGKILL
REPORT_TIMEOUT = 120.0
_PROXY_VARS = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


class VegetaError(RuntimeError):
    """vegeta is missing, failed, overran its time bound, or wrote a report that does not parse."""


def vegeta_binary() -> Path:
    """The vegeta binary the cluster step links into ``.cluster/bin``; raises when it is missing."""
    if not (VEGETA_BIN.is_file() and os.access(VEGETA_BIN, os.X_OK)):
        raise VegetaError(
            f"{VEGETA_BIN} is missing: run `make binaries` (hack/build-binaries.sh builds vegeta "
            "from the Go module proxy into ~/.cache/zdr and links it there)"
        )
    return VEGETA_BIN


def check_url(url: str) -> str:
    """The target line vegeta reads (``GET http://IP:PORT/PATH``) for an allowed ``http://`` URL.

    Raises ``ValueError`` (``bench.prober.UnsafeTarget`` for a host outside the allowed networks)
    for anything else. Whitespace and control characters are refused outright, so the URL can
    never smuggle a second target line or header into vegeta's input.
    """
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(f"{url!r}: whitespace or control characters in the target URL")
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"{url}: only http:// targets are attacked")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ValueError(f"{url}: user info and fragments are not allowed in the target URL")
    host = check_target(parts.hostname or "")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ValueError(f"{url}: bad port") from exc
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"GET http://{host}:{port}{path}{query}"


def _duration_flag(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _clean_env(env: Mapping[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in env.items() if k.lower() not in _PROXY_VARS}
    clean["NO_PROXY"] = clean["no_proxy"] = "*"
    return clean


@dataclass(frozen=True)
class VegetaReport:
    """What ``vegeta report -type=json`` says about one attack."""

    requests: int
    success: float  # vegeta's own ratio: answers with a status code in [200, 400)
    status_codes: dict[int, int]  # 0 = no complete answer (a transport error)
    errors: list[str]  # distinct error messages (transport errors and non-2xx/3xx status lines)
    rate: float  # requests sent per second
    latency_mean_ms: float
    latency_p99_ms: float
    latency_max_ms: float

    @property
    def ok(self) -> int:
        """Requests answered with a 2xx status."""
        return sum(n for code, n in self.status_codes.items() if 200 <= code < 300)

    @property
    def failed(self) -> int:
        """Requests without a 2xx answer: transport errors (code 0), 3xx, 4xx and 5xx."""
        return self.requests - self.ok

    @property
    def transport_errors(self) -> int:
        """Requests that got no complete answer (refused, reset, timeout, truncated)."""
        return self.status_codes.get(0, 0)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data, with the derived counts."""
        data = asdict(self)
        data["status_codes"] = {str(k): v for k, v in sorted(self.status_codes.items())}
        data.update(ok=self.ok, failed=self.failed, transport_errors=self.transport_errors)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VegetaReport:
        """Parses the object ``vegeta report -type=json`` prints."""
        try:
            latencies: Mapping[str, Any] = data.get("latencies") or {}
            codes = {int(k): int(v) for k, v in (data.get("status_codes") or {}).items()}
            report = cls(
                requests=int(data["requests"]),
                success=float(data["success"]),
                status_codes=codes,
                errors=[str(e) for e in data.get("errors") or []],
                rate=float(data.get("rate") or 0.0),
                latency_mean_ms=int(latencies.get("mean", 0)) / 1e6,
                latency_p99_ms=int(latencies.get("99th", 0)) / 1e6,
                latency_max_ms=int(latencies.get("max", 0)) / 1e6,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise VegetaError(f"unexpected vegeta report: {exc!r}") from exc
        if sum(codes.values()) != report.requests:
            raise VegetaError(f"vegeta report: status codes {codes} do not add up to {report.requests}")
        return report


def read_report(results: Path, binary: Path | None = None) -> VegetaReport:
    """Runs ``vegeta report -type=json`` on a results file and parses its output."""
    cmd = [str(binary or vegeta_binary()), "report", "-type=json", str(results)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=REPORT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise VegetaError(f"vegeta report did not finish in {REPORT_TIMEOUT:.0f}s") from exc
    if proc.returncode != 0:
        raise VegetaError(f"vegeta report exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise VegetaError(f"vegeta report printed no JSON: {proc.stdout[:500]!r}") from exc
    if not isinstance(data, dict):
        raise VegetaError(f"vegeta report printed {type(data).__name__}, not an object")
    return VegetaReport.from_json(data)


class VegetaAttack:
    """One ``vegeta attack`` subprocess: ``start`` it, then ``wait`` for its end or ``stop`` it early.

    Use it as a context manager so that an exception never leaves the process running.
    """

    def __init__(self, binary: Path | None = None) -> None:
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._deadline = 0.0
        self._report: VegetaReport | None = None
        self.results: Path | None = None
        self.log_path: Path | None = None
        self.argv: list[str] = []

    def start(
        self,
        target_url: str,
        rate: int,
        seconds: float,
        out_dir: Path,
        *,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        """Starts attacking ``target_url`` at ``rate`` requests/s for ``seconds`` (non-blocking).

        Raises ``ValueError`` for a target outside the allowed networks or out-of-bounds values,
        before anything is started.
        """
        if self._proc is not None:
            raise RuntimeError("this VegetaAttack was already started")
        line = check_url(target_url)
        if isinstance(rate, bool) or not isinstance(rate, int) or not 0 < rate <= MAX_RATE:
            raise ValueError(f"rate must be an integer in [1, {MAX_RATE:.0f}] requests/s (got {rate!r})")
        if not 0.001 <= seconds <= MAX_DURATION:
            raise ValueError(f"seconds must be in [0.001, {MAX_DURATION:.0f}] (got {seconds})")
        if not 0.001 <= timeout <= 60:
            raise ValueError(f"timeout must be in [0.001, 60] seconds (got {timeout})")
        binary = self._binary or vegeta_binary()
        out_dir.mkdir(parents=True, exist_ok=True)
        self.results = out_dir / "vegeta.bin"
        self.log_path = out_dir / "vegeta.log"
        max_workers = max(10, math.ceil(rate * (timeout + 1.0)))
        self.argv = [
            str(binary),
            "attack",
            f"-rate={rate}/s",
            f"-duration={_duration_flag(seconds)}",
            "-keepalive=false",
            "-redirects=-1",
            f"-timeout={_duration_flag(timeout)}",
            f"-max-workers={max_workers}",
            "-max-body=0",
            f"-output={self.results}",
        ]
        self._log = self.log_path.open("wb")
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=_clean_env(os.environ),
                cwd=out_dir,
            )
        except BaseException:
            self._log.close()
            raise
        self._deadline = time.monotonic() + seconds + timeout + EXIT_MARGIN
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(f"{line}\n".encode())
            self._proc.stdin.close()
        except BaseException:
            self.close()
            raise

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait(self) -> VegetaReport:
        """Waits for the attack to end by itself and returns its report.

        Raises ``VegetaError`` when vegeta fails, or runs past duration + timeout + margin (it is
        then interrupted and killed; its partial results are not reported).
        """
        proc = self._started()
        if self._report is not None:
            return self._report
        try:
            proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._terminate(proc)
            raise VegetaError(
                f"vegeta ran past its time bound and was stopped (log: {self.log_path})"
            ) from None
        return self._finish(proc)

    def stop(self) -> VegetaReport:
        """Ends the attack early (SIGINT: vegeta stops sending, lets in-flight requests finish
        and writes their results) and returns the report of what was sent."""
        proc = self._started()
        if self._report is not None:
            return self._report
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=REQUEST_TIMEOUT + STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._terminate(proc)
                raise VegetaError(
                    f"vegeta did not stop on SIGINT and was killed (log: {self.log_path})"
                ) from None
        return self._finish(proc)

    def close(self) -> None:
        """Kills the process if it still runs (idempotent)."""
        if self._proc is not None and self._proc.poll() is None:
            self._terminate(self._proc)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> VegetaAttack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("the attack was not started")
        return self._proc

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()

    def _finish(self, proc: subprocess.Popen[bytes]) -> VegetaReport:
        if self._log is not None:
            self._log.close()
        if proc.returncode != 0:
            raise VegetaError(f"vegeta attack exited with {proc.returncode}: {self._log_tail()}")
        assert self.results is not None
        self._report = read_report(self.results, Path(self.argv[0]))
        return self._report

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:].strip() if self.log_path else ""
        except OSError:
            return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run vegeta against an allowed target and print its report.")
    parser.add_argument("url", help="http://IP:PORT/ inside 127.0.0.1, 10.88.0.0/16 or 10.96.0.0/16")
    parser.add_argument("--rate", type=int, default=50, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out-dir", type=Path, default=ROOT / ".cluster" / "vegeta")
    args = parser.parse_args(argv)
    try:
        with VegetaAttack() as attack:
            attack.start(args.url, args.rate, args.seconds, args.out_dir)
            report = attack.wait()
    except (ValueError, VegetaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
