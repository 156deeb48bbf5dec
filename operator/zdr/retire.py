"""Endpoint-first retirement: a pod leaves zdr's Services before its Deployment removes it.

The planner decides how many pods each revision keeps. Lowering a Deployment's replicas makes
its ReplicaSet delete pods at once, and a deleted pod then depends on its preStop sleep outlasting
the EndpointSlice controller plus every kube-proxy before they stop sending it new connections;
on a busy node that lag has no bound. So a scale-down takes two steps, each decided here from
what is observed, never from a timer alone:

1. the pods that will go are chosen (the ones the ReplicaSet removes first: not ready, then
   those already chosen, then the newest) and taken out of the Services: their
   ``zdr.io/serving`` label turns "false" (zdr's Services select "true"; the Deployment's
   selector does not include the label, so the ReplicaSet keeps them) and a low
   ``controller.kubernetes.io/pod-deletion-cost`` makes the ReplicaSet delete exactly them;
2. once those pods are seen carrying the change and no EndpointSlice of zdr's Services lists
   them any more, the Deployment is scaled down. The preStop sleep then only has to cover the
   proxies' own lag, measured from a removal that already happened.

Pods that are not ready go directly (they take no traffic), and so do the pods of a revision
going to 0 that no EndpointSlice lists any more (a Service was switched away from it: the
revision a blue-green promotion or an undo leaves drains one reconcile sooner), and pods created
before the label existed (``labelled`` False; their Services do not select it either). A pod still listed
``ENDPOINT_WAIT_SECONDS`` after it was taken out goes anyway (the EndpointSlice controller is
down or far behind), with a Warning event. A revision the planner gives pods back (an abort, an
undo, a larger spec.replicas) gets its chosen pods back into the Services first.

Pure: observed pods and the planner's replicas in, writes out. While chosen pods wait, the
planner sees the revision at its lowered size (``RevisionPods.planned_replicas``), so it does not
undo its own decision because the chosen pods no longer count as endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from zdr.plan.types import Event

ENDPOINT_WAIT_SECONDS = 30.0
"""Longest wait for a chosen pod to leave every EndpointSlice before it is removed anyway."""
DELETION_COST = "-1000"
"""pod-deletion-cost of a chosen pod: below the default 0 of every other pod."""


@dataclass(frozen=True)
class PodState:
    name: str
    ready: bool
    labelled: bool = True
    """Carries ``zdr.io/serving`` at all."""
    retiring_since: datetime | None = None
    """When it was chosen to go (its ``zdr.io/retiring-since``); None: not chosen."""
    listed: bool = False
    """In an EndpointSlice of a zdr Service that selects ``zdr.io/serving``, in any condition."""
    created_at: datetime | None = None

    @property
    def retiring(self) -> bool:
        return self.retiring_since is not None


@dataclass(frozen=True)
class RevisionPods:
    """A revision's Deployment size and its pods that are not terminating."""

    spec_replicas: int
    pods: tuple[PodState, ...] = ()

    @property
    def pending(self) -> int:
        """Chosen pods the Deployment's size does not remove yet."""
        chosen = sum(1 for p in self.pods if p.retiring)
        return max(0, chosen - max(0, len(self.pods) - self.spec_replicas))

    @property
    def planned_replicas(self) -> int:
        """The size the planner sees: chosen pods count as gone."""
        return self.spec_replicas - self.pending


@dataclass(frozen=True)
class PodPatch:
    name: str
    retire: bool
    """True: take it out of the Services; False: put it back."""
    labelled: bool


@dataclass(frozen=True)
class Retirement:
    replicas: dict[str, int]
    """What each revision's Deployment is scaled to in this pass."""
    patches: tuple[PodPatch, ...] = ()
    waiting: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per revision held at its size: the chosen pods not yet out of every EndpointSlice."""
    removal_seconds: tuple[float, ...] = ()
    """For pods released in this pass: from being chosen to being out of every EndpointSlice."""
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


def _order(pod: PodState) -> tuple[bool, bool, float, str]:
    """The ReplicaSet's removal order as zdr steers it: not ready, chosen, newest first."""
    created = -pod.created_at.timestamp() if pod.created_at else 0.0
    return (pod.ready, not pod.retiring, created, pod.name)


def retire(revisions: Mapping[str, RevisionPods], desired: Mapping[str, int], now: datetime) -> Retirement:
    """The writes that carry out ``desired`` (the planner's replicas) endpoint-first."""
    replicas = dict(desired)
    patches: list[PodPatch] = []
    waiting: dict[str, tuple[str, ...]] = {}
    removal: list[float] = []
    events: list[Event] = []
    requeue: float | None = None
    for name, rev in sorted(revisions.items()):
        want = desired.get(name, rev.planned_replicas)
        pods = sorted(rev.pods, key=_order)
        go = max(0, len(pods) - want)
        chosen, kept = pods[:go], pods[go:]
        patches += [PodPatch(p.name, False, p.labelled) for p in kept if p.retiring]
        if want >= rev.spec_replicas:  # nothing more to remove than the Deployment's size already does
            if name in desired:
                replicas[name] = want
            continue
        held: list[str] = []
        for pod in chosen:
            if not pod.ready:
                continue
            if not pod.retiring:
                if want == 0 and not pod.listed:
                    # Every pod goes (no choice for the ReplicaSet to steer) and no Service lists
                    # this one (its revision was switched away from): nothing to wait for.
                    continue
                patches.append(PodPatch(pod.name, True, pod.labelled))
                held.append(pod.name)  # the ReplicaSet must see its deletion cost first
                continue
            assert pod.retiring_since is not None
            waited = (now - pod.retiring_since).total_seconds()
            if not pod.listed:
                continue
            if waited < ENDPOINT_WAIT_SECONDS:
                held.append(pod.name)
                left = ENDPOINT_WAIT_SECONDS - waited
                requeue = left if requeue is None else min(requeue, left)
            else:
                events.append(
                    Event(
                        "Warning",
                        "EndpointsSlow",
                        f"pod {pod.name} still listed by an EndpointSlice {waited:.0f}s after it left "
                        "the Services; removing it anyway (its preStop drain still applies)",
                    )
                )
        if held:
            replicas[name] = rev.spec_replicas
            waiting[name] = tuple(held)
            continue
        replicas[name] = want
        removal += [
            (now - p.retiring_since).total_seconds()
            for p in chosen
            if p.ready and p.retiring_since is not None and p.labelled
        ]
    return Retirement(
        replicas=replicas,
        patches=tuple(patches),
        waiting=waiting,
        removal_seconds=tuple(removal),
        events=tuple(events),
        requeue_after=requeue,
    )
