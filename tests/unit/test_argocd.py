"""The Argo CD resource customization (manifests/argocd): the argocd-cm patch is generated from
its Lua files, every action writes a request the operator parses, and discovery enables an action
exactly when the planner accepts its command, in every state a rollout can be in (simulated
cluster, real planner)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from zdr.api import COMMAND_ANNOTATION, Command, parse_command
from zdr.plan import plan

from tests import argocd
from tests.unit.plan.simulate import Cluster, make_spec

ROOT = Path(__file__).resolve().parents[2]
VERBS = {
    "promote": ("promote", False),
    "promote-full": ("promote", True),
    "abort": ("abort", False),
    "retry": ("retry", False),
    "pause": ("pause", False),
    "resume": ("resume", False),
    "restart": ("restart", False),
}


def test_layout_and_argocd_cm_patch_agree() -> None:
    assert sorted(argocd.ACTIONS) == sorted(VERBS)
    for name in argocd.ACTIONS:
        assert (argocd.CUSTOMIZATION / "actions" / name / "action.lua").is_file(), name
    assert (argocd.CUSTOMIZATION / "health.lua").read_text() == (ROOT / "manifests/health.lua").read_text()
    check = subprocess.run(
        [sys.executable, str(ROOT / "hack/argocd-cm.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    data = yaml.safe_load((ROOT / "manifests/argocd-cm-patch.yaml").read_text())["data"]
    actions = yaml.safe_load(data["resource.customizations.actions.zdr.io_ZeroDowntimeRollout"])
    assert actions["discovery.lua"] == (argocd.CUSTOMIZATION / "actions/discovery.lua").read_text()
    assert sorted(d["name"] for d in actions["definitions"]) == sorted(VERBS)
    for definition in actions["definitions"]:
        script = argocd.CUSTOMIZATION / "actions" / definition["name"] / "action.lua"
        assert definition["action.lua"] == script.read_text()


def live(spec: dict[str, Any], status: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "zdr.io/v1alpha1",
        "kind": "ZeroDowntimeRollout",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": 2,
            "resourceVersion": "4711",
            **metadata,
        },
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize("name", sorted(VERBS))
def test_action_writes_one_request_the_operator_parses(name: str) -> None:
    obj = live(make_spec(3), annotations={"team": "shop"})
    before = datetime.now(UTC).replace(microsecond=0)
    patch = argocd.action_patch(name, obj)
    after = datetime.now(UTC)
    assert list(patch) == ["metadata"] and list(patch["metadata"]) == ["annotations"]
    assert list(patch["metadata"]["annotations"]) == [COMMAND_ANNOTATION]
    text = patch["metadata"]["annotations"][COMMAND_ANNOTATION]
    command = parse_command(text)
    assert (command.verb, command.full) == VERBS[name]
    assert command.requested_by == "argocd" and command.to_revision is None
    assert command.requested_at is not None and before <= command.requested_at <= after
    assert command.id.startswith("argocd-") and command.id.endswith("-4711")
    assert json.loads(text)["verb"] == command.verb


def test_action_ids_differ_with_the_resource_version() -> None:
    first = argocd.run_action("promote", live(make_spec(3)))
    second = argocd.run_action("promote", live(make_spec(3), resourceVersion="4712"))
    ids = {parse_command(o["metadata"]["annotations"][COMMAND_ANNOTATION]).id for o in (first, second)}
    assert len(ids) == 2


def test_action_keeps_the_rest_of_the_object() -> None:
    spec = make_spec(3, strategy={"type": "Canary", "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
    obj = live(spec, {"phase": "Paused", "conditions": []}, annotations={})
    new = argocd.run_action("abort", obj)
    assert new["spec"] == spec and new["status"] == obj["status"]
    assert argocd.merge_patch(obj, new) == {
        "metadata": {"annotations": {COMMAND_ANNOTATION: new["metadata"]["annotations"][COMMAND_ANNOTATION]}}
    }


def test_the_sandbox_has_what_argocd_opens_and_no_more() -> None:
    obj = live(make_spec(1))
    assert argocd.run_lua('return os.date("!%Y")', obj) == str(datetime.now(UTC).year)
    for script in ('return ("x"):len()', "return string.len('x')", "return math.floor(1)", "return io"):
        try:
            result = argocd.run_lua(script, obj)
        except Exception:  # noqa: BLE001 - any Lua error is a refusal
            continue
        assert result is None, script


# ---------------------------------------------------------------------------------------------
# Discovery against the planner
# ---------------------------------------------------------------------------------------------
ROLLING = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "scaleDownDelaySeconds": 30}}
BLUE_GREEN = {"type": "BlueGreen", "blueGreen": {"autoPromotion": False, "scaleDownDelaySeconds": 30}}
CANARY = {
    "type": "Canary",
    "canary": {"maxSurge": 1, "steps": [{"setWeight": 50}, {"pause": {}}], "scaleDownDelaySeconds": 30},
}


def v(strategy: dict[str, Any], version: int) -> dict[str, Any]:
    return make_spec(4, image=f"example/web:{version}", strategy=strategy)


def healthy(strategy: dict[str, Any]) -> tuple[Cluster, dict[str, Any]]:
    cluster = Cluster(ready_after=2)
    spec = v(strategy, 1)
    cluster.run(spec)
    return cluster, spec


def until(cluster: Cluster, spec: dict[str, Any], done: Callable[[Cluster], bool], **kw: Any) -> None:
    for _ in range(80):
        cluster.step(spec, **kw)
        if done(cluster):
            return
    raise AssertionError(f"{cluster.status.phase}: {cluster.status.message}")


def command(verb: str, **kw: Any) -> Command:
    return Command(id=f"{verb}-{datetime.now(UTC).timestamp()}", verb=verb, **kw)  # type: ignore[arg-type]


def s_rolling_healthy() -> tuple[Cluster, dict[str, Any]]:
    return healthy(ROLLING)


def s_rolling_in_progress() -> tuple[Cluster, dict[str, Any]]:
    cluster, _ = healthy(ROLLING)
    spec = v(ROLLING, 2)
    cluster.step(spec)
    cluster.step(spec)
    return cluster, spec


def s_first_deployment() -> tuple[Cluster, dict[str, Any]]:
    cluster = Cluster(ready_after=3)
    spec = v(CANARY, 1)
    cluster.step(spec)
    return cluster, spec


def s_canary_paused_at_step() -> tuple[Cluster, dict[str, Any]]:
    cluster, _ = healthy(CANARY)
    spec = v(CANARY, 2)
    until(cluster, spec, lambda c: c.status.phase == "Paused")
    return cluster, spec


def s_blue_green_awaiting_promotion() -> tuple[Cluster, dict[str, Any]]:
    cluster, _ = healthy(BLUE_GREEN)
    spec = v(BLUE_GREEN, 2)
    until(cluster, spec, lambda c: c.status.phase == "Paused")
    return cluster, spec


def s_aborting() -> tuple[Cluster, dict[str, Any]]:
    cluster, spec = s_canary_paused_at_step()
    cluster.step(spec, command=command("abort"))
    assert cluster.status.abort is not None and cluster.status.abort.completed_at is None
    return cluster, spec


def s_aborted() -> tuple[Cluster, dict[str, Any]]:
    cluster, spec = s_canary_paused_at_step()
    abort = command("abort")
    until(
        cluster,
        spec,
        lambda c: c.status.abort is not None and c.status.abort.completed_at is not None,
        command=abort,
    )
    return cluster, spec


def s_rolled_back() -> tuple[Cluster, dict[str, Any]]:
    cluster, _ = healthy(ROLLING)
    spec = v(ROLLING, 2)
    cluster.run(spec)
    undo = command("undo")
    until(
        cluster,
        spec,
        lambda c: c.status.rollback is not None and c.status.rollback.completed_at is not None,
        command=undo,
    )
    return cluster, spec


def s_paused_by_command() -> tuple[Cluster, dict[str, Any]]:
    cluster, _ = healthy(ROLLING)
    spec = v(ROLLING, 2)
    cluster.step(spec, command=command("pause"))
    cluster.step(spec)
    assert cluster.status.paused_by_command and cluster.status.phase == "Paused"
    return cluster, spec


def s_fast_rollback() -> tuple[Cluster, dict[str, Any]]:
    cluster, first = healthy(ROLLING)
    cluster.run(v(ROLLING, 2))
    cluster.step(first)  # v1 again, within its warm window
    return cluster, first


def s_restarting() -> tuple[Cluster, dict[str, Any]]:
    cluster, spec = healthy(ROLLING)
    cluster.wait(spec, 40)  # past the warm window
    cluster.status = plan(spec, cluster.status, cluster.observe(command("restart")), cluster.now).status
    assert cluster.status.restart is not None and cluster.status.restart.completed_at is None
    return cluster, spec


STATES = {
    "rolling-healthy": s_rolling_healthy,
    "rolling-in-progress": s_rolling_in_progress,
    "first-deployment": s_first_deployment,
    "canary-paused-at-step": s_canary_paused_at_step,
    "blue-green-awaiting-promotion": s_blue_green_awaiting_promotion,
    "aborting": s_aborting,
    "aborted": s_aborted,
    "rolled-back": s_rolled_back,
    "paused-by-command": s_paused_by_command,
    "fast-rollback": s_fast_rollback,
    "restarting": s_restarting,
}


@pytest.mark.parametrize("state", sorted(STATES))
def test_discovery_enables_what_the_operator_accepts(state: str) -> None:
    cluster, spec = STATES[state]()
    obj = live(spec, cluster.status.to_k8s(), generation=cluster.generation)
    enabled = argocd.discover(obj)
    assert sorted(enabled) == sorted(VERBS)
    answers = {}
    for name in VERBS:
        # The request the action writes, read the way the operator reads the annotation.
        request = parse_command(argocd.run_action(name, obj)["metadata"]["annotations"][COMMAND_ANNOTATION])
        result = plan(spec, cluster.status, cluster.observe(request), cluster.now + timedelta(seconds=1))
        record = result.status.last_command
        assert record is not None and record.id == request.id
        answers[name] = record.result == "Accepted"
    paused = bool(cluster.status.paused_by_command)
    # pause and resume are always accepted; the UI offers the one that changes something.
    assert answers["pause"] and answers["resume"]
    assert (enabled["pause"], enabled["resume"]) == (not paused, paused)
    others = [name for name in VERBS if name not in ("pause", "resume")]
    assert {n: enabled[n] for n in others} == {n: answers[n] for n in others}, cluster.status.message


def test_discovery_of_a_rollout_the_operator_has_not_seen() -> None:
    enabled = argocd.discover(live(make_spec(3)))
    assert [name for name, on in sorted(enabled.items()) if on] == ["pause"]
