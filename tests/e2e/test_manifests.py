"""The shipped RBAC is enough: an operator holding only the zdr-operator ServiceAccount's
token rolls out a ZeroDowntimeRollout from apply to Healthy."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.e2e import kube
from tests.e2e.conftest import OperatorProcess
from tests.e2e.rollouts import ROLLING, Rollouts, rollout, with_version

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _kubectl(kubeconfig: Path, *args: str) -> str:
    return subprocess.run(
        [str(ROOT / ".cluster/bin/kubectl"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_operator_runs_with_only_the_shipped_rbac(
    cluster: Path, crd: None, api: client.ApiClient, core: client.CoreV1Api, tmp_path: Path
) -> None:
    manifests = ROOT / "manifests"
    _kubectl(cluster, "apply", "-f", str(manifests / "base" / "namespace.yaml"), "-f", str(manifests / "base" / "rbac.yaml"))
    # The operator image is not built on this machine (and nothing may be pulled): the API
    # server validates its Deployment, and the same operator runs on the host with the
    # ServiceAccount's token and nothing else.
    _kubectl(cluster, "apply", "--dry-run=server", "-k", str(manifests))
    token = _kubectl(cluster, "-n", "zdr-system", "create", "token", "zdr-operator", "--duration=1h").strip()
    admin = yaml.safe_load(cluster.read_text())
    sa_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "zdr-operator", "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "zdr-operator"}}
        ],
        "current-context": "sa",
    }
    kubeconfig = tmp_path / "zdr-operator.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(sa_config))
    assert (
        _kubectl(kubeconfig, "auth", "can-i", "patch", "zerodowntimerollouts.zdr.io/status", "-A").strip()
        == "yes"
    )

    namespace = f"rbac-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    kube.wait_for_default_service_account(core, namespace)
    op = OperatorProcess(kubeconfig, tmp_path / "operator.log", namespaces=namespace)
    op.start()
    try:
        zdr = Rollouts(api, namespace)
        manifest = rollout("web", ROLLING, replicas=2)
        zdr.create(manifest)
        zdr.wait_phase("web", "Healthy", timeout=90)
        zdr.update_spec("web", with_version(manifest, "v2")["spec"])
        zdr.wait_phase("web", "Healthy", timeout=90)
        zdr.wait_only("web", {"v2"})
        assert zdr.events("web"), "the operator could not record Events"
        log = op.log_tail(400)
        assert "Forbidden" not in log and "forbidden" not in log, log
    finally:
        op.stop()
        core.delete_namespace(namespace)
