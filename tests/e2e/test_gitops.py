"""GitOps tools on the real cluster, with their own code where it can run here:

- kstatus, the library Flux waits with (sigs.k8s.io/cli-utils, built by hack/build-binaries.sh into
  .cluster/bin/kstatus), reads the live ZeroDowntimeRollout at each phase: InProgress while the
  operator has not seen the spec, while it rolls out and while it is paused; Current once Healthy;
  Failed once aborted or stalled. `kubectl wait --for=condition=Ready` returns once Healthy and
  never on the Ready of an older generation.
- Argo CD's resource actions (manifests/argocd/...): each action's Lua runs on the live object as
  Argo CD runs it (tests/argocd.py), its merge patch goes to the API server as Argo CD sends it,
  and the operator reacts: promote, promote-full, abort, retry, pause, resume, restart. The health
  Lua is read on the same live objects.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from zdr.api import COMMAND_ANNOTATION, parse_command

from tests import argocd
from tests.e2e import kube
from tests.e2e.conftest import KUBECONFIG, OperatorProcess
from tests.e2e.rollouts import GROUP, PLURAL, ROLLING, VERSION, Rollouts, canary, rollout, with_version

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
KUBECTL = ROOT / ".cluster/bin/kubectl"
KSTATUS = ROOT / ".cluster/bin/kstatus"
Json = dict[str, Any]

STEPS: list[Json] = [{"setWeight": 34}, {"pause": {}}, {"setWeight": 67}, {"pause": {}}]
"""Canary steps with two indefinite pauses (step indexes 1 and 3): promote moves one at a time."""


@pytest.fixture(scope="session")
def kstatus_bin(cluster: Path) -> Path:
    """The kstatus command (hack/cluster-up.sh builds it when missing; a no-op when cached)."""
    if not KSTATUS.exists():
        build = subprocess.run(
            ["bash", str(ROOT / "hack/build-binaries.sh")], cwd=ROOT, capture_output=True, text=True
        )
        assert build.returncode == 0, build.stderr[-4000:]
    return KSTATUS


@pytest.fixture
def zdr(api: client.ApiClient, namespace: str, operator: OperatorProcess) -> Rollouts:
    if operator.proc is None or operator.proc.poll() is not None:
        operator.start()
    return Rollouts(api, namespace)


def kstatus(binary: Path, obj: Json) -> Json:
    """kstatus' verdict on ``obj``: {"status": ..., "message": ...}."""
    out = subprocess.run([str(binary)], input=json.dumps(obj), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    verdict: Json = json.loads(out.stdout)
    return verdict


def kubectl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """kubectl as a user runs it, with API discovery read afresh (another CRD may claim a short name)."""
    with tempfile.TemporaryDirectory() as cache:
        return subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(KUBECONFIG), f"--cache-dir={cache}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def wait_ready(namespace: str, name: str, timeout: str) -> subprocess.CompletedProcess[str]:
    return kubectl("-n", namespace, "wait", "--for=condition=Ready", f"zdr/{name}", f"--timeout={timeout}")


def observed(obj: Json) -> bool:
    st = obj.get("status") or {}
    return bool(st.get("observedGeneration") == obj["metadata"]["generation"])


def snapshot(
    zdr: Rollouts, name: str, what: str, check: Callable[[Json], bool], timeout: float = 120
) -> Json:
    """The first read of the live object that shows ``what``: every verdict below is on that read."""

    def found() -> Json | None:
        obj = zdr.get(name)
        return obj if observed(obj) and check(obj) else None

    return kube.wait_until(f"{name}: {what}", found, timeout=timeout)


def phase(name: str, step: int | None = None) -> Callable[[Json], bool]:
    def check(obj: Json) -> bool:
        st = obj["status"]
        return bool(st.get("phase") == name and (step is None or st.get("currentStepIndex") == step))

    return check


def condition(obj: Json, type_: str) -> Json:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


# ---------------------------------------------------------------------------------------------
# kstatus and kubectl wait
# ---------------------------------------------------------------------------------------------
def test_kstatus_reads_each_phase(
    zdr: Rollouts, namespace: str, operator: OperatorProcess, kstatus_bin: Path
) -> None:
    manifest = rollout("api", canary(STEPS), replicas=3)
    # A rollout no operator has seen yet (the CRD defaults status.observedGeneration to 0).
    operator.stop()
    try:
        zdr.create(manifest)
        obj = zdr.get("api")
        assert obj["status"] == {"observedGeneration": 0}, obj.get("status")
        verdict = kstatus(kstatus_bin, obj)
        assert verdict == {
            "status": "InProgress",
            "message": "ZeroDowntimeRollout generation is 1, but latest observed generation is 0",
        }, verdict
        assert argocd.health(obj)[0] == "Progressing"
    finally:
        operator.start()
    obj = snapshot(zdr, "api", "Healthy", phase("Healthy"))
    v1 = obj["status"]["stableRevision"]
    assert kstatus(kstatus_bin, obj) == {"status": "Current", "message": "Resource is Ready"}
    assert argocd.health(obj)[0] == "Healthy"
    # The same through kubectl's YAML output, as a user pipes it.
    yaml_out = kubectl("-n", namespace, "get", "zdr", "api", "-o", "yaml")
    assert yaml_out.returncode == 0, yaml_out.stderr
    piped = subprocess.run([str(kstatus_bin)], input=yaml_out.stdout, capture_output=True, text=True)
    assert json.loads(piped.stdout)["status"] == "Current", piped.stdout + piped.stderr
    done = wait_ready(namespace, "api", "60s")
    assert done.returncode == 0, done.stdout + done.stderr

    # A spec the operator has not seen: with no operator running, the window stays open.
    operator.stop()
    try:
        zdr.update_spec("api", with_version(manifest, "v2", STARTUP_DELAY="3s")["spec"])
        obj = zdr.get("api")
        generation, seen = obj["metadata"]["generation"], obj["status"]["observedGeneration"]
        assert generation > seen
        assert condition(obj, "Ready")["status"] == "True"  # still the previous generation's
        verdict = kstatus(kstatus_bin, obj)
        assert verdict["status"] == "InProgress", verdict
        assert f"generation is {generation}, but latest observed generation is {seen}" in verdict["message"]
        assert argocd.health(obj)[0] == "Progressing"
        stale = wait_ready(namespace, "api", "3s")
        assert stale.returncode != 0, "kubectl wait took the Ready of an older generation"
        assert "timed out" in stale.stderr, stale.stderr
    finally:
        operator.start()

    obj = snapshot(zdr, "api", "rolling out", phase("Progressing"))
    verdict = kstatus(kstatus_bin, obj)
    assert verdict == {"status": "InProgress", "message": condition(obj, "Reconciling")["message"]}, verdict
    assert argocd.health(obj)[0] == "Progressing"

    obj = snapshot(zdr, "api", "paused at step 2", phase("Paused", 1))
    verdict = kstatus(kstatus_bin, obj)
    assert verdict["status"] == "InProgress" and "until `kubectl zdr promote`" in verdict["message"], verdict
    assert argocd.health(obj)[0] == "Suspended"
    assert wait_ready(namespace, "api", "2s").returncode != 0

    zdr.command("api", "promote", full=True)
    obj = snapshot(
        zdr, "api", "v2 Healthy", lambda o: phase("Healthy")(o) and o["status"]["stableRevision"] != v1
    )
    assert kstatus(kstatus_bin, obj)["status"] == "Current"
    done = wait_ready(namespace, "api", "60s")
    assert done.returncode == 0, done.stdout + done.stderr

    # Aborted: Failed from the abort on, while traffic moves back and once it has.
    zdr.update_spec("api", with_version(manifest, "v3")["spec"])
    snapshot(zdr, "api", "v3 paused at step 2", phase("Paused", 1))
    zdr.command("api", "abort")
    obj = snapshot(zdr, "api", "Aborted", phase("Aborted"))
    verdict = kstatus(kstatus_bin, obj)
    assert verdict == {"status": "Failed", "message": condition(obj, "Stalled")["message"]}, verdict
    assert condition(obj, "Stalled")["reason"] == "RolloutAborted"
    assert argocd.health(obj)[0] == "Degraded"
    obj = snapshot(
        zdr, "api", "abort complete", lambda o: bool((o["status"].get("abort") or {}).get("completedAt"))
    )
    assert kstatus(kstatus_bin, obj)["status"] == "Failed"
    assert wait_ready(namespace, "api", "2s").returncode != 0


def test_kstatus_fails_a_stalled_rollout_and_a_refused_spec(zdr: Rollouts, kstatus_bin: Path) -> None:
    # A first deployment whose pods never serve: nothing to go back to, so it is reported Stalled.
    stuck = rollout("web", ROLLING, replicas=2, env={"NEVER_READY": "true"})
    stuck["spec"]["progressDeadlineSeconds"] = 8
    zdr.create(stuck)
    obj = snapshot(zdr, "web", "progressing", phase("Progressing"), timeout=30)
    assert kstatus(kstatus_bin, obj)["status"] == "InProgress"
    obj = snapshot(zdr, "web", "stalled", lambda o: condition(o, "Stalled")["status"] == "True", timeout=60)
    assert condition(obj, "Stalled")["reason"] == "ProgressDeadlineExceeded"
    assert obj["status"]["phase"] == "Degraded"
    verdict = kstatus(kstatus_bin, obj)
    assert verdict["status"] == "Failed" and "progressDeadlineSeconds" in verdict["message"], verdict
    assert argocd.health(obj)[0] == "Degraded"

    # A spec the operator refuses (no readinessProbe): Stalled at once.
    zdr.create(rollout("bare", ROLLING, replicas=1, readiness=False))
    obj = snapshot(zdr, "bare", "refused", phase("Degraded"), timeout=30)
    assert condition(obj, "Stalled")["reason"] == "MissingReadinessProbe"
    verdict = kstatus(kstatus_bin, obj)
    assert verdict["status"] == "Failed" and "readinessProbe" in verdict["message"], verdict


# ---------------------------------------------------------------------------------------------
# Argo CD resource actions
# ---------------------------------------------------------------------------------------------
def offered(obj: Json) -> set[str]:
    return {name for name, enabled in argocd.discover(obj).items() if enabled}


def run_action(zdr: Rollouts, name: str, action: str) -> Json:
    """Runs ``action`` as Argo CD does: discovery on the live object must offer it, the action's Lua
    returns the changed object, the merge patch from the live object goes to the API server; then
    waits for the operator's answer in status.lastCommand, which must be Accepted."""
    live = zdr.get(name)
    assert action in offered(live), f"{action} is not offered: {argocd.discover(live)}"
    patch = argocd.action_patch(action, live)
    assert list(patch) == ["metadata"] and list(patch["metadata"]) == ["annotations"], patch
    request = parse_command(patch["metadata"]["annotations"][COMMAND_ANNOTATION])
    zdr.custom.patch_namespaced_custom_object(GROUP, VERSION, zdr.namespace, PLURAL, name, patch)

    def answered() -> Json | None:
        obj = zdr.get(name)
        last = (obj.get("status") or {}).get("lastCommand") or {}
        return obj if last.get("id") == request.id else None

    obj = kube.wait_until(f"the operator to answer {action}", answered, timeout=60)
    last = obj["status"]["lastCommand"]
    assert last["result"] == "Accepted", last
    assert obj["metadata"]["generation"] == live["metadata"]["generation"]  # spec untouched
    return obj


def serving_pods(zdr: Rollouts, name: str, revision: str) -> set[str]:
    return {
        p.metadata.name
        for p in zdr.pods(name, revision)
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    }


def test_argocd_actions_promote_abort_retry_restart(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("api", canary(STEPS), replicas=3)
    zdr.create(manifest)
    obj = snapshot(zdr, "api", "Healthy", phase("Healthy"))
    v1 = obj["status"]["stableRevision"]
    kube.wait_serving(kube.cluster_ip(zdr.core, namespace, "api"))
    assert offered(obj) == {"pause", "restart"}

    # restart: every pod of the stable revision replaced, the revision unchanged.
    before = serving_pods(zdr, "api", v1)
    assert len(before) == 3
    run_action(zdr, "api", "restart")
    obj = snapshot(
        zdr, "api", "restart complete", lambda o: bool((o["status"].get("restart") or {}).get("completedAt"))
    )
    assert obj["status"]["stableRevision"] == v1

    def replaced() -> bool:
        now = serving_pods(zdr, "api", v1)
        left = {p.metadata.name for p in zdr.pods("api", v1)} & before
        return len(now) == 3 and not now & before and not left

    kube.wait_until("3 new pods serving and the old ones gone", replaced, timeout=90)

    # promote: a paused canary goes to its next step, then on to the end.
    zdr.update_spec("api", with_version(manifest, "v2")["spec"])
    obj = snapshot(zdr, "api", "v2 paused at step 2", phase("Paused", 1))
    v2, weight = obj["status"]["updateRevision"], obj["status"]["canaryWeight"]
    assert offered(obj) == {"abort", "pause", "promote", "promote-full"}
    run_action(zdr, "api", "promote")
    obj = snapshot(zdr, "api", "v2 paused at step 4", phase("Paused", 3))
    assert 0 < weight < obj["status"]["canaryWeight"]
    run_action(zdr, "api", "promote")
    obj = snapshot(zdr, "api", "v2 Healthy", phase("Healthy"))
    assert obj["status"]["stableRevision"] == v2
    zdr.wait_only("api", {"v2"}, timeout=60)

    # abort: all traffic back on the stable revision, and it stays aborted.
    zdr.update_spec("api", with_version(manifest, "v3")["spec"])
    obj = snapshot(zdr, "api", "v3 paused at step 2", phase("Paused", 1))
    v3 = obj["status"]["updateRevision"]
    run_action(zdr, "api", "abort")
    obj = snapshot(
        zdr, "api", "abort complete", lambda o: bool((o["status"].get("abort") or {}).get("completedAt"))
    )
    assert obj["status"]["phase"] == "Aborted" and obj["status"]["stableRevision"] == v2
    assert zdr.service_selector("api-stable")["zdr.io/revision"] == v2
    zdr.wait_only("api", {"v2"}, timeout=60)
    kube.wait_until("no pod of v3 left", lambda: not zdr.pods("api", v3), timeout=60)
    assert offered(obj) == {"pause", "restart", "retry"}

    # retry: the aborted template rolls out again from its first step; promote-full ends it.
    run_action(zdr, "api", "retry")
    obj = snapshot(zdr, "api", "v3 paused at step 2 again", phase("Paused", 1))
    assert obj["status"]["updateRevision"] == v3 and obj["status"].get("abort") is None
    assert "retry" not in offered(obj)
    run_action(zdr, "api", "promote-full")
    obj = snapshot(zdr, "api", "v3 Healthy", phase("Healthy"), timeout=90)
    assert obj["status"]["stableRevision"] == v3
    zdr.wait_only("api", {"v3"}, timeout=60)  # (step 4, an indefinite pause, was skipped)


def test_argocd_actions_pause_and_resume(zdr: Rollouts, kstatus_bin: Path) -> None:
    manifest = rollout("web", ROLLING, replicas=2)
    zdr.create(manifest)
    obj = snapshot(zdr, "web", "Healthy", phase("Healthy"))
    v1 = obj["status"]["stableRevision"]
    obj = run_action(zdr, "web", "pause")
    assert obj["status"]["pausedByCommand"] is True
    assert offered(obj) == {"resume", "restart"}

    zdr.update_spec("web", with_version(manifest, "v2")["spec"])
    obj = snapshot(zdr, "web", "held by the pause", phase("Paused"))
    v2 = obj["status"]["updateRevision"]
    assert v2 != v1 and obj["status"]["stableRevision"] == v1
    assert argocd.health(obj)[0] == "Suspended"
    assert kstatus(kstatus_bin, obj)["status"] == "InProgress"
    assert offered(obj) == {"abort", "resume"}
    assert not serving_pods(zdr, "web", v2)

    obj = run_action(zdr, "web", "resume")
    assert obj["status"].get("pausedByCommand") is None
    obj = snapshot(zdr, "web", "v2 Healthy", phase("Healthy"))
    assert obj["status"]["stableRevision"] == v2
    zdr.wait_only("web", {"v2"}, timeout=60)
