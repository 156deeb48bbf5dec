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


def test_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MANIFESTS / resource).is_file(), resource
