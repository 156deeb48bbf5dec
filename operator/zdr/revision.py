"""Revisions: the effective pod template, its hash, the labels, and the children built from them.

The effective template is the user's ``spec.template`` with drain injected:

- every container without its own ``lifecycle.preStop`` gets the native sleep action
  ``preStop: {sleep: {seconds: drain.preStopSeconds}}`` (none when preStopSeconds is 0), so a
  retiring pod keeps serving while its removal from the endpoints reaches every proxy;
- ``terminationGracePeriodSeconds`` becomes the largest of ``drain.terminationGracePeriodSeconds``
  and the longest preStop sleep plus the app's own shutdown time (the template's
  ``terminationGracePeriodSeconds`` if it sets one, else ``DEFAULT_SHUTDOWN_ALLOWANCE_SECONDS``),
  so SIGKILL never cuts the drain short; the app's shutdown time is at least
  ``drain.maxRequestSeconds``, the longest request it may still serve at the stop signal;
- with ``drain.stopSignal``, every container without its own ``lifecycle.stopSignal`` is stopped
  with that signal after its preStop (and the pod names its OS, as the API server requires).

The revision hash covers the effective template, not the user's template alone: what runs is
what is hashed. Changing ``spec.drain`` therefore rolls out new pods (zero-downtime, like any
template change), which is the only way the new preStop and grace period reach running pods.
The price: a change of the injection rules in a later operator version would roll every
rollout once, so those rules must stay stable. Labels the operator adds (rollout name,
revision) are not part of the hash; ``minReadySeconds`` and ``progressDeadlineSeconds`` live on
the Deployment and only affect revisions created after they change.

Builders here are pure: they return manifests as plain dicts. Owner references are added by
the caller (they need the rollout's uid).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from zdr.api import (
    DEFAULT_SHUTDOWN_ALLOWANCE_SECONDS,
    LABEL_MANAGED_BY,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    LABEL_SERVICE_ROLE,
    LABEL_SERVING,
    ServiceRole,
    ServiceTarget,
    ZeroDowntimeRolloutSpec,
)

MANAGED_BY = "zdr"
HASH_LENGTH = 10
CHILD_MAX_SURGE = 1
"""Surge of each revision's own Deployment: its template never changes, but should anyone edit it,
the Deployment replaces pods without ever dropping one first."""


def effective_template(spec: ZeroDowntimeRolloutSpec) -> dict[str, Any]:
    """The pod template pods of this spec run with: the user's template plus drain injection."""
    template = copy.deepcopy(spec.template)
    pod = template.setdefault("spec", {})
    pre_stop = spec.drain.pre_stop_seconds
    longest_pre_stop = 0
    for container in pod.get("containers") or []:
        lifecycle = container.get("lifecycle") or {}
        own = lifecycle.get("preStop")
        if own:
            longest_pre_stop = max(longest_pre_stop, _sleep_seconds(own))
            continue
        if pre_stop > 0:
            lifecycle = {**lifecycle, "preStop": {"sleep": {"seconds": pre_stop}}}
            container["lifecycle"] = lifecycle
            longest_pre_stop = max(longest_pre_stop, pre_stop)
    if spec.drain.stop_signal is not None:
        for container in pod.get("containers") or []:
            lifecycle = container.get("lifecycle") or {}
            if not lifecycle.get("stopSignal"):
                container["lifecycle"] = {**lifecycle, "stopSignal": spec.drain.stop_signal}
        pod.setdefault("os", {"name": "linux"})  # the API server wants the OS named for a stopSignal
    pod["terminationGracePeriodSeconds"] = termination_grace_period(spec, longest_pre_stop)
    return template


