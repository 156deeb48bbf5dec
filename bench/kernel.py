"""The host kernel's own counts of dropped and refused packets, read before and after a scenario.

A request can fail below kube-proxy, where neither the prober nor conntrack's event log sees why:
a SYN dropped before its connection was confirmed leaves no conntrack entry at all. The kernel
counts such drops: ``conntrack -S`` (per CPU: ``insert_failed``, ``drop``, ``early_drop``,
``invalid``, ``clash_resolve``...), the TCP and IP MIB counters of ``/proc/net/netstat`` and
``/proc/net/snmp`` (SYN retransmissions, listen drops, out-of-window packets...) and the
bridge's and each veth's drop counters. ``Counters.read()`` sums them; ``delta()`` keeps what
changed, so a run's record says which of them moved while it ran.

Reads only; sends nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

_PAIR = re.compile(r"(\w+)=(\d+)")
_MIB_FILES = (Path("/proc/net/netstat"), Path("/proc/net/snmp"))
_MIB_KEEP = ("Tcp:", "TcpExt:", "Ip:", "IpExt:")
_NET = Path("/sys/class/net")
_LINK_COUNTERS = ("rx_dropped", "tx_dropped", "rx_errors", "tx_errors")


def conntrack_stats() -> dict[str, int]:
    """``conntrack -S`` summed over CPUs, as ``conntrack.<field>``; {} without the tool or root."""
    if shutil.which("conntrack") is None:
        return {}
    try:
        out = subprocess.run(
            ["conntrack", "-S"], capture_output=True, text=True, timeout=5, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return {}
    totals: dict[str, int] = {}
    for line in out.splitlines():
        for key, value in _PAIR.findall(line):
            if key != "cpu":
                totals[f"conntrack.{key}"] = totals.get(f"conntrack.{key}", 0) + int(value)
    return totals


def mib() -> dict[str, int]:
    """The IP and TCP MIB counters, as ``TcpExt.ListenDrops`` and so on."""
    counters: dict[str, int] = {}
    for path in _MIB_FILES:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            head, *keys = names.split()
            _, *nums = values.split()
            if head not in _MIB_KEEP:
                continue
            for key, num in zip(keys, nums, strict=False):
                if num.lstrip("-").isdigit():
                    counters[f"{head[:-1]}.{key}"] = int(num)
    return counters


def links(prefixes: tuple[str, ...] = ("zdr", "veth")) -> dict[str, int]:
    """Drop and error counters of the pod bridge, the Service bridge and the pods' veths, summed
    per kind (veths come and go with pods: their counts are summed as ``veth.<counter>``)."""
    counters: dict[str, int] = {}
    try:
        devices = sorted(p.name for p in _NET.iterdir())
    except OSError:
        return counters
    for device in devices:
        if not device.startswith(prefixes):
            continue
        group = "veth" if device.startswith("veth") else device
        for name in _LINK_COUNTERS:
            try:
                value = int((_NET / device / "statistics" / name).read_text())
            except (OSError, ValueError):
                continue
            counters[f"{group}.{name}"] = counters.get(f"{group}.{name}", 0) + value
    return counters


class Counters:
    """A reading of every counter above."""

    def __init__(self, values: dict[str, int]) -> None:
        self.values = values

    @classmethod
    def read(cls) -> Counters:
        return cls({**conntrack_stats(), **mib(), **links()})

    def delta(self, later: Counters) -> dict[str, int]:
        """The counters that changed from this reading to ``later`` (veths that went away can make a
        link counter go down; only increases are kept)."""
        return {
            key: later.values[key] - value
            for key, value in sorted(self.values.items())
            if key in later.values and later.values[key] > value
        }


DROP_SIGNS = (
    "conntrack.insert_failed",
    "conntrack.drop",
    "conntrack.early_drop",
    "conntrack.invalid",
    "conntrack.error",
    "conntrack.chaintoolong",
    "TcpExt.ListenDrops",
    "TcpExt.ListenOverflows",
    "TcpExt.TCPSynRetrans",
    "Ip.InDiscards",
    "Ip.OutDiscards",
    "Ip.InNoRoutes",
    "zdr0.tx_dropped",
    "zdr0.rx_dropped",
    "veth.tx_dropped",
    "veth.rx_dropped",
)
"""The counters a dropped SYN would move: shown in the bench report next to each run."""


def drop_signs(delta: dict[str, int]) -> dict[str, int]:
    return {key: delta[key] for key in DROP_SIGNS if delta.get(key)}


__all__ = ["DROP_SIGNS", "Counters", "conntrack_stats", "drop_signs", "links", "mib"]
