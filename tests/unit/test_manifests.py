"""The shipped manifests: the Argo CD health check (run in Lua 5.1, as Argo CD's gopher-lua
is), its copy in the argocd-cm patch, and the kustomize base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua
import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
HEALTH = (MANIFESTS / "health.lua").read_text()


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(_to_lua(runtime, obj))
    result = runtime.execute(HEALTH)
    return result["status"], result["message"] or ""


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (runtime.table_from(_to_lua(runtime, v)) if isinstance(v, dict | list) else v)
            for k, v in value.items()
        }
    return value


def rollout(generation: int, status: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"generation": generation}}
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("phase", "expected"),
    [
        ("Healthy", "Healthy"),
        ("Progressing", "Progressing"),
        ("Paused", "Suspended"),
        ("Degraded", "Degraded"),
        ("Aborted", "Degraded"),
    ],
)
def test_phase_maps_to_argo_health(phase: str, expected: str) -> None:
    status, message = health(rollout(3, {"observedGeneration": 3, "phase": phase, "message": "m"}))
    assert (status, message) == (expected, "m")


def test_unobserved_generation_is_progressing() -> None:
    assert health(rollout(4, {"observedGeneration": 3, "phase": "Healthy"}))[0] == "Progressing"
    assert health(rollout(1, None))[0] == "Progressing"


def test_argocd_patch_carries_the_same_script() -> None:
    patch = yaml.safe_load((MANIFESTS / "argocd-cm-patch.yaml").read_text())
    assert patch["data"]["resource.customizations.health.zdr.io_ZeroDowntimeRollout"] == HEALTH


def _kustomization_files(directory: Path) -> list[Path]:
    """Every resource a kustomization pulls in, following directories (other kustomizations)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    found: list[Path] = []
    for resource in kustomization["resources"]:
        path = (directory / resource).resolve()
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), path
            found += _kustomization_files(path)
        else:
            assert path.is_file(), path
            found.append(path)
    return found


def _objects(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for path in _kustomization_files(directory)
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }


def test_kustomizations_list_existing_files() -> None:
    assert _kustomization_files(MANIFESTS)
    assert _kustomization_files(MANIFESTS / "overlays" / "namespaced")


def test_the_base_installs_a_hardened_operator_with_a_standby() -> None:
    objects = _objects(MANIFESTS)
    assert ("CustomResourceDefinition", "zerodowntimerollouts.zdr.io") in objects
    deployment = objects[("Deployment", "zdr-operator")]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"livenessProbe", "readinessProbe"} <= container.keys()
    assert {"requests", "limits"} <= container["resources"].keys()
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ZDR_LEADER_ELECTION"] == "true"
    pdb = objects[("PodDisruptionBudget", "zdr-operator")]
    assert pdb["spec"]["minAvailable"] == 1


def test_users_roles_cover_rollouts_through_aggregation() -> None:
    objects = _objects(MANIFESTS)
    view = objects[("ClusterRole", "zdr-view")]["metadata"]["labels"]
    edit = objects[("ClusterRole", "zdr-edit")]["metadata"]["labels"]
    assert view["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"


def test_the_namespaced_role_grants_what_the_cluster_role_grants() -> None:
    base = _objects(MANIFESTS)[("ClusterRole", "zdr-operator")]["rules"]
    role = _objects(MANIFESTS / "overlays" / "namespaced")[("Role", "zdr-operator")]["rules"]
    cluster_scoped = {"namespaces", "customresourcedefinitions"}
    assert [r for r in base if not cluster_scoped & set(r["resources"])] == role
