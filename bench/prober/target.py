"""Where the probers may send traffic, and the bounds every load loop keeps.

Only 127.0.0.1, the local cluster's Service range (kube-proxy maps it to pods) and its pod range
(on the local bridge) are probed. Host names are refused too, so no resolver can send traffic
elsewhere.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

SERVICE_RANGE = ipaddress.ip_network("10.96.0.0/16")
"""Service ClusterIPs, translated by kube-proxy."""
ALLOWED_NETWORKS = (
    SERVICE_RANGE,
    ipaddress.ip_network("10.88.0.0/16"),  # pod IPs on the local CNI bridge
    ipaddress.ip_network("127.0.0.1/32"),  # loopback (unit tests)
)
MAX_DURATION = 1800.0
MAX_RATE = 5000.0
MAX_REQUESTS = 2_000_000
MAX_WS_CLIENTS = 500


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


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        """``http://IP[:PORT][/PATH]`` with an allowed IP; raises ``UnsafeTarget`` or ``ValueError``."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise ValueError(f"{url}: only http:// targets are probed")
        host = check_target(parts.hostname or "")
        return cls(host, parts.port or 80, parts.path or "/")


def check_bounds(duration: float, count: int, what: str, cap: int) -> None:
    if not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be in (0, {MAX_DURATION:.0f}] seconds (got {duration})")
    if not 0 < count <= cap:
        raise ValueError(f"{what} must be in [1, {cap}] (got {count})")


def check_rate(rate: float) -> None:
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be in (0, {MAX_RATE:.0f}] requests/s (got {rate})")
