"""``kubectl zdr get``: the rollout, its revisions, their pods and its Services as one tree.

``fetch`` reads a ``Snapshot`` (the rollout plus its children, as plain JSON); ``render`` turns a
snapshot into a ``rich.tree.Tree`` without any I/O, so the layout is tested on fixed objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from rich.text import Text
from rich.tree import Tree

from zdr.api import LABEL_REVISION, LABEL_SERVICE_ROLE, STRATEGY_SERVICE_ROLES
from zdr.cli.cluster import Connection, children_selector, get_rollout, list_json

Json = dict[str, Any]

PHASE_STYLES = {
    "Healthy": "green",
    "Progressing": "yellow",
    "Paused": "cyan",
    "Degraded": "red",
    "Aborted": "red",
}


@dataclass(frozen=True)
class Snapshot:
    """A rollout and the objects it owns, read at one moment."""

    rollout: Json
    deployments: list[Json] = field(default_factory=list)
    pods: list[Json] = field(default_factory=list)
    services: list[Json] = field(default_factory=list)
    endpoint_slices: list[Json] = field(default_factory=list)


def fetch(conn: Connection, name: str) -> Snapshot:
    rollout = get_rollout(conn, name)
    selector = children_selector(name)
    apps, core = client.AppsV1Api(conn.api), client.CoreV1Api(conn.api)
    discovery = client.DiscoveryV1Api(conn.api)
    return Snapshot(
        rollout=rollout,
        deployments=list_json(conn, apps.list_namespaced_deployment, selector),
        pods=list_json(conn, core.list_namespaced_pod, selector),
        services=list_json(conn, core.list_namespaced_service, selector),
        endpoint_slices=list_json(conn, discovery.list_namespaced_endpoint_slice, selector),
    )


# ---------------------------------------------------------------------------------------------
# Formatting helpers
# ---------------------------------------------------------------------------------------------
def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(since: datetime | None, now: datetime) -> str:
    """kubectl's short human durations: 45s, 3m20s, 12m, 5h10m, 3d."""
    if since is None:
        return "?"
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 10:
        return f"{minutes}m{sec}s" if sec else f"{minutes}m"
    hours, mins = divmod(minutes, 60)
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{mins}m" if mins else f"{hours}h"
    days, hrs = divmod(hours, 24)
    if days < 2:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hrs}h" if hrs else f"{days}d"
    return f"{days}d"


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def pod_state(pod: Mapping[str, Any]) -> tuple[int, int, int, str]:
    """Ready containers, containers, restarts, and the STATUS kubectl would print."""
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    containers = len((pod.get("spec") or {}).get("containers") or []) or len(statuses)
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount", 0)) for cs in statuses)
    reason = str(status.get("reason") or status.get("phase") or "Unknown")
    for cs in statuses:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        if waiting.get("reason"):
            reason = str(waiting["reason"])
        elif terminated.get("reason"):
            reason = str(terminated["reason"])
    if reason == "Running" and ready < containers:
        reason = "Running (not ready)"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return ready, containers, restarts, reason


def _count(ok: int, total: int) -> Text:
    return Text(f"{ok}/{total}", style="green" if ok >= total else "yellow")


# ---------------------------------------------------------------------------------------------
# The tree
# ---------------------------------------------------------------------------------------------
def header(rollout: Mapping[str, Any], now: datetime) -> Text:
    """The rollout line: strategy, phase, step, weight, counts; then the message and notes."""
    meta = rollout.get("metadata") or {}
    spec = rollout.get("spec") or {}
    status = rollout.get("status") or {}
    strategy = (spec.get("strategy") or {}).get("type") or "RollingUpdate"
    phase = status.get("phase") or "Unknown"
    text = Text()
    text.append(f"{meta.get('namespace', '?')}/{meta.get('name', '?')}", style="bold")
    text.append(f"  {strategy}  ")
    text.append(str(phase), style=PHASE_STYLES.get(str(phase), "bold"))
    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    index = status.get("currentStepIndex")
    if strategy == "Canary" and isinstance(index, int):
        text.append(f"  step {index + 1}/{len(steps)}" if index < len(steps) else "  steps done")
    weight = status.get("canaryWeight")
    if weight is not None:
        text.append(f"  weight {weight}%")
    replicas = spec.get("replicas", 1)
    text.append(f"  ready {status.get('readyReplicas', 0)}/{replicas}")
    text.append(f"  up-to-date {status.get('updatedReplicas', 0)}")
    text.append(f"  standby {status.get('standbyReplicas') or 0}")
    text.append(f"  age {age(parse_time(meta.get('creationTimestamp')), now)}")
    message = status.get("message")
    if message:
        text.append("\n")
        text.append(str(message))
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed != generation:
        text.append("\n")
        text.append(
            f"status is for generation {observed if observed is not None else '-'}; the spec is at "
            f"generation {generation} (the operator has not caught up)",
            style="yellow",
        )
    if spec.get("paused"):
        text.append("\nspec.paused is true", style="cyan")
    last = status.get("lastCommand")
    if isinstance(last, dict) and last.get("verb"):
        handled = age(parse_time(last.get("handledAt")), now)
        text.append("\n")
        text.append(f"last command: {last.get('verb')} ")
        text.append(str(last.get("result")), style="green" if last.get("result") == "Accepted" else "red")
        text.append(f" {handled} ago")
        if last.get("message"):
            text.append(f": {last['message']}")
    return text


