"""The operator installed as a user installs it: `kubectl apply -k manifests/`, its image built
without a container engine (`make operator-image`), two replicas of which one acts.

The install is the shipped kustomize base with one patch: the operator serves only this test
session's in-cluster namespaces (``*-i<session>``), so it never meets the rollouts of the
session's other operator. On that install: both pods become Ready and exactly one holds the
Lease; each strategy rolls the abrupt test app under the instrument's traffic (no-retry probers
in both HTTP modes, WebSockets) with nothing lost; the ServiceAccount can do what the ClusterRole
lists and nothing else; and the acting replica, SIGKILLed mid-rollout, is replaced within the
Lease's bound without a step repeated or skipped and without a failed request.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from bench.prober import Traffic
from bench.scenarios import Kube, ZdrTarget
from tests.e2e import kube as kubeutil
from tests.e2e.conftest import SESSION
from tests.e2e.test_zero_downtime import APP, assert_zero_downtime, roll_under_traffic

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = str(ROOT / ".cluster/bin/kubectl")
SYSTEM = "zdr-system"
SUFFIX = f"i{SESSION}"
SA = f"system:serviceaccount:{SYSTEM}:zdr-operator"
LEASE_DURATION = 10
RETRY = 1
HANDOVER_BOUND = LEASE_DURATION + RETRY + 4
"""Seconds: an unrenewed Lease is taken after its duration plus one retry; 4 s for the
apiserver round trips and the kubelet's view of a busy node."""
SELECTOR = "app.kubernetes.io/name=zdr,app.kubernetes.io/component=operator"


def kubectl(kubeconfig: Path, *args: str, check: bool = True, stdin: str | None = None) -> str:
    with tempfile.TemporaryDirectory() as cache:
        proc = subprocess.run(
            [KUBECTL, "--kubeconfig", str(kubeconfig), f"--cache-dir={cache}", *args],
            capture_output=True,
            text=True,
            input=stdin,
            timeout=120,
        )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


@dataclass
class Install:
    kubeconfig: Path
    api: client.ApiClient
    workdir: Path

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def pods(self) -> list[client.V1Pod]:
        return [
            p
            for p in self.core.list_namespaced_pod(SYSTEM, label_selector=SELECTOR).items
            if p.metadata.deletion_timestamp is None
        ]

    def ready_pods(self) -> list[str]:
        return [
            p.metadata.name
            for p in self.pods()
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]

    def holder(self) -> str | None:
        lease = client.CoordinationV1Api(self.api).read_namespaced_lease("zdr-operator", SYSTEM)
        holder: str | None = lease.spec.holder_identity
        return holder

    def leader_pod(self) -> str:
        holder = self.holder()
        assert holder, "nobody holds the zdr-operator Lease"
        return holder.rsplit("_", 1)[0]

    def logs(self, name: str = "operator.log") -> Path:
        """Every operator pod's log (current and previous container) in one file."""
        path = self.workdir / name
        parts = []
        for pod in self.pods():
            for previous in ("--previous", ""):
                text = kubectl(
                    self.kubeconfig,
                    "-n",
                    SYSTEM,
                    "logs",
                    pod.metadata.name,
                    *([previous] if previous else []),
                    check=False,
                )
                if text:
                    parts.append(f"--- {pod.metadata.name} {previous or 'current'}\n{text}")
        path.write_text("\n".join(parts))
        return path


def _render(workdir: Path) -> Path:
    """The shipped base with the operator narrowed to this session's in-cluster namespaces."""
    overlay = workdir / "install"
    overlay.mkdir()
    args = [
        "kopf",
        "run",
        "--standalone",
        f"--namespace=*-{SUFFIX}",
        "--liveness=http://0.0.0.0:8080/healthz",
        "-m",
        "zdr.handlers",
    ]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(ROOT / "manifests", overlay)],
        "patches": [
            {
                "target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": "zdr-operator"},
                "patch": json.dumps(
                    [{"op": "replace", "path": "/spec/template/spec/containers/0/args", "value": args}]
                ),
            }
        ],
    }
    image = os.environ.get("ZDR_OPERATOR_IMAGE")  # pushed to a registry (hack/load-images.sh)
    if image:
        name, _, tag = image.rpartition(":")
        kustomization["images"] = [{"name": "zdr.local/zdr-operator", "newName": name, "newTag": tag}]
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return overlay


