"""The single-namespace overlay (manifests/overlays/namespaced) installed as a user installs it:
the operator serves one namespace with a Role there, and nothing cluster-wide but reading CRDs.

Runs after test_install.py has removed its operator; the ClusterRoleBinding a cluster-wide
install leaves is removed first, so only what the overlay grants is in force.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from tests.e2e import kube as kubeutil
from tests.e2e.conftest import SESSION
from tests.e2e.rollouts import ROLLING, Rollouts, rollout, with_version
from tests.e2e.test_install import SA, SELECTOR, SYSTEM, Install, _can, kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "manifests" / "overlays" / "namespaced"


def _render(workdir: Path, namespace: str) -> Path:
    """The overlay with its placeholder namespace `apps` replaced by ``namespace``."""
    out = workdir / "namespaced"
    out.mkdir()
    args = [
        "kopf",
        "run",
        "--standalone",
        f"--namespace={namespace}",
        "--liveness=http://0.0.0.0:8080/healthz",
        "-m",
        "zdr.handlers",
    ]
    patches = [
        {
            "target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": "zdr-operator"},
            "patch": json.dumps(
                [{"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": args}]
            ),
        }
    ]
    for kind in ("Role", "RoleBinding"):
        patches.append(
            {
                "target": {"kind": kind, "name": "zdr-operator", "namespace": "apps"},
                "patch": json.dumps([{"op": "replace", "path": "/metadata/namespace", "value": namespace}]),
            }
        )
    kustomization: dict[str, object] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(OVERLAY, out)],
        "patches": patches,
    }
    image = os.environ.get("ZDR_OPERATOR_IMAGE")
    if image:
        name, _, tag = image.rpartition(":")
        kustomization["images"] = [{"name": "zdr.local/zdr-operator", "newName": name, "newTag": tag}]
    (out / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return out


@pytest.fixture
def served(
    cluster: Path, crd: None, api: client.ApiClient, core: client.CoreV1Api, tmp_path: Path
) -> Iterator[tuple[Install, str]]:
    namespace = f"served-{uuid.uuid4().hex[:5]}-n{SESSION}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    kubeutil.wait_for_default_service_account(core, namespace)
    install = Install(cluster, api, tmp_path)
    # Whatever a cluster-wide install left must not lend its rights to this one.
    kubectl(cluster, "delete", "clusterrolebinding/zdr-operator", "--ignore-not-found")
    kubectl(cluster, "-n", SYSTEM, "delete", "deployment/zdr-operator", "--ignore-not-found", "--wait=true")
    overlay = _render(tmp_path, namespace)
    rendered = kubectl(cluster, "kustomize", str(overlay))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(rendered) if d}
    assert ("ClusterRole", "zdr-operator") not in kinds and (
        "ClusterRoleBinding",
        "zdr-operator",
    ) not in kinds
    kubectl(cluster, "apply", "-k", str(overlay))
    try:
        kubectl(cluster, "-n", SYSTEM, "rollout", "status", "deployment/zdr-operator", "--timeout=180s")
        kubeutil.wait_until("both operator pods Ready", lambda: len(install.ready_pods()) == 2 or None, 60)
        yield install, namespace
    except Exception:
        print(install.logs().read_text()[-6000:])
        raise
    finally:
        kubectl(cluster, "-n", SYSTEM, "delete", "deployment/zdr-operator", "--wait=true", check=False)
        core.delete_namespace(namespace, body=client.V1DeleteOptions(grace_period_seconds=0))


def test_the_namespaced_install_serves_its_namespace_with_a_role_only(
    served: tuple[Install, str], api: client.ApiClient
) -> None:
    install, namespace = served
    assert _can(api, "create", "apps", "deployments", namespace)
    assert not _can(api, "create", "apps", "deployments", "default"), "the Role reaches beyond its namespace"
    assert not _can(api, "patch", "", "pods", "default")
    assert not _can(api, "list", "", "namespaces", None)
    assert not _can(api, "get", "", "secrets", namespace)

    zdr = Rollouts(api, namespace)
    manifest = rollout("web", ROLLING, replicas=2)
    zdr.create(manifest)
    zdr.wait_phase("web", "Healthy", timeout=120)
    zdr.update_spec("web", with_version(manifest, "v2")["spec"])
    zdr.wait_phase("web", "Healthy", timeout=120)
    zdr.wait_only("web", {"v2"})
    assert any(e.reason == "RolloutCompleted" for e in zdr.events("web"))
    log = install.logs().read_text()
    assert "orbidden" not in log, log[-4000:]
    pods = install.core.list_namespaced_pod(SYSTEM, label_selector=SELECTOR).items
    assert {p.spec.service_account_name for p in pods} == {SA.rsplit(":", 1)[1]}