def termination_grace_period(spec: ZeroDowntimeRolloutSpec, longest_pre_stop: int) -> int:
    """Grace period covering the preStop sleep plus the app's own shutdown."""
    own = (spec.template.get("spec") or {}).get("terminationGracePeriodSeconds")
    shutdown = (
        own if isinstance(own, int) and not isinstance(own, bool) else DEFAULT_SHUTDOWN_ALLOWANCE_SECONDS
    )
    # A request the app may still be serving at the stop signal gets its whole declared time.
    shutdown = max(shutdown, spec.drain.max_request_seconds)
    return max(spec.drain.termination_grace_period_seconds, longest_pre_stop + shutdown)


def _sleep_seconds(handler: Mapping[str, Any]) -> int:
    """Seconds a preStop handler is known to take (only the sleep action says)."""
    seconds = (handler.get("sleep") or {}).get("seconds")
    return seconds if isinstance(seconds, int) and not isinstance(seconds, bool) else 0


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def revision_hash(spec: ZeroDowntimeRolloutSpec) -> str:
    """Short, stable hash of the effective template (hex, ``HASH_LENGTH`` characters).

    Stable across processes and key order: SHA-256 over canonical JSON.
    """
    digest = hashlib.sha256(canonical_json(effective_template(spec)).encode()).hexdigest()
    return digest[:HASH_LENGTH]


def deployment_name(rollout_name: str, revision: str) -> str:
    return f"{rollout_name}-{revision}"


def rollout_labels(rollout_name: str) -> dict[str, str]:
    """Labels on every child of the rollout."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_ROLLOUT: rollout_name}


def revision_labels(rollout_name: str, revision: str) -> dict[str, str]:
    """Labels on a revision's Deployment and pods."""
    return {**rollout_labels(rollout_name), LABEL_REVISION: revision}


def pod_template(rollout_name: str, spec: ZeroDowntimeRolloutSpec, revision: str) -> dict[str, Any]:
    """The effective template with the operator's labels.

    ``zdr.io/serving: "true"`` is in the template but not in the Deployment's selector: flipping
    it to "false" takes a pod out of zdr's Services while its ReplicaSet keeps it (see retire.py).
    """
    template = effective_template(spec)
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        **revision_labels(rollout_name, revision),
        LABEL_SERVING: "true",
    }
    return template


