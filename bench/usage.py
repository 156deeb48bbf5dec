"""What a controller process costs while a scenario runs: CPU seconds and peak resident memory.

``Usage(pid)`` samples ``/proc/<pid>/stat`` (user + system CPU time) and ``/proc/<pid>/status``
(``VmRSS``) every half second from ``start()`` to ``stop()``: the CPU seconds spent in between and
the largest RSS seen. ``find_pid("kube-controller-manager")`` finds a host process by name, for the
plain Deployment, whose controller is Kubernetes' own.

Reads only the local /proc.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def find_pid(name: str) -> int | None:
    """The pid of a running process whose command name is ``name``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name[:15]:
                    return int(entry.name)
            except OSError:
                continue
    return None


class Usage:
    def __init__(self, pid: int | None, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss_mib: float | None = None
        self.cpu_s: float | None = None
        self._cpu0: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        if self.pid is None:
            return
        rss = rss_mib(self.pid)
        if rss is not None:
            self.peak_rss_mib = max(self.peak_rss_mib or 0.0, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        if self.pid is None:
            return
        self._cpu0 = cpu_seconds(self.pid)
        self._sample()
        self._thread = threading.Thread(target=self._run, name="usage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.pid is not None and self._cpu0 is not None:
            self._sample()
            end = cpu_seconds(self.pid)
            self.cpu_s = None if end is None else round(end - self._cpu0, 2)
        if self.peak_rss_mib is not None:
            self.peak_rss_mib = round(self.peak_rss_mib, 1)


__all__ = ["Usage", "cpu_seconds", "find_pid", "rss_mib"]
