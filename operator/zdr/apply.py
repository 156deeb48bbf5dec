"""Carries out a ``Plan``: the only module that writes to the API server.

Every write is idempotent and minimal: a Deployment is created once and afterwards
only its ``spec.replicas`` changes; a Service's selector is replaced in one write
(so traffic moves atomically); status is written only when it changed, which also
keeps the operator's own status writes from waking it up in a loop.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from zdr import log
from zdr.api import (
    API_VERSION,
    DELETION_COST_ANNOTATION,
    GROUP,
    KIND,
    LABEL_SERVING,
    PLURAL,
    RESTARTED_AT_ANNOTATION,
    RETIRING_ANNOTATION,
    VERSION,
    ZeroDowntimeRolloutSpec,
)
from zdr.observe import Children
from zdr.plan.types import Event, Plan, ServiceTarget
from zdr.retire import DELETION_COST, PodPatch, Retirement
from zdr.revision import (
    build_deployment,
    build_service,
    carries_serving_label,
    deployment_name,
    service_selector,
)

Json = dict[str, Any]
FIELD_MANAGER = "zdr"
COMPONENT = "zdr-operator"


def owner_reference(rollout: Mapping[str, Any]) -> Json:
    meta = rollout["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _ignore(status: int, exc: ApiException) -> None:
    if exc.status != status:
        raise exc


class Applier:
    """Writes one plan for one rollout; records what it wrote (for logs and latency)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.writes: list[str] = []

    def apply(
        self,
        rollout: Mapping[str, Any],
        plan: Plan,
        children: Children,
        retirement: Retirement | None = None,
    ) -> list[str]:
        self.writes = []
        meta = rollout["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if plan.spec is not None:
            for patch in retirement.patches if retirement else ():
                self._pod(namespace, patch, now=datetime.now(UTC))
            self._deployments(rollout, plan, plan.spec, children)
            self._services(rollout, plan, plan.spec, children)
        for revision in plan.delete:
            try:
                self.apps.delete_namespaced_deployment(
                    deployment_name(name, revision), namespace, propagation_policy="Background"
                )
                self.writes.append(f"delete deployment {deployment_name(name, revision)}")
            except ApiException as exc:
                _ignore(404, exc)
        for role in plan.delete_services:
            svc = children.services.get(role)
            if svc is None:
                continue
            try:
                self.core.delete_namespaced_service(svc["metadata"]["name"], namespace)
                self.writes.append(f"delete service {svc['metadata']['name']}")
            except ApiException as exc:
                _ignore(404, exc)
        self._status(rollout, plan)
        for event in (*plan.events, *(retirement.events if retirement else ())):
            self.event(rollout, event)
        return self.writes

    def _pod(self, namespace: str, patch: PodPatch, *, now: datetime) -> None:
        """Take a pod chosen to go out of zdr's Services (or put it back), with the deletion cost
        that makes its ReplicaSet remove exactly it."""
        annotations: dict[str, str | None] = (
            {
                DELETION_COST_ANNOTATION: DELETION_COST,
                RETIRING_ANNOTATION: now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            }
            if patch.retire
            else {DELETION_COST_ANNOTATION: None, RETIRING_ANNOTATION: None}
        )
        body: Json = {"metadata": {"annotations": annotations}}
        if patch.labelled:
            body["metadata"]["labels"] = {LABEL_SERVING: "false" if patch.retire else "true"}
        try:
            self.core.patch_namespaced_pod(patch.name, namespace, body, field_manager=FIELD_MANAGER)
            self.writes.append(f"{'retire' if patch.retire else 'restore'} pod {patch.name}")
        except ApiException as exc:
            _ignore(404, exc)

    def _deployments(
        self, rollout: Mapping[str, Any], plan: Plan, spec: ZeroDowntimeRolloutSpec, children: Children
    ) -> None:
        meta = rollout["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        for revision, replicas in plan.replicas.items():
            current = children.deployments.get(revision)
            if current is None:
                if revision != plan.update_revision:
                    continue  # only the current template's revision may be created
                body = build_deployment(name, namespace, spec, revision, replicas)
                body["metadata"]["ownerReferences"] = [owner_reference(rollout)]
                try:
                    self.apps.create_namespaced_deployment(namespace, body, field_manager=FIELD_MANAGER)  # type: ignore[arg-type]
                    self.writes.append(f"create deployment {body['metadata']['name']} replicas={replicas}")
                except ApiException as exc:
                    _ignore(409, exc)
            elif int(current["spec"].get("replicas", 0)) != replicas:
                self.apps.patch_namespaced_deployment_scale(
                    current["metadata"]["name"],
                    namespace,
                    {"spec": {"replicas": replicas}},
                    field_manager=FIELD_MANAGER,
                )
                self.writes.append(
                    f"scale deployment {current['metadata']['name']} "
                    f"{current['spec'].get('replicas', 0)}->{replicas}"
                )
        for revision, restarted_at in plan.restarts.items():
            current = children.deployments.get(revision)
            if current is None:
                continue
            template_meta = current["spec"].get("template", {}).get("metadata") or {}
            if (template_meta.get("annotations") or {}).get(RESTARTED_AT_ANNOTATION) == restarted_at:
                continue
            # The one edit of a revision's Deployment besides its size: a new restartedAt makes it
            # replace its pods one at a time (maxSurge 1, maxUnavailable 0), a new pod ready first.
            patch = {
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: restarted_at}}}}
            }
            self.apps.patch_namespaced_deployment(
                current["metadata"]["name"], namespace, patch, field_manager=FIELD_MANAGER
            )
            self.writes.append(f"restart deployment {current['metadata']['name']} at {restarted_at}")

    def _services(
        self, rollout: Mapping[str, Any], plan: Plan, spec: ZeroDowntimeRolloutSpec, children: Children
    ) -> None:
        meta = rollout["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        names = spec.service_names(name)
        for role, target in plan.services.items():
            selector = service_selector(name, spec, target, serving=_serving_label(target, plan, children))
            desired = build_service(
                names[role], spec, selector, rollout_name=name, namespace=namespace, role=role
            )
            desired["metadata"]["ownerReferences"] = [owner_reference(rollout)]
            current = children.services.get(role)
            if current is None:
                try:
                    self.core.create_namespaced_service(namespace, desired, field_manager=FIELD_MANAGER)  # type: ignore[arg-type]
                    self.writes.append(f"create service {names[role]} -> {target}")
                except ApiException as exc:
                    _ignore(409, exc)
                continue
            ops = self._service_ops(current, desired)
            if ops:
                self.core.patch_namespaced_service(
                    current["metadata"]["name"], namespace, ops, field_manager=FIELD_MANAGER
                )
                changed = ",".join(op["path"].rsplit("/", 1)[-1] for op in ops)
                self.writes.append(f"patch service {names[role]} {changed} -> {target}")

    @staticmethod
    def _service_ops(current: Json, desired: Json) -> list[Json]:
        """JSON-patch operations that bring the fields zdr owns to the desired values.

        The selector is replaced whole in one operation: traffic moves in a single write.
        The resourceVersion test makes a concurrent change fail the write, not race it.
        """
        ops: list[Json] = []
        cur, want = current.get("spec", {}), desired["spec"]
        if cur.get("selector") != want["selector"]:
            ops.append({"op": "replace", "path": "/spec/selector", "value": want["selector"]})
        if cur.get("sessionAffinity", "None") != want["sessionAffinity"]:
            ops.append({"op": "replace", "path": "/spec/sessionAffinity", "value": want["sessionAffinity"]})
        if (
            "sessionAffinityConfig" in want
            and cur.get("sessionAffinityConfig") != want["sessionAffinityConfig"]
        ):
            ops.append(
                {"op": "add", "path": "/spec/sessionAffinityConfig", "value": want["sessionAffinityConfig"]}
            )

        def port_key(p: Mapping[str, Any]) -> tuple[Any, ...]:
            return (p.get("name"), p["port"], p.get("targetPort"), p.get("protocol", "TCP"))

        if sorted(map(port_key, cur.get("ports") or [])) != sorted(map(port_key, want["ports"])):
            # Keep allocated node ports where the port is unchanged.
            node_ports = {p["port"]: p.get("nodePort") for p in cur.get("ports") or []}
            ports = [
                {
                    **p,
                    **(
                        {"nodePort": node_ports[p["port"]]}
                        if node_ports.get(p["port"]) and "nodePort" not in p
                        else {}
                    ),
                }
                for p in want["ports"]
            ]
            if want.get("type", "ClusterIP") == "ClusterIP":
                ports = [{k: v for k, v in p.items() if k != "nodePort"} for p in ports]
            ops.append({"op": "replace", "path": "/spec/ports", "value": ports})
        if ops:
            ops.insert(
                0,
                {
                    "op": "test",
                    "path": "/metadata/resourceVersion",
                    "value": current["metadata"]["resourceVersion"],
                },
            )
        return ops

    def _status(self, rollout: Mapping[str, Any], plan: Plan) -> None:
        current = rollout.get("status") or {}
        new = plan.status.to_k8s()
        if _comparable(current) == _comparable(new):
            return
        meta = rollout["metadata"]
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], {"status": plan.status.to_patch()}
            )
            self.writes.append("status")
        except ApiException as exc:
            _ignore(404, exc)

    def event(self, rollout: Mapping[str, Any], event: Event) -> None:
        meta = rollout["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": event.reason,
            "message": event.message[:1024],
            "type": event.type,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body)  # type: ignore[arg-type]
        except ApiException as exc:
            log.get().warning("event not recorded", reason=event.reason, error=exc.reason)
        self.writes.append(f"event {event.reason}")


def _serving_label(target: ServiceTarget, plan: Plan, children: Children) -> bool:
    """A Service selects ``zdr.io/serving: "true"`` only when every pod it selects carries the
    label: a revision created before the label existed keeps serving through it."""
    if target.revision is not None:
        deployment = children.deployments.get(target.revision)
        return deployment is None or carries_serving_label(deployment)
    return all(carries_serving_label(d) for d in children.deployments.values())


def _comparable(status: Mapping[str, Any]) -> str:
    """Status without the fields of other writers, in a canonical form."""
    return json.dumps({k: v for k, v in status.items() if k != "kopf" and v is not None}, sort_keys=True)
