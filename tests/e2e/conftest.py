"""Fixtures for end-to-end tests on the local cluster (hack/cluster-up.sh).

The session starts the cluster when none is running; a cluster that cannot start
fails the tests with the failing component's log tail, never skips them.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.e2e import kube

ROOT = Path(__file__).resolve().parents[2]
KUBECONFIG = ROOT / ".cluster" / "kubeconfig"


@pytest.fixture(scope="session")
def cluster() -> Path:
    """Brings the local cluster up (a no-op when it already runs) and returns its kubeconfig."""
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
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    kube.wait_for_default_service_account(core, name)
    yield name
    core.delete_namespace(name, body=client.V1DeleteOptions(grace_period_seconds=0))
