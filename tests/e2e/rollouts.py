"""Helpers for end-to-end tests of ZeroDowntimeRollouts: manifests, reads, waits."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.e2e import kube

GROUP, VERSION, PLURAL = "zdr.io", "v1alpha1", "zerodowntimerollouts"


def rollout(
    name: str,
    strategy: dict[str, Any],
    *,
    version: str = "v1",
    replicas: int = 3,
    env: dict[str, str] | None = None,
    pre_stop: int = 2,
    readiness: bool = True,
) -> dict[str, Any]:
    container = kube.testapp_container(version, env={"DRAIN": "1s", **(env or {})}, readiness=readiness)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ZeroDowntimeRollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "service": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            "drain": {"preStopSeconds": pre_stop},
            "strategy": strategy,
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


ROLLING = {
    "type": "RollingUpdate",
    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0, "scaleDownDelaySeconds": 2},
}


def blue_green(auto: bool = True, delay: int = 3) -> dict[str, Any]:
    return {"type": "BlueGreen", "blueGreen": {"autoPromotion": auto, "scaleDownDelaySeconds": delay}}


def canary(steps: list[dict[str, Any]], delay: int = 2) -> dict[str, Any]:
    return {"type": "Canary", "canary": {"maxSurge": 1, "scaleDownDelaySeconds": delay, "steps": steps}}


def with_version(manifest: dict[str, Any], version: str, **env: str) -> dict[str, Any]:
    new = copy.deepcopy(manifest)
    container = new["spec"]["template"]["spec"]["containers"][0]
    values = {"VERSION": version, **env}
    for item in container["env"]:
        if item["name"] in values:
            item["value"] = values.pop(item["name"])
    container["env"] += [{"name": k, "value": v} for k, v in values.items()]
    return new


class Rollouts:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.api = api
        self.namespace = namespace

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, manifest
        )
        return obj

    def update_spec(self, name: str, spec: dict[str, Any]) -> None:
        """Replaces the spec as `kubectl apply` of a changed manifest would (which does not fail when
        the operator wrote status in between: a replace that meets a newer resourceVersion is
        read and made again)."""
        for _ in range(5):
            obj = self.get(name)
            obj["spec"] = spec
            try:
                self.custom.replace_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, name, obj
                )
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise RuntimeError(f"{name}: the spec could not be written: status kept changing")

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def command(self, name: str, verb: str, **extra: Any) -> None:
        body = {"id": uuid.uuid4().hex, "verb": verb, **extra}
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": {"zdr.io/command": json.dumps(body)}}},
        )

    def wait_phase(
        self, name: str, phase: str, timeout: float = 120, generation: bool = True
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            obj = self.get(name)
            st = obj.get("status") or {}
            current = not generation or st.get("observedGeneration") == obj["metadata"]["generation"]
            return st if current and st.get("phase") == phase else None

        return kube.wait_until(f"{name} to be {phase}", reached, timeout=timeout)

    def deployments(self, name: str) -> dict[str, Any]:
        """Revision hash -> Deployment (as a plain dict)."""
        items = self.apps.list_namespaced_deployment(
            self.namespace, label_selector=f"zdr.io/rollout={name}"
        ).items
        return {d.metadata.labels["zdr.io/revision"]: self.api.sanitize_for_serialization(d) for d in items}

    def pods(self, name: str, revision: str | None = None) -> list[Any]:
        selector = f"zdr.io/rollout={name}" + (f",zdr.io/revision={revision}" if revision else "")
        return [
            p
            for p in self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
            if p.metadata.deletion_timestamp is None
        ]

    def events(self, name: str) -> list[Any]:
        items = self.core.list_namespaced_event(
            self.namespace,
            field_selector=f"involvedObject.name={name},involvedObject.kind=ZeroDowntimeRollout",
        ).items
        return sorted(items, key=lambda e: (e.first_timestamp or e.event_time, e.metadata.name))

    def service_selector(self, service: str) -> dict[str, str]:
        selector: dict[str, str] = self.core.read_namespaced_service(service, self.namespace).spec.selector
        return selector

    def versions_served(self, service: str, samples: int = 30) -> set[str]:
        ip = kube.cluster_ip(self.core, self.namespace, service)
        return {kube.http_get(ip).version for _ in range(samples)}

    def wait_only(self, service: str, versions: set[str], timeout: float = 15) -> None:
        """Waits until the Service answers only from `versions` (kube-proxy syncs within ~1 s)."""
        kube.wait_until(
            f"{service} to serve only {sorted(versions)}",
            lambda: self.versions_served(service, samples=20) == versions,
            timeout=timeout,
        )