@pytest.fixture(scope="module")
def installed(
    cluster: Path, crd: None, api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Install]:
    workdir = tmp_path_factory.mktemp("install")
    overlay = _render(workdir)
    install = Install(cluster, api, workdir)
    kubectl(cluster, "apply", "-k", str(overlay))
    try:
        kubectl(cluster, "-n", SYSTEM, "rollout", "restart", "deployment/zdr-operator")
        kubectl(cluster, "-n", SYSTEM, "rollout", "status", "deployment/zdr-operator", "--timeout=180s")
        kubeutil.wait_until("both operator pods Ready", lambda: len(install.ready_pods()) == 2 or None, 60)
        kubeutil.wait_until("a replica to hold the Lease", install.holder, 30)
        yield install
    except Exception:
        described = kubectl(cluster, "-n", SYSTEM, "describe", "pods", "-l", SELECTOR, check=False)
        print(f"operator pods:\n{described[-6000:]}\nlogs:\n{install.logs().read_text()[-6000:]}")
        raise
    finally:
        # The Deployment goes; the namespace, RBAC and CRD stay (other tests and sessions use them).
        kubectl(
            cluster,
            "-n",
            SYSTEM,
            "delete",
            "deployment/zdr-operator",
            "pdb/zdr-operator",
            "--wait=true",
            check=False,
        )


@pytest.fixture
def ns(core: client.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().replace("_", "-"))[:36].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}-{SUFFIX}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    kubeutil.wait_for_default_service_account(core, name)
    yield name
    core.delete_namespace(name, body=client.V1DeleteOptions(grace_period_seconds=0))


def test_two_replicas_become_ready_and_exactly_one_leads(installed: Install) -> None:
    ready = installed.ready_pods()
    assert len(ready) == 2, ready
    leader = installed.leader_pod()
    assert leader in ready
    logs = {p: kubectl(installed.kubeconfig, "-n", SYSTEM, "logs", p) for p in ready}
    leading = [p for p, text in logs.items() if "leading: this replica reconciles" in text]
    assert leading == [leader], {p: text[-1500:] for p, text in logs.items()}
    pod = installed.core.read_namespaced_pod(leader, SYSTEM)
    assert pod.spec.containers[0].security_context.read_only_root_filesystem is True
    assert pod.spec.security_context.run_as_user == 65532


@pytest.mark.parametrize(
    ("strategy", "params"),
    [
        ("RollingUpdate", {}),
        ("BlueGreen", {"auto_promotion": True, "scale_down_delay": 3}),
        (
            "Canary",
            {
                "canary_steps": [{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 75}],
                "scale_down_delay": 3,
            },
        ),
    ],
)
def test_each_strategy_drops_nothing_with_the_installed_operator(
    installed: Install, ns: str, strategy: str, params: dict[str, Any], tmp_path: Path
) -> None:
    kube = Kube(installed.kubeconfig)
    target = ZdrTarget(kube, ns, "web", APP, strategy, **params)  # type: ignore[arg-type]
    outcome = roll_under_traffic(kube, target, tmp_path)
    assert_zero_downtime(outcome, installed.logs(f"operator-{strategy}.log"), 0)


# Writes the operator needs, by resource; everything else must be refused.
ALLOWED_WRITES = {
    ("zdr.io", "zerodowntimerollouts"): {"patch", "update"},
    ("zdr.io", "zerodowntimerollouts/status"): {"patch", "update"},
    ("apps", "deployments"): {"create", "patch", "update", "delete"},
    ("apps", "deployments/scale"): {"patch", "update"},
    ("", "services"): {"create", "patch", "update", "delete"},
    ("", "pods"): {"patch"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
SELF_REVIEWS = {
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
}


def _can(api: client.ApiClient, verb: str, group: str, resource: str, namespace: str | None) -> bool:
    sub = None
    if "/" in resource:
        resource, sub = resource.split("/", 1)
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=SA,
            groups=["system:serviceaccounts", f"system:serviceaccounts:{SYSTEM}", "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, subresource=sub, namespace=namespace
            ),
        )
    )
    allowed: bool = client.AuthorizationV1Api(api).create_subject_access_review(review).status.allowed
    return allowed


