"""Background CPU load for a scenario: ``busy`` processes that spin, each bounded in time.

Real nodes are busy. On this 2-core machine two spinning processes at normal priority take about
half of the CPU from everything else, which slows the EndpointSlice controller, kube-proxy's
iptables syncs and the kubelet, the parts a zero-downtime rollout depends on. The probers run at a
real-time priority (bench.prober.run), so a valid run still keeps its schedule.
"""

from __future__ import annotations

import subprocess
import sys

_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"
MAX_SECONDS = 1800.0


class BusyLoad:
    def __init__(self, busy: int, seconds: float) -> None:
        if not 0 <= busy <= 16:
            raise ValueError(f"busy must be in [0, 16] (got {busy})")
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS:.0f}] (got {seconds})")
        self.busy, self.seconds = busy, seconds
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        code = _SPIN.format(seconds=self.seconds)
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(self.busy)]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(timeout=10)
        self.procs = []

    def __enter__(self) -> BusyLoad:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
