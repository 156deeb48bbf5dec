"""Helpers for end-to-end tests: manifests of the test app, waits, and HTTP from the host.

Traffic goes only to Service IPs that kube-proxy maps to pods on the local bridge,
or to pod IPs on that bridge (README "Network safety").
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.rest import ApiException

from bench import scenarios
from bench.flows import forget, programmed
from bench.prober import SERVICE_RANGE

TESTAPP_IMAGE = scenarios.TESTAPP_IMAGE
KUBECTL_IMAGE = os.environ.get("ZDR_KUBECTL_IMAGE", "zdr.local/kubectl:dev")
T = TypeVar("T")


def wait_until(what: str, check: Callable[[], T | None], timeout: float = 90, interval: float = 0.25) -> T:
    """``scenarios.wait_for`` as a test failure: polls `check` until truthy, naming `what` on timeout."""
    try:
        return scenarios.wait_for(what, check, timeout, interval)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process is still there after 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_for_default_service_account(core: client.CoreV1Api, namespace: str) -> None:
    def exists() -> bool:
        try:
            core.read_namespaced_service_account("default", namespace)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    wait_until(f"the default ServiceAccount in {namespace}", exists, timeout=60)


def testapp_container(
    version: str = "v1",
    env: dict[str, str] | None = None,
    readiness: bool = True,
    pre_stop_seconds: int | None = None,
) -> dict[str, Any]:
    """The test app's container, as the bench builds it (DRAIN defaults to the app's 5 s)."""
    extra = dict(env or {})
    app = scenarios.App(drain=extra.pop("DRAIN", "5s"), env=tuple(extra.items()))
    return scenarios.container(version, app, readiness=readiness, pre_stop=pre_stop_seconds)


def testapp_deployment(name: str, replicas: int = 3, **container: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [testapp_container(**container)], "terminationGracePeriodSeconds": 30},
            },
        },
    }


def service(name: str, selector: dict[str, str], port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": port, "targetPort": 8080}]},
    }


def ready_endpoints(api: client.ApiClient, namespace: str, service_name: str) -> dict[str, str]:
    """Pod name -> IP of every endpoint the Service's EndpointSlices list as ready."""
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service_name}"
    )
    ready: dict[str, str] = {}
    for s in slices.items:
        for ep in s.endpoints or []:
            if ep.conditions and ep.conditions.ready and ep.target_ref is not None:
                ready[ep.target_ref.name] = ep.addresses[0]
    return ready


@dataclass(frozen=True)
class Reply:
    status: int
    version: str
    pod: str
    body: str


def http_get(host: str, port: int = 80, path: str = "/", timeout: float = 2.0) -> Reply:
    """One GET on a new connection; raises OSError on connection-level failures."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        version = resp.getheader("X-Version", "")
        pod = resp.getheader("X-Pod", "")
        if not pod and body.startswith("{"):
            pod = json.loads(body).get("pod", "")
        return Reply(resp.status, version, pod, body)
    finally:
        conn.close()


def cluster_ip(core: client.CoreV1Api, namespace: str, name: str) -> str:
    ip: str = core.read_namespaced_service(name, namespace).spec.cluster_ip
    return ip


def http_post(host: str, port: int, path: str, timeout: float = 2.0) -> int:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def answers(host: str, port: int = 80) -> bool:
    try:
        return http_get(host, port, timeout=1.0).status == 200
    except OSError:
        return False


def wait_serving(host: str, port: int = 80, timeout: float = 30) -> None:
    """Waits until kube-proxy has programmed the Service (its minSyncPeriod is 1 s) and it answers;
    no probe goes out before the rule exists, and the probes' conntrack entries are deleted after
    (bench.flows.programmed: an untranslated SYN would poison its client port for 120 s)."""
    if ipaddress.ip_address(host) in SERVICE_RANGE:
        wait_until(f"kube-proxy to program {host}:{port}", lambda: programmed(host, port), timeout=timeout)
    wait_until(f"{host}:{port} to answer", lambda: answers(host, port), timeout=timeout)
    forget(host)