def _every_resource(kubeconfig: Path) -> list[tuple[str, str, bool]]:
    """(group, resource or resource/subresource, namespaced) for every kind the API server serves."""
    found: list[tuple[str, str, bool]] = []
    core = json.loads(kubectl(kubeconfig, "get", "--raw", "/api/v1"))
    found += [("", r["name"], r["namespaced"]) for r in core["resources"]]
    for group in json.loads(kubectl(kubeconfig, "get", "--raw", "/apis"))["groups"]:
        version = group["preferredVersion"]["groupVersion"]
        resources = json.loads(kubectl(kubeconfig, "get", "--raw", f"/apis/{version}"))["resources"]
        found += [(group["name"], r["name"], r["namespaced"]) for r in resources]
    return found


def test_the_service_account_may_write_only_what_the_cluster_role_lists(
    installed: Install, api: client.ApiClient
) -> None:
    assert not _can(api, "get", "", "secrets", "default"), "the operator can read Secrets"
    assert not _can(api, "list", "", "secrets", None), "the operator can list Secrets"
    assert not _can(api, "delete", "", "namespaces", None), "the operator can delete Namespaces"
    assert _can(api, "patch", "zdr.io", "zerodowntimerollouts/status", "default")
    assert _can(api, "create", "coordination.k8s.io", "leases", SYSTEM)
    assert not _can(api, "create", "coordination.k8s.io", "leases", "default")
    unexpected = []
    for group, resource, namespaced in _every_resource(installed.kubeconfig):
        if (group, resource) in SELF_REVIEWS:
            continue
        allowed = ALLOWED_WRITES.get((group, resource), set())
        for verb in WRITE_VERBS:
            if verb in allowed:
                continue
            if _can(api, verb, group, resource, "default" if namespaced else None):
                unexpected.append(f"{verb} {group or 'core'}/{resource}")
    assert unexpected == [], f"the operator may write beyond its ClusterRole: {unexpected}"


def _pid_of(pod: str) -> int:
    """The operator process of ``pod`` on this node (its environment names the pod)."""
    needle = f"POD_NAME={pod}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and b"kopf" in cmdline:
            return int(entry.name)
    raise AssertionError(f"no operator process of pod {pod} on this node")


def test_sigkill_of_the_leader_mid_rollout_hands_over_without_a_repeated_step(
    installed: Install, ns: str, tmp_path: Path
) -> None:
    kube = Kube(installed.kubeconfig)
    steps = [
        {"setWeight": 25},
        {"pause": {"duration": "4s"}},
        {"setWeight": 50},
        {"pause": {"duration": "4s"}},
        {"setWeight": 75},
        {"pause": {"duration": "2s"}},
    ]
    target = ZdrTarget(kube, ns, "web", APP, "Canary", canary_steps=steps, scale_down_delay=3)
    handover: dict[str, Any] = {}

    def kill_the_leader(traffic: Traffic, marks: dict[str, float]) -> None:
        target.wait_phase("Paused", step=1, timeout=90)
        old = installed.holder()
        pod = installed.leader_pod()
        os.kill(_pid_of(pod), signal.SIGKILL)
        killed = time.monotonic()
        marks["killed"] = traffic.now()
        new = kubeutil.wait_until(
            "another replica to take the Lease",
            lambda: (h := installed.holder()) not in (None, old) and h,
            60,
        )
        handover.update(seconds=time.monotonic() - killed, old=old, new=new, at=datetime.now(UTC))
        marks["handed_over"] = traffic.now()

    outcome = roll_under_traffic(kube, target, tmp_path, kill_the_leader, timeout=180)
    log = installed.logs("operator-handover.log")
    print(f"  handover after SIGKILL: {handover['seconds']:.1f}s ({handover['old']} -> {handover['new']})")
    assert handover["seconds"] <= HANDOVER_BOUND, handover
    assert_zero_downtime(outcome, log, 0)
    events = _events(installed, ns)
    once = Counter(m for reason, m in events if reason in ("RolloutStarted", "StepStarted", "StepCompleted"))
    assert all(n == 1 for n in once.values()), f"a step ran twice: {once}"
    for reason in ("StepStarted", "StepCompleted"):
        numbers = sorted(int(m.split()[1].split("/")[0]) for r, m in events if r == reason)
        assert numbers == list(range(1, len(steps) + 1)), f"{reason}: a step was skipped or repeated: {events}"


def _events(install: Install, ns: str) -> list[tuple[str, str]]:
    items = install.core.list_namespaced_event(ns, field_selector="involvedObject.name=web").items
    return [(e.reason, e.message) for e in items if e.involved_object.kind == "ZeroDowntimeRollout"]
