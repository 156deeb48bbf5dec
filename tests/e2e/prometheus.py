"""A real Prometheus (Debian's /usr/bin/prometheus) for analysis tests, as a subprocess on 127.0.0.1.

Debian builds Prometheus without Kubernetes service discovery, so the targets are the pods'
IPs on the local bridge, written to a file_sd file: a bounded background thread lists the
rollout's pods every second and rewrites it (Prometheus picks the file up at once). Each target
carries the labels ``namespace``, ``pod``, ``revision`` (the pod's ``zdr.io/revision``) and
``rollout``, so a query can select one revision. ``static`` adds jobs with fixed targets on
127.0.0.1 (the operator's own metrics); ``pods=False`` leaves the pods out. Scrapes every
second; stopped (and its data directory removed) at the end of the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.e2e import kube

BINARY = Path("/usr/bin/prometheus")
POD_NETWORK = "10.88."
MAX_SECONDS = 900.0
"""The target refresher stops after this long whatever happens (every loop is bounded)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Prometheus:
    def __init__(
        self,
        core: client.CoreV1Api,
        namespace: str,
        workdir: Path,
        *,
        port: int = 8080,
        static: dict[str, list[str]] | None = None,
        pods: bool = True,
    ) -> None:
        self.core = core
        self.namespace = namespace
        self.workdir = workdir
        self.pod_port = port
        self.static = dict(static or {})
        self.pods = pods
        for targets in self.static.values():
            assert all(t.startswith("127.0.0.1:") for t in targets), targets
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop_refresh = threading.Event()
        self.refresher: threading.Thread | None = None
        self.targets_file = workdir / "targets.json"
        self.log_path = workdir / "prometheus.log"

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.targets_file.write_text("[]")
        jobs: list[dict[str, Any]] = [
            {"job_name": name, "static_configs": [{"targets": targets}]} for name, targets in self.static.items()
        ]
        if self.pods:
            jobs.append(
                {
                    "job_name": "testapp",
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                }
            )
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "scrape_configs": jobs,
        }
        (self.workdir / "prometheus.yml").write_text(json.dumps(config))
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(BINARY),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)},
        )
        log.close()
        if self.pods:
            self.refresher = threading.Thread(target=self._refresh, name="prometheus-targets", daemon=True)
            self.refresher.start()
        kube.wait_until("Prometheus to be ready", self._ready, timeout=timeout, interval=0.5)

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"Prometheus exited {self.proc.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.address}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def _refresh(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while not self.stop_refresh.is_set() and time.monotonic() < deadline:
            # The API server may blink; the next round retries.
            with contextlib.suppress(Exception):
                self.write_targets()
            self.stop_refresh.wait(1.0)

    def write_targets(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector="zdr.io/rollout").items
        groups = []
        for pod in pods:
            ip = pod.status.pod_ip
            if not ip or not ip.startswith(POD_NETWORK) or pod.metadata.deletion_timestamp is not None:
                continue
            labels = pod.metadata.labels or {}
            groups.append(
                {
                    "targets": [f"{ip}:{self.pod_port}"],
                    "labels": {
                        "namespace": self.namespace,
                        "pod": pod.metadata.name,
                        "revision": labels.get("zdr.io/revision", ""),
                        "rollout": labels.get("zdr.io/rollout", ""),
                    },
                }
            )
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups))
        tmp.replace(self.targets_file)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:
            answer = json.loads(resp.read())
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_scraping(self, revision: str, pods: int, timeout: float = 60) -> None:
        """Waits until ``pods`` pods of ``revision`` are scraped successfully."""
        kube.wait_until(
            f"Prometheus to scrape {pods} pods of {revision}",
            lambda: len([r for r in self.query(f'up{{revision="{revision}"}} == 1')]) >= pods,
            timeout=timeout,
            interval=1.0,
        )

    def stop(self) -> None:
        self.stop_refresh.set()
        if self.refresher is not None:
            self.refresher.join(timeout=5)
        if self.proc is not None:
            kube.terminate(self.proc)
            self.proc = None
        shutil.rmtree(self.workdir / "data", ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
