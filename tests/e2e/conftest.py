"""Fixtures for end-to-end tests on the local cluster (hack/cluster-up.sh).

The session starts the cluster when none is running; a cluster that cannot start
fails the tests with the failing component's log tail, never skips them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.e2e import kube

ROOT = Path(__file__).resolve().parents[2]
KUBECONFIG = Path(os.environ.get("ZDR_E2E_KUBECONFIG") or ROOT / ".cluster" / "kubeconfig").resolve()
"""The cluster under test: ``ZDR_E2E_KUBECONFIG``, else the local cluster (hack/cluster-up.sh)."""
# Every namespace of this test session ends with this token, and the session's operator
# watches only those: test sessions (and a bench) can share one cluster.
SESSION = uuid.uuid4().hex[:4]
NAMESPACES = f"*-{SESSION}"


@pytest.fixture(scope="session")
def cluster() -> Path:
    """The cluster under test and its kubeconfig.

    ``ZDR_E2E_KUBECONFIG`` names a running cluster to test (its images loaded beforehand by
    ``make test-e2e``, hack/load-images.sh); without it the local cluster is brought up (a no-op
    when it already runs)."""
    if os.environ.get("ZDR_E2E_KUBECONFIG"):
        if not KUBECONFIG.is_file():
            pytest.fail(f"ZDR_E2E_KUBECONFIG={KUBECONFIG}: no such file", pytrace=False)
        os.environ["KUBECONFIG"] = str(KUBECONFIG)
        return KUBECONFIG
    proc = subprocess.run(
        ["bash", str(ROOT / "hack" / "cluster-up.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        pytest.fail(
            "the local cluster did not start (hack/cluster-up.sh exited "
            f"{proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}",
            pytrace=False,
        )
    os.environ["KUBECONFIG"] = str(KUBECONFIG)
    return KUBECONFIG


@pytest.fixture(scope="session")
def api(cluster: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster))


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def namespace(core: client.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (its pods drain in the background)."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().replace("_", "-"))[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}-{SESSION}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    kube.wait_for_default_service_account(core, name)
    yield name
    core.delete_namespace(name, body=client.V1DeleteOptions(grace_period_seconds=0))


class OperatorProcess:
    """The zdr operator as a real process (`kopf run`), as `make run` starts it."""

    def __init__(
        self, kubeconfig: Path, log_path: Path, namespaces: str = NAMESPACES, metrics_addr: str = "off"
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.namespaces = namespaces
        self.metrics_addr = metrics_addr
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "ZDR_LOG_FORMAT": "json",
            "ZDR_METRICS_ADDR": self.metrics_addr,
        }
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--standalone",
                f"--namespace={self.namespaces}",
                "-m",
                "zdr.handlers",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last status write."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            kube.terminate(self.proc)
            self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def crd(cluster: Path) -> None:
    subprocess.run(
        [
            str(ROOT / ".cluster/bin/kubectl"),
            "--kubeconfig",
            str(cluster),
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(ROOT / "crds" / "zerodowntimerollouts.zdr.io.yaml"),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            str(ROOT / ".cluster/bin/kubectl"),
            "--kubeconfig",
            str(cluster),
            "wait",
            "--for=condition=Established",
            "crd/zerodowntimerollouts.zdr.io",
            "--timeout=60s",
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def operator(cluster: Path, crd: None) -> Iterator[OperatorProcess]:
    """One operator for the session; tests that kill it must start it again."""
    logs = ROOT / ".cluster" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    op = OperatorProcess(cluster, logs / "zdr-operator.log")
    op.start()
    yield op
    op.stop()
