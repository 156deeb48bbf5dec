"""The local cluster is a real Kubernetes: kubelet, containers, kube-proxy, service accounts.

Every later end-to-end claim (no failed request during a rollout) rests on these.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client, utils

from tests.e2e import kube

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
NODE = "zdr-node"


def test_node_is_ready(core: client.CoreV1Api) -> None:
    node = core.read_node(NODE)
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True", node.status.conditions
    assert node.status.node_info.kubelet_version.startswith("v1.34.")
    assert node.status.node_info.container_runtime_version.startswith("containerd://")


def _deploy(api: client.ApiClient, namespace: str, name: str, replicas: int = 3, **container: object) -> None:
    utils.create_from_dict(api, kube.testapp_deployment(name, replicas, **container), namespace=namespace)
    utils.create_from_dict(api, kube.service(name, {"app": name}), namespace=namespace)
    kube.wait_until(
        f"{replicas} ready endpoints of {name}",
        lambda: len(kube.ready_endpoints(api, namespace, name)) == replicas,
    )
    kube.wait_serving(kube.cluster_ip(client.CoreV1Api(api), namespace, name))


def test_clusterip_reaches_every_pod(api: client.ApiClient, core: client.CoreV1Api, namespace: str) -> None:
    _deploy(api, namespace, "web")
    ip = kube.cluster_ip(core, namespace, "web")
    pods = {p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=web").items}
    seen: set[str] = set()
    # kube-proxy may still be adding the last endpoints (1 s minSyncPeriod): bounded in time and count.
    deadline = time.monotonic() + 15
    for _ in range(3000):
        reply = kube.http_get(ip)
        assert reply.status == 200 and reply.version == "v1"
        seen.add(reply.pod)
        if seen == pods or time.monotonic() > deadline:
            break
    assert seen == pods, f"responses came from {sorted(seen)}, pods are {sorted(pods)}"


def test_deleted_pod_is_replaced(api: client.ApiClient, core: client.CoreV1Api, namespace: str) -> None:
    _deploy(api, namespace, "web", replicas=2)
    victim = core.list_namespaced_pod(namespace, label_selector="app=web").items[0].metadata.name
    core.delete_namespaced_pod(victim, namespace, grace_period_seconds=0)

    def replaced() -> bool:
        names = set(kube.ready_endpoints(api, namespace, "web"))
        return len(names) == 2 and victim not in names

    kube.wait_until("a ready replacement pod", replaced)


def test_pod_failing_readiness_leaves_the_endpointslice(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    _deploy(api, namespace, "web", replicas=2)
    endpoints = kube.ready_endpoints(api, namespace, "web")
    pod, pod_ip = sorted(endpoints.items())[0]
    # The test app's readiness switch; the pod keeps running and serving.
    kube.http_post(pod_ip, 8080, "/admin/readiness?ready=false")
    kube.wait_until(
        f"{pod} to leave the EndpointSlice", lambda: pod not in kube.ready_endpoints(api, namespace, "web")
    )
    assert core.read_namespaced_pod(pod, namespace).status.phase == "Running"
    ip = kube.cluster_ip(core, namespace, "web")
    # kube-proxy drops it within its 1 s minSyncPeriod; from then on only the other pod answers.
    others = set(endpoints) - {pod}
    kube.wait_until(
        "kube-proxy to drop the pod", lambda: {kube.http_get(ip).pod for _ in range(10)} == others
    )
    assert {kube.http_get(ip).pod for _ in range(30)} == others
    kube.http_post(pod_ip, 8080, "/admin/readiness?ready=true")
    kube.wait_until(f"{pod} to return", lambda: pod in kube.ready_endpoints(api, namespace, "web"))


def test_prestop_sleep_runs_before_sigterm_and_the_app_drains(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    pre_stop, drain = 3, 2
    _deploy(api, namespace, "web", replicas=1, pre_stop_seconds=pre_stop, env={"DRAIN": f"{drain}s"})
    pod = core.list_namespaced_pod(namespace, label_selector="app=web").items[0].metadata.name
    lines: list[tuple[float, str]] = []
    follower = subprocess.Popen(
        [str(ROOT / ".cluster/bin/kubectl"), "-n", namespace, "logs", "-f", pod],
        stdout=subprocess.PIPE,
        text=True,
    )

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.append((time.monotonic(), line.strip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1)
    deleted_at = time.monotonic()
    core.delete_namespaced_pod(pod, namespace)
    reader.join(timeout=pre_stop + drain + 20)
    follower.kill()

    sigterm = [t for t, line in lines if "SIGTERM" in line]
    assert sigterm, f"the app never logged SIGTERM; log: {[line for _, line in lines]}"
    waited = sigterm[0] - deleted_at
    assert waited >= pre_stop - 0.5, (
        f"SIGTERM arrived {waited:.1f}s after delete, before the {pre_stop}s preStop"
    )
    after = [line for t, line in lines if t >= sigterm[0]]
    assert any("exit" in line.lower() for line in after), f"no clean exit after the drain: {after}"


def _run_kubectl_pod(core: client.CoreV1Api, namespace: str, name: str, *args: str) -> str:
    """Runs kubectl in a pod with the namespace's default ServiceAccount; returns its final phase."""
    container = {
        "name": "kubectl",
        "image": kube.KUBECTL_IMAGE,
        "imagePullPolicy": "Never",
        "args": list(args),
    }
    core.create_namespaced_pod(
        namespace, {"metadata": {"name": name}, "spec": {"restartPolicy": "Never", "containers": [container]}}
    )
    phase: str = kube.wait_until(
        f"pod {name} to finish",
        lambda: (
            (p := core.read_namespaced_pod(name, namespace).status.phase) in ("Succeeded", "Failed") and p
        ),
    )
    return phase


