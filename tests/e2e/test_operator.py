"""The operator on the real cluster: each strategy from apply to Healthy, its children,
status and `kubectl get rollouts`, changes mid-rollout, refusal of an invalid spec, and
an operator killed with SIGKILL mid-rollout that resumes without repeating a step.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import kube
from tests.e2e.conftest import KUBECONFIG, OperatorProcess
from tests.e2e.rollouts import ROLLING, Rollouts, blue_green, canary, rollout, with_version

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def zdr(api: client.ApiClient, namespace: str, operator: OperatorProcess) -> Rollouts:
    if operator.proc is None or operator.proc.poll() is not None:
        operator.start()
    return Rollouts(api, namespace)


def _kubectl(*args: str) -> str:
    """kubectl as a user runs it, with API discovery read afresh: a cached discovery from before
    another controller's CRDs came or went (the bench's peer defines ``rollouts`` too) would
    resolve names the way the cluster no longer does."""
    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run(
            [
                str(ROOT / ".cluster/bin/kubectl"),
                "--kubeconfig",
                str(KUBECONFIG),
                f"--cache-dir={cache}",
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    return out.stdout


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    refs = obj["metadata"].get("ownerReferences") or []
    return any(r["uid"] == owner["metadata"]["uid"] and r.get("controller") for r in refs)


def test_rolling_update_from_apply_to_healthy(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("web", ROLLING)
    zdr.create(manifest)
    st = zdr.wait_phase("web", "Healthy")
    first = st["stableRevision"]
    assert st["updateRevision"] == first and st["readyReplicas"] == 3 and st["replicas"] == 3

    zdr.update_spec("web", with_version(manifest, "v2")["spec"])
    st = zdr.wait_phase("web", "Healthy")
    obj = zdr.get("web")
    second = st["stableRevision"]
    assert second != first and st["updateRevision"] == second
    assert st["observedGeneration"] == obj["metadata"]["generation"] == 2
    assert isinstance(st["observedGeneration"], int)
    assert _condition(st, "Ready")["status"] == "True"
    assert _condition(st, "Reconciling")["status"] == "False"
    assert _condition(st, "Stalled")["status"] == "False"
    # The scale subresource's selector leaves out the warm standby while there is one.
    assert st["selector"] in ("app=web", f"app=web,zdr.io/revision notin ({first})"), st["selector"]

    deployments = zdr.deployments("web")
    assert set(deployments) == {first, second}
    assert deployments[second]["metadata"]["name"] == f"web-{second}"
    assert deployments[second]["spec"]["replicas"] == 3
    # The previous revision is kept warm (out of traffic) for scaleDownDelaySeconds, then goes to 0.
    kube.wait_until(
        "the warm revision to go to 0", lambda: zdr.deployments("web")[first]["spec"]["replicas"] == 0
    )
    assert all(_owned_by(d, obj) for d in deployments.values())
    svc = zdr.api.sanitize_for_serialization(zdr.core.read_namespaced_service("web", namespace))
    assert _owned_by(svc, obj)
    kube.wait_until("old pods to go", lambda: not zdr.pods("web", first))
    kube.wait_until(
        "the selector to cover every pod again", lambda: zdr.status("web")["selector"] == "app=web"
    )
    # While the previous revision was warm the Service selected the new one alone; now every pod again.
    kube.wait_until(
        "the Service to select every pod of the rollout",
        lambda: (
            zdr.service_selector("web") == {"app": "web", "zdr.io/rollout": "web", "zdr.io/serving": "true"}
        ),
    )
    zdr.wait_only("web", {"v2"})

    # Drain injection: the operator's preStop sleep and a grace period that covers it.
    pod = zdr.pods("web", second)[0]
    assert pod.spec.containers[0].lifecycle.pre_stop.sleep.seconds == 2
    assert pod.spec.termination_grace_period_seconds >= 2

    reasons = [e.reason for e in zdr.events("web")]
    for reason in ("RolloutStarted", "RevisionCreated", "ServiceCreated", "ScaledDown", "RolloutCompleted"):
        assert reason in reasons, reasons

    table = _kubectl("-n", namespace, "get", "rollouts")
    header, row = table.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "STRATEGY", "PHASE"], header
    assert row.split()[:3] == ["web", "RollingUpdate", "Healthy"], row
    assert second in row and max(len(line) for line in table.splitlines()) <= 120
    assert "web" in _kubectl("-n", namespace, "get", "zdr", "-o", "name")


def test_blue_green_switches_active_service_then_scales_old_down(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("shop", blue_green(auto=True, delay=3))
    zdr.create(manifest)
    blue = zdr.wait_phase("shop", "Healthy")["stableRevision"]
    assert zdr.service_selector("shop")["zdr.io/revision"] == blue

    zdr.update_spec("shop", with_version(manifest, "v2")["spec"])
    st = zdr.wait_phase("shop", "Healthy", timeout=120)
    green = st["stableRevision"]
    assert green != blue
    assert zdr.service_selector("shop")["zdr.io/revision"] == green
    assert zdr.service_selector("shop-preview")["zdr.io/revision"] == green
    zdr.wait_only("shop", {"v2"})
    # The old revision is kept warm for scaleDownDelaySeconds, then goes to 0 (kept for rollback).
    kube.wait_until(
        "blue scaled to 0", lambda: zdr.deployments("shop")[blue]["spec"]["replicas"] == 0, timeout=30
    )
    reasons = [e.reason for e in zdr.events("shop")]
    assert "ServiceSwitched" in reasons, reasons


def test_blue_green_manual_promotion_waits_for_promote(zdr: Rollouts) -> None:
    manifest = rollout("cart", blue_green(auto=False, delay=2))
    zdr.create(manifest)
    blue = zdr.wait_phase("cart", "Healthy")["stableRevision"]
    zdr.update_spec("cart", with_version(manifest, "v2")["spec"])
    st = zdr.wait_phase("cart", "Paused", timeout=60)
    green = st["updateRevision"]
    assert zdr.service_selector("cart")["zdr.io/revision"] == blue
    assert zdr.service_selector("cart-preview")["zdr.io/revision"] == green
    zdr.wait_only("cart-preview", {"v2"})
    assert zdr.versions_served("cart") == {"v1"}
    zdr.command("cart", "promote")
    st = zdr.wait_phase("cart", "Healthy", timeout=60)
    assert st["stableRevision"] == green
    zdr.wait_only("cart", {"v2"})
    assert st["lastCommand"]["verb"] == "promote" and st["lastCommand"]["result"] == "Accepted"


def test_canary_steps_timed_pause_and_promote(zdr: Rollouts) -> None:
    steps = [{"setWeight": 25}, {"pause": {"duration": "3s"}}, {"setWeight": 50}, {"pause": {}}]
    manifest = rollout("api", canary(steps), replicas=4)
    zdr.create(manifest)
    stable = zdr.wait_phase("api", "Healthy")["stableRevision"]
    zdr.update_spec("api", with_version(manifest, "v2")["spec"])
    st = kube.wait_until(
        "the indefinite pause (step 4)",
        lambda: (s := zdr.status("api")).get("phase") == "Paused" and s.get("currentStepIndex") == 3 and s,
        timeout=90,
    )
    new = st["updateRevision"]
    assert st["currentStepIndex"] == 3 and st["canaryWeight"] == 50
    assert len([p for p in zdr.pods("api", new) if p.status.phase == "Running"]) == 2
    assert zdr.service_selector("api-canary")["zdr.io/revision"] == new
    assert zdr.service_selector("api-stable")["zdr.io/revision"] == stable
    assert zdr.versions_served("api", samples=60) == {"v1", "v2"}
    zdr.command("api", "promote")
    st = zdr.wait_phase("api", "Healthy", timeout=90)
    assert st["stableRevision"] == new
    kube.wait_until("the old revision to drain", lambda: not zdr.pods("api", stable), timeout=40)
    zdr.wait_only("api", {"v2"})
    steps_started = Counter(e.message.split()[1] for e in zdr.events("api") if e.reason == "StepStarted")
    assert all(n == 1 for n in steps_started.values()), steps_started


def test_new_template_mid_rollout_supersedes_the_inflight_revision(zdr: Rollouts) -> None:
    manifest = rollout("web", ROLLING, replicas=3)
    zdr.create(manifest)
    v1 = zdr.wait_phase("web", "Healthy")["stableRevision"]
    zdr.update_spec("web", with_version(manifest, "v2", STARTUP_DELAY="4s")["spec"])
    v2 = kube.wait_until(
        "v2 pods", lambda: (s := zdr.status("web")).get("updateRevision") != v1 and s["updateRevision"]
    )
    kube.wait_until("a v2 pod", lambda: zdr.pods("web", v2))
    zdr.update_spec("web", with_version(manifest, "v3")["spec"])
    st = zdr.wait_phase("web", "Healthy", timeout=120)
    v3 = st["stableRevision"]
    assert v3 not in (v1, v2)
    deployments = zdr.deployments("web")
    assert deployments[v3]["spec"]["replicas"] == 3
    assert deployments.get(v2, {"spec": {"replicas": 0}})["spec"]["replicas"] == 0
    kube.wait_until(
        "v1 and v2 pods to drain", lambda: not zdr.pods("web", v1) and not zdr.pods("web", v2), timeout=40
    )
    zdr.wait_only("web", {"v3"})


def test_replica_change_mid_rollout_is_honored(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("web", ROLLING, replicas=2)
    zdr.create(manifest)
    v1 = zdr.wait_phase("web", "Healthy")["stableRevision"]
    changed = with_version(manifest, "v2", STARTUP_DELAY="3s")
    zdr.update_spec("web", changed["spec"])
    kube.wait_until("the rollout to start", lambda: zdr.status("web").get("updateRevision") not in (None, v1))
    # Through the scale subresource, as an HPA does.
    zdr.custom.patch_namespaced_custom_object_scale(
        "zdr.io", "v1alpha1", namespace, "zerodowntimerollouts", "web", {"spec": {"replicas": 4}}
    )
    st = zdr.wait_phase("web", "Healthy", timeout=120)
    v2 = st["stableRevision"]
    assert v2 != v1
    # Ready pods count the serving set (the previous revision's warm standby is counted apart).
    kube.wait_until("4 ready pods", lambda: zdr.status("web")["readyReplicas"] == 4)
    assert zdr.deployments("web")[v2]["spec"]["replicas"] == 4
    kube.wait_until(
        "the warm standby to end", lambda: not zdr.status("web").get("standbyReplicas"), timeout=60
    )
    scale = zdr.custom.get_namespaced_custom_object_scale(
        "zdr.io", "v1alpha1", namespace, "zerodowntimerollouts", "web"
    )
    assert scale["spec"]["replicas"] == 4 and scale["status"]["replicas"] == 4
    kube.wait_until(
        "the selector to cover every pod again",
        lambda: zdr.status("web")["selector"] == "app=web",
        timeout=60,
    )


def test_invalid_spec_is_refused_and_touches_nothing(zdr: Rollouts) -> None:
    manifest = rollout("web", ROLLING, replicas=2)
    zdr.create(manifest)
    v1 = zdr.wait_phase("web", "Healthy")["stableRevision"]
    before = {rev: d["spec"]["replicas"] for rev, d in zdr.deployments("web").items()}
    selector = zdr.service_selector("web")

    broken = with_version(manifest, "v2")
    del broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    zdr.update_spec("web", broken["spec"])
    st = zdr.wait_phase("web", "Degraded", timeout=30)
    stalled = _condition(st, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "MissingReadinessProbe"
    assert "spec.template.spec.containers[0]" in stalled["message"] and "readinessProbe" in stalled["message"]
    warnings = [e for e in zdr.events("web") if e.type == "Warning" and e.reason == "MissingReadinessProbe"]
    assert warnings and "readinessProbe" in warnings[0].message
    time.sleep(3)  # give a misbehaving operator time to touch something
    assert {rev: d["spec"]["replicas"] for rev, d in zdr.deployments("web").items()} == before
    assert zdr.service_selector("web") == selector
    assert zdr.versions_served("web") == {"v1"}
    assert zdr.status("web")["stableRevision"] == v1

    # The API server itself refuses what the schema can tell: the field and the rule are named.
    bad = with_version(manifest, "v3")
    bad["spec"]["strategy"] = {"type": "Canary", "canary": {"steps": [{"setWeight": 150}]}}
    with pytest.raises(client.ApiException) as refused:
        zdr.update_spec("web", bad["spec"])
    assert refused.value.status == 422 and "setWeight" in refused.value.body

    zdr.update_spec("web", with_version(manifest, "v2")["spec"])
    zdr.wait_phase("web", "Healthy")
    zdr.wait_only("web", {"v2"})


STRATEGIES = {
    "rolling": ROLLING,
    "bluegreen": blue_green(auto=True, delay=2),
    "canary": canary(
        [{"setWeight": 34}, {"pause": {"duration": "2s"}}, {"setWeight": 67}, {"pause": {"duration": "2s"}}]
    ),
}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_operator_killed_mid_rollout_resumes(zdr: Rollouts, operator: OperatorProcess, strategy: str) -> None:
    manifest = rollout("web", STRATEGIES[strategy], replicas=3)
    zdr.create(manifest)
    v1 = zdr.wait_phase("web", "Healthy")["stableRevision"]
    zdr.update_spec("web", with_version(manifest, "v2", STARTUP_DELAY="2s")["spec"])
    kube.wait_until("the rollout to start", lambda: zdr.status("web").get("updateRevision") not in (None, v1))
    kube.wait_until("new pods", lambda: zdr.pods("web", zdr.status("web")["updateRevision"]))
    operator.kill()
    time.sleep(4)  # the cluster moves on while no operator runs
    operator.start()
    st = zdr.wait_phase("web", "Healthy", timeout=120)
    v2 = st["stableRevision"]
    assert v2 != v1, operator.log_tail()
    assert zdr.deployments("web")[v2]["spec"]["replicas"] == 3
    kube.wait_until("old pods to drain", lambda: not zdr.pods("web", v1), timeout=40)
    zdr.wait_only("web", {"v2"})
    events = zdr.events("web")
    started = Counter(e.message for e in events if e.reason in ("RolloutStarted", "StepStarted"))
    assert all(n == 1 for n in started.values()), f"a step ran twice: {started}"
    completed = [e for e in events if e.reason == "RolloutCompleted"]
    assert len(completed) == 2, [e.message for e in completed]  # v1, then v2 exactly once
