"""Reads a rollout's children from the API server into an ``Observed`` snapshot.

Four list calls per reconcile, each narrowed by the rollout's label: Deployments,
Services, Pods and EndpointSlices (the EndpointSlice controller copies a Service's
labels onto its slices). Only children this rollout owns count, so a look-alike
object someone else created is never scaled or re-pointed.

While pods chosen to go wait to leave the EndpointSlices (retire.py), the planner sees their
revision at the size it decided (``RevisionPods.planned_replicas``), not at the Deployment's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client

from zdr.api import (
    COMMAND_ANNOTATION,
    LABEL_MANAGED_BY,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    LABEL_SERVICE_ROLE,
    LABEL_SERVING,
    RESTARTED_AT_ANNOTATION,
    RETIRING_ANNOTATION,
    Command,
    ServiceRole,
    ZeroDowntimeRolloutSpec,
    parse_command,
)
from zdr.plan.types import Observed, ObservedRevision, ObservedService
from zdr.retire import PodState, RevisionPods
from zdr.revision import MANAGED_BY, selector_target

Json = dict[str, Any]


@dataclass(frozen=True)
class Children:
    """The raw objects behind an ``Observed``, for ``apply`` to compare and patch."""

    deployments: Mapping[str, Json] = field(default_factory=dict)
    """By revision hash."""
    services: Mapping[ServiceRole, Json] = field(default_factory=dict)
    pods: Mapping[str, list[Json]] = field(default_factory=dict)
    """By revision hash: pods that are not terminating (the analysis runner reaches them by IP)."""
    retiring: Mapping[str, RevisionPods] = field(default_factory=dict)
    """By revision hash: what endpoint-first retirement needs to know (see retire.py)."""


def _list(call: Any, namespace: str, selector: str) -> list[Json]:
    resp = call(namespace, label_selector=selector, _preload_content=False)
    items: list[Json] = json.loads(resp.data)["items"]
    return items


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def observe(
    api: client.ApiClient, rollout: Mapping[str, Any], spec: ZeroDowntimeRolloutSpec | None
) -> tuple[Observed, Children]:
    meta = rollout["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ROLLOUT}={name}"
    apps, core, discovery = client.AppsV1Api(api), client.CoreV1Api(api), client.DiscoveryV1Api(api)

    deployments = {
        d["metadata"]["labels"][LABEL_REVISION]: d
        for d in _list(apps.list_namespaced_deployment, namespace, selector)
        if _owned_by(d, uid)
        and LABEL_REVISION in d["metadata"].get("labels", {})
        and not d["metadata"].get("deletionTimestamp")
    }
    services: dict[ServiceRole, Json] = {}
    for s in _list(core.list_namespaced_service, namespace, selector):
        role = s["metadata"].get("labels", {}).get(LABEL_SERVICE_ROLE)
        if _owned_by(s, uid) and role in ServiceRole.__members__.values():
            services[ServiceRole(role)] = s
    pods = _list(core.list_namespaced_pod, namespace, selector)
    slices = _list(discovery.list_namespaced_endpoint_slice, namespace, selector)

    pod_revision = {p["metadata"]["name"]: p["metadata"].get("labels", {}).get(LABEL_REVISION) for p in pods}
    restarts: dict[str, int] = {}
    most_restarts: dict[str, int] = {}
    crash_looping: dict[str, int] = {}
    unready_since: dict[str, datetime] = {}
    terminating: dict[str, int] = {}
    live_pods: dict[str, list[Json]] = {}
    for p in pods:
        rev = pod_revision[p["metadata"]["name"]]
        if rev is None or not _owned_pod(p, deployments.get(rev)):
            continue
        if p["metadata"].get("deletionTimestamp"):
            terminating[rev] = terminating.get(rev, 0) + 1
            continue
        live_pods.setdefault(rev, []).append(p)
        statuses = p.get("status", {}).get("containerStatuses") or []
        count = sum(int(cs.get("restartCount", 0)) for cs in statuses)
        restarts[rev] = restarts.get(rev, 0) + count
        most_restarts[rev] = max(most_restarts.get(rev, 0), count)
        if any(
            ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
            for cs in statuses
        ):
            crash_looping[rev] = crash_looping.get(rev, 0) + 1
        since = _unready_since(p)
        if since is not None:
            unready_since[rev] = min(since, unready_since.get(rev, since))

    role_of_service = {s["metadata"]["name"]: role for role, s in services.items()}
    retiring_services = {
        s["metadata"]["name"]
        for s in services.values()
        if LABEL_SERVING in (s.get("spec", {}).get("selector") or {})
    }
    endpoints: dict[str, dict[ServiceRole, int]] = {}
    listed: set[str] = set()
    for sl in slices:
        service = sl["metadata"].get("labels", {}).get("kubernetes.io/service-name", "")
        role = role_of_service.get(service)
        if role is None:
            continue
        for ep in sl.get("endpoints") or []:
            ref = ep.get("targetRef") or {}
            if ref.get("kind") == "Pod" and service in retiring_services:
                listed.add(ref.get("name", ""))
            if ref.get("kind") != "Pod" or not (ep.get("conditions") or {}).get("ready"):
                continue
            rev = pod_revision.get(ref.get("name", ""))
            if rev is not None:
                per_role = endpoints.setdefault(rev, {})
                per_role[role] = per_role.get(role, 0) + 1

    retiring = {
        rev: RevisionPods(
            spec_replicas=int(d["spec"].get("replicas", 0)),
            pods=tuple(_pod_state(p, listed) for p in live_pods.get(rev, [])),
        )
        for rev, d in deployments.items()
    }
    revisions = {}
    for rev, d in deployments.items():
        st = d.get("status", {})
        revisions[rev] = ObservedRevision(
            name=rev,
            spec_replicas=retiring[rev].planned_replicas,
            replicas=int(st.get("replicas", 0)),
            ready_replicas=int(st.get("readyReplicas", 0)),
            available_replicas=int(st.get("availableReplicas", 0)),
            updated_replicas=int(st.get("updatedReplicas", 0)),
            synced=int(st.get("observedGeneration", 0)) >= int(d["metadata"].get("generation", 0)),
            created_at=_time(d["metadata"].get("creationTimestamp")),
            restarts=restarts.get(rev, 0),
            crash_looping=crash_looping.get(rev, 0),
            most_restarts=most_restarts.get(rev, 0),
            unready_since=unready_since.get(rev),
            terminating=terminating.get(rev, 0),
            restarted_at=((d["spec"].get("template") or {}).get("metadata") or {})
            .get("annotations", {})
            .get(RESTARTED_AT_ANNOTATION),
            ready_endpoints=endpoints.get(rev, {}),
        )

    observed_services = {
        role: ObservedService(
            name=s["metadata"]["name"],
            target=selector_target(s.get("spec", {}).get("selector"), name, spec) if spec else None,
        )
        for role, s in services.items()
    }

    command: Command | None = None
    command_error: str | None = None
    text = (meta.get("annotations") or {}).get(COMMAND_ANNOTATION)
    if text:
        try:
            command = parse_command(text)
        except ValueError as exc:
            command_error = str(exc)

    observed = Observed(
        generation=int(meta.get("generation", 0)),
        revisions=revisions,
        services=observed_services,
        command=command,
        command_error=command_error,
    )
    return observed, Children(deployments=deployments, services=services, pods=live_pods, retiring=retiring)


def _pod_state(pod: Mapping[str, Any], listed: set[str]) -> PodState:
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    since = (meta.get("annotations") or {}).get(RETIRING_ANNOTATION)
    try:
        retiring_since = _time(since)
    except ValueError:
        retiring_since = None  # not written by zdr
    if retiring_since is None and labels.get(LABEL_SERVING) == "false":
        # Out of the Services without zdr's record of when: counted as out since its creation.
        retiring_since = _time(meta.get("creationTimestamp"))
    return PodState(
        name=meta["name"],
        ready=_unready_since(pod) is None,
        labelled=LABEL_SERVING in labels,
        retiring_since=retiring_since,
        listed=meta["name"] in listed,
        created_at=_time(meta.get("creationTimestamp")),
    )


def _owned_pod(pod: Mapping[str, Any], deployment: Mapping[str, Any] | None) -> bool:
    """A pod of a revision's Deployment (not a look-alike with copied labels)."""
    if deployment is None:
        return False
    refs = pod.get("metadata", {}).get("ownerReferences") or []
    return any(r.get("kind") == "ReplicaSet" and r.get("controller") for r in refs)


def _unready_since(pod: Mapping[str, Any]) -> datetime | None:
    """Since when a pod has not been ready; None when it is ready."""
    conditions = pod.get("status", {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "True":
        return None
    since = _time((ready or {}).get("lastTransitionTime")) or _time(pod["metadata"].get("creationTimestamp"))
    return since