def test_service_account_token_reads_own_namespace(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
    )
    assert _run_kubectl_pod(core, namespace, "reader", "get", "pods", "-o", "name") == "Succeeded"
    assert "pod/reader" in core.read_namespaced_pod_log("reader", namespace)
    # The same token is refused outside its namespace.
    assert _run_kubectl_pod(core, namespace, "intruder", "get", "pods", "-n", "kube-system") == "Failed"
    assert "forbidden" in core.read_namespaced_pod_log("intruder", namespace).lower()


def _leaked_packets() -> int:
    out = subprocess.run(
        ["bash", str(ROOT / "hack/netguard.sh"), "leaks"], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def _connect(ip: str, port: int, timeout: float = 1.5) -> str:
    """How a TCP connect ends: 'connected', 'refused', 'unreachable' or 'timeout'."""
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError:
        return "unreachable"
    finally:
        s.close()


def test_cluster_ranges_never_leave_by_the_external_interface(
    api: client.ApiClient, core: client.CoreV1Api, namespace: str
) -> None:
    routes = subprocess.run(["ip", "route", "show", "10.96.0.0/16"], capture_output=True, text=True).stdout
    assert "dev zdrsvc0" in routes, f"the Service range is not routed to the empty bridge: {routes!r}"
    guard = subprocess.run(["iptables", "-S", "ZDR-GUARD"], capture_output=True, text=True).stdout
    assert guard.count("-j REJECT") == 2, guard
    for hook in ("OUTPUT", "FORWARD"):
        rules = subprocess.run(["iptables", "-S", hook], capture_output=True, text=True).stdout
        assert "-j ZDR-GUARD" in rules, f"{hook} does not jump to ZDR-GUARD: {rules}"

    utils.create_from_dict(api, kube.service("nobody", {"app": "nothing-matches"}), namespace=namespace)
    empty_ip = kube.cluster_ip(core, namespace, "nobody")
    time.sleep(2)  # kube-proxy's minSyncPeriod
    before = _leaked_packets()
    # A Service without endpoints, an address of the Service range that no Service
    # holds, and a pod address nobody has: none may be answered.
    assert _connect(empty_ip, 80) != "connected"
    assert _connect("10.96.255.254", 80) != "connected"
    assert _connect("10.88.255.254", 8080) != "connected"
    assert _leaked_packets() == before == 0, (
        "a packet for the cluster's ranges left by the external interface"
    )