def _revision_label(
    number: int | None,
    revision: str,
    roles: list[str],
    deployment: Mapping[str, Any] | None,
    record: Mapping[str, Any],
    now: datetime,
) -> Text:
    text = Text()
    text.append(f"revision {number}" if number is not None else "revision ?", style="bold")
    text.append(f"  {revision}")
    for role in roles:
        text.append(f"  {role}", style="green" if role == "stable" else "magenta")
    if deployment is None:
        text.append("  no Deployment", style="dim")
        return text
    desired = int((deployment.get("spec") or {}).get("replicas", 0))
    status = deployment.get("status") or {}
    ready = int(status.get("readyReplicas", 0))
    text.append(f"  Deployment {_name(deployment)} ")
    if desired == 0:
        text.append("scaled to 0", style="dim")
    else:
        text.append_text(_count(ready, desired))
        text.append(" ready")
    created = parse_time((deployment.get("metadata") or {}).get("creationTimestamp")) or parse_time(
        record.get("createdAt")
    )
    text.append(f"  age {age(created, now)}")
    retired = parse_time(record.get("retiredAt"))
    if retired is not None and "stable" not in roles:
        text.append(f"  retired {age(retired, now)} ago", style="dim")
        if record.get("drainedAt") and desired > 0:
            text.append("  warm standby (fresh pods, out of traffic)", style="cyan")
    return text


def _pod_label(pod: Mapping[str, Any], now: datetime) -> Text:
    ready, containers, restarts, reason = pod_state(pod)
    text = Text(_name(pod))
    text.append("  ")
    text.append_text(_count(ready, containers))
    text.append("  ")
    bad = reason not in ("Running", "Terminating", "Completed")
    text.append(reason, style="red" if bad else ("dim" if reason == "Terminating" else "green"))
    text.append(f"  restarts {restarts}", style="red" if restarts else "")
    text.append(f"  age {age(parse_time((pod.get('metadata') or {}).get('creationTimestamp')), now)}")
    return text


def _selects(service: Mapping[str, Any], numbers: Mapping[str, int]) -> str:
    selector = (service.get("spec") or {}).get("selector") or {}
    revision = selector.get(LABEL_REVISION)
    if revision is None:
        return "every revision" if selector else "nothing (no selector)"
    number = numbers.get(revision)
    return f"revision {number} ({revision})" if number is not None else f"revision {revision}"


def _endpoints(service_name: str, slices: list[Json]) -> tuple[int, int]:
    """Ready endpoints and all endpoints of a Service, from its EndpointSlices."""
    ready = total = 0
    for sl in slices:
        if _labels(sl).get("kubernetes.io/service-name") != service_name:
            continue
        for ep in sl.get("endpoints") or []:
            total += 1
            if (ep.get("conditions") or {}).get("ready"):
                ready += 1
    return ready, total


def render(snapshot: Snapshot, now: datetime | None = None) -> Tree:
    """The tree for one snapshot."""
    now = now or datetime.now(UTC)
    rollout = snapshot.rollout
    status = rollout.get("status") or {}
    tree = Tree(header(rollout, now), guide_style="dim")

    records = {str(r.get("name")): r for r in status.get("revisions") or [] if isinstance(r, dict)}
    numbers = {name: int(r.get("revision", 0)) for name, r in records.items()}
    deployments = {
        _labels(d).get(LABEL_REVISION, _name(d)): d
        for d in snapshot.deployments
        if not (d.get("metadata") or {}).get("deletionTimestamp")
    }
    pods_by_revision: dict[str | None, list[Json]] = {}
    for pod in snapshot.pods:
        pods_by_revision.setdefault(_labels(pod).get(LABEL_REVISION), []).append(pod)

    revisions = set(records) | set(deployments) | {r for r in pods_by_revision if r is not None}
    stable, update = status.get("stableRevision"), status.get("updateRevision")

    def order(name: str) -> tuple[int, str]:
        return (-numbers.get(name, 1 << 30), name)

    for name in sorted(revisions, key=order):
        roles = [role for role, rev in (("stable", stable), ("update", update)) if rev == name]
        if roles == ["stable", "update"]:
            roles = ["stable"]
        branch = tree.add(
            _revision_label(numbers.get(name), name, roles, deployments.get(name), records.get(name, {}), now)
        )
        for pod in sorted(pods_by_revision.get(name, []), key=_name):
            branch.add(_pod_label(pod, now))
    strays = pods_by_revision.get(None, [])
    if strays:
        branch = tree.add(Text("pods without a revision label", style="yellow"))
        for pod in sorted(strays, key=_name):
            branch.add(_pod_label(pod, now))

    services = sorted(snapshot.services, key=lambda s: (_role_rank(rollout, s), _name(s)))
    if services:
        branch = tree.add(Text("Services", style="bold"))
        for svc in services:
            role = _labels(svc).get(LABEL_SERVICE_ROLE, "?")
            ready, total = _endpoints(_name(svc), snapshot.endpoint_slices)
            text = Text(_name(svc))
            text.append(f" ({_role_name(rollout, role)})", style="dim")
            text.append(f"  selects {_selects(svc, numbers)}  endpoints ")
            text.append(f"{ready} ready", style="green" if ready else "red")
            if total > ready:
                text.append(f", {total - ready} not ready")
            branch.add(text)
    else:
        tree.add(Text("no Services yet", style="dim"))
    return tree


def _role_name(rollout: Mapping[str, Any], role: str) -> str:
    strategy = ((rollout.get("spec") or {}).get("strategy") or {}).get("type")
    if role == "main" and strategy == "BlueGreen":
        return "active"
    return role


def _role_rank(rollout: Mapping[str, Any], svc: Mapping[str, Any]) -> int:
    strategy = ((rollout.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"
    roles = [r.value for r in STRATEGY_SERVICE_ROLES.get(str(strategy), ())]
    role = _labels(svc).get(LABEL_SERVICE_ROLE, "")
    return roles.index(role) if role in roles else len(roles)
