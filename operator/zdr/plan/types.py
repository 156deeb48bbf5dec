"""The planner's contract: what it is given (``Observed``) and what it decides (``Plan``).

``observe.py`` builds an ``Observed`` from the cluster, ``plan()`` turns
``(spec, status, Observed, now)`` into a ``Plan``, ``apply.py`` carries the ``Plan`` out. The
planner reads nothing else, so a restarted operator that observes the same cluster and reads the
same status makes the same decision.

Vocabulary:

- a *revision* is a pod template hash (``zdr.io/revision``); each has one Deployment
  ``<rollout>-<hash>`` that is only ever scaled;
- the *update revision* is the hash of the current ``spec.template`` (after drain injection);
- the *stable revision* serves when no rollout runs (``status.stableRevision``);
- a pod *serves* a Service when it is a ready endpoint of that Service's EndpointSlices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from zdr.api import (
    ALL_REVISIONS,
    Command,
    ServiceRole,
    ServiceTarget,
    ZeroDowntimeRolloutSpec,
    ZeroDowntimeRolloutStatus,
)

__all__ = [
    "ALL_REVISIONS",
    "Event",
    "Observed",
    "ObservedRevision",
    "ObservedService",
    "Plan",
    "ServiceRole",
    "ServiceTarget",
]


@dataclass(frozen=True)
class ObservedRevision:
    """One revision's Deployment and its pods, as observed.

    Counts come from the Deployment (``spec.replicas`` and ``status``); ``ready_endpoints`` from
    the EndpointSlices of each Service of the rollout: for each role, how many endpoints are
    ``ready`` (serving and not terminating) and belong to a pod of this revision (resolve each
    endpoint's ``targetRef`` pod and read its ``zdr.io/revision`` label). A role missing from the
    mapping counts as 0.
    """

    name: str
    """The revision hash (label ``zdr.io/revision``)."""
    spec_replicas: int = 0
    """The Deployment's ``spec.replicas``."""
    replicas: int = 0
    """``status.replicas``: pods that exist and are not terminating."""
    ready_replicas: int = 0
    """``status.readyReplicas``."""
    available_replicas: int = 0
    """``status.availableReplicas`` (ready for at least minReadySeconds)."""
    updated_replicas: int = 0
    """``status.updatedReplicas`` (kept for display; a revision's Deployment never changes template)."""
    synced: bool = True
    """``status.observedGeneration >= metadata.generation``: the counts above are current."""
    created_at: datetime | None = None
    """The Deployment's ``metadata.creationTimestamp``."""
    restarts: int = 0
    """Container restarts summed over the revision's pods (for health gates)."""
    crash_looping: int = 0
    """Pods with a container waiting in CrashLoopBackOff (for health gates)."""
    most_restarts: int = 0
    """The most container restarts of any one pod (its containers' restartCount summed)."""
    unready_since: datetime | None = None
    """Since when the longest-unready pod (not terminating) has not been ready: its Ready condition's
    lastTransitionTime, or its creation when it has none. None: every pod is ready."""
    terminating: int = 0
    """Pods being deleted (draining: they may still answer requests that were on their way)."""
    restarted_at: str | None = None
    """The ``zdr.io/restartedAt`` annotation of the Deployment's pod template (set by ``restart``)."""
    ready_endpoints: Mapping[ServiceRole, int] = field(default_factory=dict)
    """Per Service role: ready endpoints that are pods of this revision."""

    def endpoints(self, role: ServiceRole) -> int:
        return self.ready_endpoints.get(role, 0)


@dataclass(frozen=True)
class ObservedService:
    """A Service of the rollout that exists (owned, with label ``zdr.io/service-role``)."""

    name: str
    target: ServiceTarget | None
    """What its selector selects (see ``selector_target``); None for a selector zdr does not write."""


@dataclass(frozen=True)
class Observed:
    """Everything the planner knows about the cluster, read in one pass."""

    generation: int
    """The rollout's ``metadata.generation``."""
    revisions: Mapping[str, ObservedRevision] = field(default_factory=dict)
    """Every Deployment of this rollout (not being deleted), by revision hash."""
    services: Mapping[ServiceRole, ObservedService] = field(default_factory=dict)
    """Every Service of this rollout that exists, by role."""
    command: Command | None = None
    """The request in the ``zdr.io/command`` annotation, parsed with ``zdr.api.parse_command``."""
    command_error: str | None = None
    """Set instead of ``command`` when the annotation exists but cannot be read."""

    def revision(self, name: str) -> ObservedRevision:
        """The observed revision, or an empty one (no Deployment yet)."""
        return self.revisions.get(name) or ObservedRevision(name=name)

    def target(self, role: ServiceRole) -> ServiceTarget | None:
        service = self.services.get(role)
        return service.target if service else None


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit on the rollout."""

    type: Literal["Normal", "Warning"]
    reason: str
    """CamelCase, no spaces."""
    message: str
    """One line."""


@dataclass(frozen=True)
class Plan:
    """What to change, and the status to write. Applying it twice is harmless.

    Order for ``apply.py``: create/scale Deployments, then write Services, then delete, then
    write ``status`` (a merge patch from ``status.to_patch()``) and emit ``events``.
    Any order converges, because the next plan recomputes from what was observed.
    """

    spec: ZeroDowntimeRolloutSpec | None
    """The validated spec (defaults resolved) to build children from; None when refused."""
    update_revision: str | None
    """Hash of the current template: the only revision whose Deployment may be created."""
    replicas: Mapping[str, int] = field(default_factory=dict)
    """Desired ``spec.replicas`` per revision hash. A listed revision without a Deployment is
    created (only ``update_revision`` can be). Unlisted revisions are left as they are."""
    delete: tuple[str, ...] = ()
    """Revisions whose Deployments to delete (beyond ``revisionHistoryLimit``; all at 0 pods)."""
    services: Mapping[ServiceRole, ServiceTarget] = field(default_factory=dict)
    """Desired selector target per Service role; a missing Service is created. A target equal to
    the observed one is no change. Roles not listed and not in ``delete_services`` are left alone."""
    delete_services: tuple[ServiceRole, ...] = ()
    """Owned Services the strategy no longer uses (e.g. after a strategy change)."""
    status: ZeroDowntimeRolloutStatus = field(default_factory=ZeroDowntimeRolloutStatus)
    """The complete new status."""
    restarts: Mapping[str, str] = field(default_factory=dict)
    """Per revision: the ``zdr.io/restartedAt`` value its Deployment's pod template must carry (a
    changed value makes the Deployment replace its pods one at a time). Unlisted: left as it is."""
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    """Seconds after which to plan again although nothing changed (a pause, a delay or a deadline
    ends then). None: only react to watch events."""

    @property
    def touches_nothing(self) -> bool:
        """True when no child is created, scaled, switched or deleted."""
        return not (self.replicas or self.delete or self.services or self.delete_services or self.restarts)
