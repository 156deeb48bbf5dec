"""A small, deterministic model of the cluster for planner tests.

Each ``tick`` applies the last plan the way Deployments, kubelet and the EndpointSlice
controller would, one step behind: pods are created at once but become ready ``ready_after``
ticks later; EndpointSlices reflect the readiness and selectors of the previous tick; a
scaled-down ReplicaSet removes not-ready pods first, then the youngest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from zdr.api import ServiceRole, ZeroDowntimeRolloutStatus, parse_spec
from zdr.plan import Observed, ObservedRevision, ObservedService, Plan, ServiceTarget, plan
from zdr.plan.common import pods

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Pod:
    age: int = 0
    ready: bool = False
    broken: bool = False


@dataclass
class Revision:
    spec: int = 0
    pods: list[Pod] = field(default_factory=list)
    created_at: datetime = START


@dataclass
class Cluster:
    """The children of one rollout, evolving under the plans it is given."""

    ready_after: int = 1
    generation: int = 1
    revisions: dict[str, Revision] = field(default_factory=dict)
    services: dict[ServiceRole, ServiceTarget | None] = field(default_factory=dict)
    endpoints: dict[str, dict[ServiceRole, int]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)
    crashing: set[str] = field(default_factory=set)
    """Revisions whose pods crash: never ready, in CrashLoopBackOff from their second tick, one
    restart every two ticks."""
    restarted: dict[str, str] = field(default_factory=dict)
    """The restartedAt annotation each revision's Deployment carries."""
    now: datetime = START
    status: ZeroDowntimeRolloutStatus = field(default_factory=ZeroDowntimeRolloutStatus)
    plans: list[Plan] = field(default_factory=list)
    history: list[Observed] = field(default_factory=list)

    def observe(self, command: Any = None) -> Observed:
        revisions = {}
        for name, rev in self.revisions.items():
            ready = sum(1 for p in rev.pods if p.ready)
            unready = [p.age for p in rev.pods if not p.ready]
            crashing = name in self.crashing
            revisions[name] = ObservedRevision(
                name=name,
                spec_replicas=rev.spec,
                replicas=len(rev.pods),
                ready_replicas=ready,
                available_replicas=ready,
                updated_replicas=len(rev.pods),
                created_at=rev.created_at,
                ready_endpoints=dict(self.endpoints.get(name, {})),
                crash_looping=sum(1 for p in rev.pods if p.age >= 2) if crashing else 0,
                most_restarts=max((p.age // 2 for p in rev.pods), default=0) if crashing else 0,
                restarts=sum(p.age // 2 for p in rev.pods) if crashing else 0,
                unready_since=self.now - timedelta(seconds=max(unready)) if unready else None,
                restarted_at=self.restarted.get(name),
            )
        services = {
            role: ObservedService(name=role.value, target=target) for role, target in self.services.items()
        }
        return Observed(generation=self.generation, revisions=revisions, services=services, command=command)

    def step(self, spec: dict[str, Any], command: Any = None, seconds: float = 1.0) -> Plan:
        """Plan on the current state, apply it, and let the cluster move one tick."""
        observed = self.observe(command)
        self.history.append(observed)
        result = plan(spec, self.status, observed, self.now)
        self.plans.append(result)
        self.apply(result)
        self.tick(seconds)
        return result

    def apply(self, result: Plan) -> None:
        for name, count in result.replicas.items():
            rev = self.revisions.get(name)
            if rev is None:
                assert name == result.update_revision, "only the update revision may be created"
                rev = self.revisions[name] = Revision(created_at=self.now)
            rev.spec = count
        for name in result.delete:
            del self.revisions[name]
            self.endpoints.pop(name, None)
        for role, target in result.services.items():
            self.services[role] = target
        for name, value in result.restarts.items():
            if name in self.revisions and self.restarted.get(name) != value:
                # The Deployment replaces its pods one at a time, a new one ready first; modelled
                # as the whole set replaced at once by ready pods (the planner only waits for it).
                self.restarted[name] = value
                self.revisions[name].pods = [
                    Pod(age=self.ready_after, ready=True) for _ in self.revisions[name].pods
                ]
        for role in result.delete_services:
            self.services.pop(role, None)
        self.status = result.status

    def tick(self, seconds: float = 1.0) -> None:
        # EndpointSlices catch up with the readiness and selectors as they were before this tick.
        endpoints: dict[str, dict[ServiceRole, int]] = {}
        for name, rev in self.revisions.items():
            ready = sum(1 for p in rev.pods if p.ready)
            endpoints[name] = {
                role: ready
                for role, target in self.services.items()
                if target is not None and (target.revision is None or target.revision == name)
            }
        self.endpoints = endpoints
        for name, rev in self.revisions.items():
            for pod in rev.pods:
                pod.age += 1
                pod.ready = not pod.broken and name not in self.crashing and pod.age >= self.ready_after
            while len(rev.pods) > rev.spec:
                victim = next((p for p in rev.pods if not p.ready), None) or min(
                    rev.pods, key=lambda p: p.age
                )
                rev.pods.remove(victim)
            while len(rev.pods) < rev.spec:
                rev.pods.append(Pod(broken=name in self.broken))
        self.now += timedelta(seconds=seconds)

    def serving(self, role: ServiceRole = ServiceRole.MAIN) -> int:
        return sum(min(ep.get(role, 0), self.revisions[n].spec) for n, ep in self.endpoints.items())

    def total_pods(self) -> int:
        return sum(pods(rev) for rev in self.observe().revisions.values())

    def run(self, spec: dict[str, Any], *, limit: int = 200, until: str = "Healthy", **kwargs: Any) -> Plan:
        """Step until the phase is ``until`` twice in a row (status settled), or fail."""
        last = None
        for _ in range(limit):
            result = self.step(spec, **kwargs)
            if result.status.phase == until and last == until:
                return result
            last = result.status.phase
        raise AssertionError(f"not {until} after {limit} steps: {self.status.phase}: {self.status.message}")

    def wait(self, spec: dict[str, Any], seconds: int, **kwargs: Any) -> Plan:
        """Step for ``seconds`` simulated seconds (one per tick)."""
        result = self.step(spec, **kwargs)
        for _ in range(seconds - 1):
            result = self.step(spec, **kwargs)
        return result


def pods_in_traffic(observed: Observed) -> int:
    """Pods (existing or requested) of the revisions the MAIN Service selects."""
    main = observed.target(ServiceRole.MAIN)
    return sum(
        pods(rev)
        for name, rev in observed.revisions.items()
        if main is None or main.revision is None or main.revision == name
    )


def template(image: str = "example/web:1", *, probe: bool = True, ports: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": image}
    if ports:
        container["ports"] = [{"name": "http", "containerPort": 8080}]
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/ready", "port": "http"}}
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}


def make_spec(
    replicas: int = 4, image: str = "example/web:1", strategy: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas, "template": template(image)}
    if strategy is not None:
        spec["strategy"] = strategy
    spec.update(extra)
    parse_spec(spec)
    return spec
