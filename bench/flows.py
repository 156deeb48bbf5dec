"""Which pod each probed connection went to: the kernel's conntrack events for a Service IP.

kube-proxy picks a pod for each new connection to a ClusterIP by DNAT; the choice is recorded in
the connection's conntrack entry and nowhere else. ``FlowLog`` runs ``conntrack -E`` (events for
new TCP flows to one Service IP and port) for the length of a scenario and maps each flow's
client port to the pod IP it was translated to. The probers record the client port of every
request (``sport``, bound before connecting, so a refused connect has one too), so a failed
request can be traced to the pod that refused it, and that pod's history (deleted when, left the
EndpointSlice when) explains why kube-proxy still sent traffic there.

Reads only the local kernel's connection tracking; sends nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

_NEW = re.compile(
    r"\[NEW\].*?src=(?P<src>\S+) dst=(?P<dst>\S+) sport=(?P<sport>\d+) dport=(?P<dport>\d+).*?"
    r"src=(?P<pod>\S+) dst=\S+ sport=(?P<pport>\d+)"
)


def programmed(ip: str, port: int = 80) -> bool:
    """kube-proxy has written the NAT rule that sends new connections to ``ip:port`` to a pod.

    A SYN to a Service IP sent before that rule exists is not translated: its conntrack entry keeps
    no translation (SYN_SENT, 120 s), and a later connection from the same client port matches that
    entry instead of kube-proxy's rules, so it goes nowhere. Probing a new Service before its rule
    exists poisons client ports for two minutes; wait for the rule first. True where the rules
    cannot be read (no iptables-save, or not root): the probe then decides alone."""
    if shutil.which("iptables-save") is None:
        return True
    try:
        out = subprocess.run(
            ["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return True
    return any(
        line.startswith("-A KUBE-SERVICES ") and f"-d {ip}/32 " in line and f"--dport {port} " in line
        for line in out.splitlines()
    )


def forget(ip: str) -> None:
    """Deletes the conntrack entries of TCP connections to ``ip``: what probes sent before a
    measurement leave behind must not decide where the measurement's connections go."""
    if shutil.which("conntrack") is None:
        return
    subprocess.run(["conntrack", "-D", "-p", "tcp", "-d", ip], capture_output=True, timeout=10, check=False)


EVENT_BUFFER = 16 * 1024 * 1024
"""Bytes of netlink buffer for the events: with the default, a loaded node drops some."""


class FlowLog:
    """``conntrack -E -e NEW`` for TCP to ``ip:port`` while running; ``pods()`` maps client port to
    (seconds after ``epoch``, pod IP). A client port is reused over a long run, so lookups take the
    latest flow at or before the request's send time."""

    def __init__(self, ip: str, port: int, out: Path, epoch: float) -> None:
        self.ip, self.port, self.out, self.epoch = ip, port, out, epoch
        self.proc: subprocess.Popen[str] | None = None
        self.flows: dict[int, list[tuple[float, str]]] = {}
        self._thread: threading.Thread | None = None
        self.err: Path | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("conntrack") is not None

    def start(self) -> None:
        if not self.available():
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.err = self.out.with_suffix(".err")
        with self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [
                    "conntrack",
                    "-E",
                    "-e",
                    "NEW",
                    "-p",
                    "tcp",
                    "-d",
                    self.ip,
                    "--dport",
                    str(self.port),
                    "--buffer-size",
                    str(EVENT_BUFFER),
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                bufsize=1,
            )
        self._thread = threading.Thread(target=self._read, name="flows", daemon=True)
        self._thread.start()
        time.sleep(0.5)  # conntrack subscribes to the events: no flow of the probers may start before

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.out.open("w") as log:
            for line in self.proc.stdout:
                t = time.monotonic() - self.epoch
                log.write(f"{t:.4f} {line}")
                m = _NEW.search(line)
                if m and m["dst"] == self.ip:
                    self.flows.setdefault(int(m["sport"]), []).append((t, m["pod"]))

    def lost_events(self) -> bool:
        """conntrack reported that the kernel dropped events (ENOBUFS): a flow may be missing."""
        return self.err is not None and self.err.exists() and "ENOBUFS" in self.err.read_text()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def pod_ip(self, sport: int | None, t_send: float, slack: float = 2.0) -> str | None:
        """The pod IP of the flow from client port ``sport`` that began nearest before ``t_send``
        (the event arrives a little after the SYN)."""
        if sport is None:
            return None
        best = None
        for t, ip in self.flows.get(int(sport), []):
            if t <= t_send + slack and (best is None or t > best[0]):
                best = (t, ip)
        return best[1] if best else None

    def began(self, sport: int | None, t_send: float, before: float = 0.3, slack: float = 2.0) -> bool:
        """A new conntrack entry (a fresh translation by kube-proxy's rules) appeared for this client
        port around ``t_send``. False means the SYN matched an entry left by an earlier connection
        from the same port, and went where that one went."""
        return sport is not None and any(
            t_send - before <= t <= t_send + slack for t, _ in self.flows.get(int(sport), [])
        )

    def previous(self, sport: int | None, t_send: float, before: float = 0.3) -> tuple[float, str] | None:
        """The last flow from this client port that began before ``t_send``: (when, pod IP)."""
        if sport is None:
            return None
        earlier = [(t, ip) for t, ip in self.flows.get(int(sport), []) if t < t_send - before]
        return max(earlier) if earlier else None

    @staticmethod
    def entries(sport: int | None) -> list[str]:
        """The conntrack table's entries now for TCP from client port ``sport`` (any address): for
        a failed connect without a recorded flow, whether its SYN matched an entry that was already
        there (it then went where that entry translates to) or got none at all (dropped before
        conntrack confirmed it). Unanswered SYNs keep their entry for 120 s."""
        if sport is None or shutil.which("conntrack") is None:
            return []
        try:
            out = subprocess.run(
                ["conntrack", "-L", "-p", "tcp", "--orig-port-src", str(int(sport))],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
        except (subprocess.SubprocessError, OSError):
            return []
        return [line.strip() for line in out.splitlines() if line.strip()]

    def __enter__(self) -> FlowLog:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