def carries_serving_label(deployment: Mapping[str, Any]) -> bool:
    """The Deployment's pods carry ``zdr.io/serving`` (created by a zdr that retires endpoint-first)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    return LABEL_SERVING in ((template.get("metadata") or {}).get("labels") or {})


def readiness_problems(spec: ZeroDowntimeRolloutSpec) -> list[str]:
    """Containers that would be counted as serving before the app answers.

    Each container that declares ports must have a readinessProbe; when none declares ports, at
    least one container must have one. ``spec.allowMissingReadinessProbe: true`` accepts it.
    """
    if spec.allow_missing_readiness_probe:
        return []
    containers = [
        c for c in (spec.template.get("spec") or {}).get("containers") or [] if isinstance(c, Mapping)
    ]
    fix = (
        "add a readinessProbe (e.g. httpGet on the serving port) so traffic only reaches pods that answer, "
        "or set spec.allowMissingReadinessProbe: true"
    )
    serving = [(i, c) for i, c in enumerate(containers) if c.get("ports")]
    if not serving:
        if any(c.get("readinessProbe") for c in containers):
            return []
        return [f"spec.template.spec.containers: no container has a readinessProbe; {fix}"]
    return [
        f"spec.template.spec.containers[{i}] ({c.get('name')}): exposes ports but has no readinessProbe; "
        + fix
        for i, c in serving
        if not c.get("readinessProbe")
    ]


def build_deployment(
    rollout_name: str,
    namespace: str,
    spec: ZeroDowntimeRolloutSpec,
    revision: str,
    replicas: int,
) -> dict[str, Any]:
    """The Deployment of one revision, ``<rollout>-<hash>``.

    Its selector is the rollout's selector plus the revision label, so revisions never adopt each
    other's pods. Only ``spec.replicas`` is ever changed afterwards.
    """
    selector = spec.effective_selector
    match_labels = {**(selector.match_labels or {}), **revision_labels(rollout_name, revision)}
    match_labels.pop(LABEL_MANAGED_BY)
    deployment_selector: dict[str, Any] = {"matchLabels": match_labels}
    if selector.match_expressions:
        deployment_selector["matchExpressions"] = [r.to_k8s() for r in selector.match_expressions]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(rollout_name, revision),
            "namespace": namespace,
            "labels": revision_labels(rollout_name, revision),
        },
        "spec": {
            "replicas": replicas,
            "selector": deployment_selector,
            "template": pod_template(rollout_name, spec, revision),
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": CHILD_MAX_SURGE, "maxUnavailable": 0},
            },
            "minReadySeconds": spec.min_ready_seconds,
            "progressDeadlineSeconds": spec.progress_deadline_seconds,
            "revisionHistoryLimit": 0,
        },
    }


def service_selector(
    rollout_name: str, spec: ZeroDowntimeRolloutSpec, target: ServiceTarget, *, serving: bool = True
) -> dict[str, str]:
    """The label selector of a Service aimed at ``target``.

    Every pod of the rollout: the selector's matchLabels plus ``zdr.io/rollout`` (a Service
    selector has no set-based expressions; the rollout label keeps foreign pods out).
    One revision: that plus ``zdr.io/revision``. With ``serving``, only pods whose
    ``zdr.io/serving`` label is "true": False while a selected revision's pods predate the label.
    """
    selector = {**(spec.effective_selector.match_labels or {}), LABEL_ROLLOUT: rollout_name}
    if target.revision is not None:
        selector[LABEL_REVISION] = target.revision
    if serving:
        selector[LABEL_SERVING] = "true"
    return selector


def selector_target(
    selector: Mapping[str, str] | None, rollout_name: str, spec: ZeroDowntimeRolloutSpec
) -> ServiceTarget | None:
    """Inverse of ``service_selector``: what an observed Service selects, or None if unrecognized."""
    if not selector:
        return None
    revision = selector.get(LABEL_REVISION)
    target = ServiceTarget(revision)
    serving = LABEL_SERVING in selector
    return target if dict(selector) == service_selector(rollout_name, spec, target, serving=serving) else None


def build_service(
    name: str,
    spec: ZeroDowntimeRolloutSpec,
    selector: Mapping[str, str],
    *,
    rollout_name: str,
    namespace: str,
    role: ServiceRole = ServiceRole.MAIN,
) -> dict[str, Any]:
    """A Service of the rollout.

    The MAIN Service takes ``spec.service`` as written (type, node ports, annotations). The
    extra Services (preview, canary, stable) are ClusterIP with the same ports, so node ports
    and load balancers are never duplicated. All of them keep sessionAffinity.
    """
    svc = spec.service
    main = role == ServiceRole.MAIN
    ports = []
    for port in svc.ports or []:
        item: dict[str, Any] = {
            "port": port.port,
            "targetPort": port.target_port if port.target_port is not None else port.port,
            "protocol": port.protocol,
        }
        if port.name:
            item["name"] = port.name
        if port.app_protocol:
            item["appProtocol"] = port.app_protocol
        if main and port.node_port is not None:
            item["nodePort"] = port.node_port
        ports.append(item)
    service_spec: dict[str, Any] = {
        "type": svc.type if main else "ClusterIP",
        "selector": dict(selector),
        "ports": ports,
        "sessionAffinity": svc.session_affinity,
    }
    if svc.session_affinity == "ClientIP" and svc.session_affinity_timeout_seconds is not None:
        service_spec["sessionAffinityConfig"] = {
            "clientIP": {"timeoutSeconds": svc.session_affinity_timeout_seconds}
        }
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**rollout_labels(rollout_name), LABEL_SERVICE_ROLE: role.value},
    }
    if main and svc.annotations:
        metadata["annotations"] = dict(svc.annotations)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": service_spec}
