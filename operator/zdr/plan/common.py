"""What every strategy shares: capacity arithmetic, Service gating, the rollout context, status.

The invariants live here, so each strategy only chooses targets:

- the surge ceiling: a plan that scales anything up keeps ``sum(max(desired, pods))`` within
  ``replicas + maxSurge`` (``approach``);
- the availability floor: pods that serve are removed only while the pods serving through the
  MAIN Service stay at or above ``replicas - maxUnavailable`` (``approach``); pods that are not
  ready may always go (a ReplicaSet removes not-ready pods first);
- endpoint gating: a Service is pointed at a revision only when every pod of that revision is a
  ready endpoint of a Service already selecting it, or (when none does) a ready pod
  (``choose_target``); a revision a pinned Service selects keeps its pods (``keep_for_services``).

A pod *serves* when it is available, a ready endpoint of the Service in question and within its
Deployment's ``spec.replicas`` (pods above it are about to be removed and are not counted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from zdr.api import (
    AbortRecord,
    AnalysisCheck,
    AnalysisResult,
    CommandRecord,
    Condition,
    ConditionStatus,
    Phase,
    RestartRecord,
    RevisionRecord,
    RollbackRecord,
    ServiceRole,
    ZeroDowntimeRolloutSpec,
    ZeroDowntimeRolloutStatus,
    resolve_int_or_percent,
)
from zdr.plan.types import ALL_REVISIONS, Event, Observed, ObservedRevision, ServiceTarget


# ---------------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------------
def max_surge(value: int | str, replicas: int) -> int:
    """Extra pods allowed above ``replicas``; percentages round up (as Kubernetes does)."""
    return resolve_int_or_percent(value, replicas, round_up=True)


def max_unavailable(value: int | str, replicas: int) -> int:
    """Serving pods allowed below ``replicas``; percentages round down, never more than replicas."""
    return min(replicas, resolve_int_or_percent(value, replicas, round_up=False))


def pods(rev: ObservedRevision) -> int:
    """Pods a revision has or is about to have (spec ahead of status on scale-up, behind on scale-down)."""
    return max(rev.spec_replicas, rev.replicas)


def serving(rev: ObservedRevision, role: ServiceRole = ServiceRole.MAIN) -> int:
    """Pods of ``rev`` that serve ``role``: available, ready endpoints, and within spec.replicas."""
    return max(0, min(rev.available_replicas, rev.endpoints(role), rev.spec_replicas))


def not_ready(rev: ObservedRevision) -> int:
    """Pods within spec.replicas that are not ready (missing ones included): removable for free."""
    return rev.spec_replicas - max(0, min(rev.ready_replicas, rev.spec_replicas))


def weight_replicas(replicas: int, weight: int) -> int:
    """Pods of the new revision for a canary weight: at least one for any weight above 0."""
    if weight <= 0:
        return 0
    if weight >= 100:
        return replicas
    return min(replicas, -(-replicas * weight // 100))


def approach(
    revisions: Mapping[str, ObservedRevision],
    targets: Mapping[str, int],
    *,
    ceiling: int | None,
    floor: int,
    scale_up_order: Sequence[str],
    scale_down_order: Sequence[str],
) -> dict[str, int]:
    """Desired replicas that move each revision toward its target within the ceiling and the floor.

    Scale-ups come first, limited by the room below ``ceiling`` (None: no ceiling) counted on the
    pods that exist now, so pods being removed in this same plan do not make room before they
    are gone. Scale-downs remove not-ready pods freely, every pod of a revision none of whose pods
    serves through MAIN (out of traffic), and serving pods only while the pods serving through
    MAIN stay at or above ``floor``. Revisions without a target keep their size.
    """
    desired = {name: rev.spec_replicas for name, rev in revisions.items()}
    for name in targets:
        desired.setdefault(name, 0)
    empty = ObservedRevision(name="")
    total = sum(pods(rev) for rev in revisions.values())
    for name in scale_up_order:
        target = targets.get(name)
        if target is None or target <= desired[name]:
            continue
        rev = revisions.get(name, empty)
        current_pods = pods(rev)
        allowed = target if ceiling is None else min(target, ceiling - (total - current_pods))
        if allowed > desired[name]:
            desired[name] = allowed
            total += max(allowed, rev.replicas) - current_pods
    budget = sum(serving(rev) for rev in revisions.values()) - floor
    for name in scale_down_order:
        target = targets.get(name)
        if target is None or target >= desired[name]:
            continue
        rev = revisions.get(name, empty)
        wanted = desired[name] - target
        free = wanted if serving(rev) == 0 else min(wanted, not_ready(rev))
        paid = min(wanted - free, max(0, budget))
        desired[name] -= free + paid
        budget -= paid
    return desired


Targets = dict[ServiceRole, ServiceTarget | None]
"""Service targets a strategy decides; None leaves a Service as it is."""


# ---------------------------------------------------------------------------------------------
# The rollout context
# ---------------------------------------------------------------------------------------------
@dataclass
class Context:
    """One planning pass: the inputs plus what the common steps derived from them."""

    spec: ZeroDowntimeRolloutSpec
    previous: ZeroDowntimeRolloutStatus
    observed: Observed
    now: datetime
    update: str
    """Hash of the current template."""
    stable: str | None
    """The revision that serves outside a rollout; None before the first one ever served."""
    records: dict[str, RevisionRecord]
    paused: bool
    """spec.paused or a pause command: hold every revision where it is."""
    promote: bool = False
    """A promote command to act on in this pass."""
    promote_full: bool = False
    paused_by_command: bool = False
    last_command: CommandRecord | None = None
    abort: AbortRecord | None = None
    """Set while the update revision is aborted: traffic goes back to the stable revision."""
    rollback: RollbackRecord | None = None
    """Set while an undo holds the cluster on an earlier revision than the template's."""
    restart: RestartRecord | None = None
    previous_results: dict[tuple[int | None, str], AnalysisResult] = field(default_factory=dict)
    """Analysis results of the update revision as measured so far, by (step, check name)."""
    results: dict[tuple[int | None, str], AnalysisResult] = field(default_factory=dict)
    """The checks active in this pass (what status.analysis will hold)."""
    checks: dict[tuple[int | None, str], AnalysisCheck] = field(default_factory=dict)
    """The definitions of the active checks."""
    wake_after: float | None = None
    """The soonest a time-based gate (not the strategy) needs another look."""
    fresh_start: bool = False
    """A retry: the progress deadline counts from now."""
    events: list[Event] = field(default_factory=list)

    @property
    def replicas(self) -> int:
        return self.spec.replicas

    @property
    def in_rollout(self) -> bool:
        return self.stable is not None and self.stable != self.update

    @property
    def shares_main(self) -> bool:
        """RollingUpdate and Canary: the MAIN Service selects every pod of the rollout (traffic follows
        ready pods), except while a revision is kept out of traffic (warm standby, a revert)."""
        return self.spec.strategy.type != "BlueGreen"

    @property
    def floor(self) -> int:
        """Pods that must keep serving through MAIN while pods are replaced."""
        if self.spec.strategy.type == "RollingUpdate":
            params = self.spec.strategy.effective_rolling_update
            return self.replicas - max_unavailable(params.max_unavailable, self.replicas)
        return self.replicas

    @property
    def warm_window(self) -> int:
        """Seconds a replaced stable revision is kept at full size, out of traffic (scaleDownDelaySeconds)."""
        strategy = self.spec.strategy
        if strategy.type == "RollingUpdate":
            return strategy.effective_rolling_update.scale_down_delay_seconds
        if strategy.type == "BlueGreen":
            return strategy.effective_blue_green.scale_down_delay_seconds
        return strategy.effective_canary.scale_down_delay_seconds

    def warm_left(self, name: str) -> float | None:
        """Seconds ``name`` stays warm (a replaced stable revision within the window); None if not warm."""
        retired = self.retired_for(name)
        if retired is None or retired >= self.warm_window:
            return None
        if self.abort is not None and self.abort.revision == name:
            return None
        return self.warm_window - retired

    def latest_retired(self, names: Iterable[str]) -> str | None:
        """The most recently replaced stable revision among ``names`` (the one a warm standby keeps)."""
        retired = [
            (r.retired_at, r.revision, r.name) for n in names if (r := self.records.get(n)) and r.retired_at
        ]
        return max(retired)[2] if retired else None

    def wake(self, seconds: float | None) -> None:
        self.wake_after = earliest(self.wake_after, seconds)

    def check(self, step: int | None, check: AnalysisCheck) -> AnalysisResult:
        """The result of ``check`` (background: step None) against the update revision, kept active."""
        key = (step, check.name)
        result = self.previous_results.get(key) or AnalysisResult(
            name=check.name, step=step, revision=self.update, started_at=self.now
        )
        self.results[key] = result
        self.checks[key] = check
        return result

    def rev(self, name: str) -> ObservedRevision:
        return self.observed.revision(name)

    def number(self, name: str | None) -> int:
        record = self.records.get(name) if name else None
        return record.revision if record else 0

    def describe(self, name: str | None) -> str:
        return f"revision {self.number(name)} ({name})" if name else "no revision"

    def others(self) -> list[str]:
        """Observed revisions other than update and stable, oldest first."""
        rest = [name for name in self.observed.revisions if name not in (self.update, self.stable)]
        return sorted(rest, key=lambda name: (self.number(name), name))

    def retire(self, name: str) -> None:
        """Record when ``name`` stopped being the serving revision (start of its scale-down delay);
        its pods took traffic until now, so it is not drained."""
        record = self.records.get(name)
        if record is not None and record.retired_at is None:
            self.records[name] = record.model_copy(update={"retired_at": self.now, "drained_at": None})

    def drained(self, name: str) -> bool:
        """Every pod of ``name`` that took traffic before it was retired is gone: any pod it has now
        is a fresh one (``drained_at``, recorded the first time it was seen without a pod)."""
        record = self.records.get(name)
        return record is not None and record.retired_at is not None and record.drained_at is not None

    def retired_for(self, name: str) -> float | None:
        """Seconds since ``name`` was retired, None if it was not."""
        record = self.records.get(name)
        if record is None or record.retired_at is None:
            return None
        return (self.now - record.retired_at).total_seconds()

    def emit(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(Event("Warning" if warning else "Normal", reason, message))

    def hold(self) -> dict[str, int]:
        """Every existing revision at its current size (a paused rollout)."""
        return {name: rev.spec_replicas for name, rev in self.observed.revisions.items()}


@dataclass
class Decision:
    """A strategy's answer for one pass (``plan`` turns it into a ``Plan`` and a status)."""

    replicas: dict[str, int]
    services: Mapping[ServiceRole, ServiceTarget | None]
    """Desired targets; None leaves that Service as it is."""
    stable: str | None
    phase: Phase
    message: str
    complete: bool
    """The rollout reached its end state: the update revision is stable and serves every replica."""
    paused_reason: str | None = None
    step_index: int | None = None
    step_started_at: datetime | None = None
    canary_weight: int | None = None
    preview_ready_at: datetime | None = None
    promote_requested: bool | None = None
    requeue_after: float | None = None
    floor: int | None = None
    """Serving pods below which the rollout is not Available (default: replicas)."""
    stalled: tuple[str, str] | None = None
    """(reason, message): the rollout will not reach spec without a human (aborted, rolled back)."""
    reconciling: bool = False
    """With ``stalled``: pods or Services are still moving."""
    standby: tuple[str, ...] = ()
    """Revisions held as a warm standby: fresh pods out of traffic, not counted as serving."""


def earliest(*delays: float | None) -> float | None:
    """The smallest of the given requeue delays (None ignored)."""
    values = [max(0.0, d) for d in delays if d is not None]
    return min(values) if values else None


def seconds_until(now: datetime, start: datetime | None, seconds: float) -> float:
    """Seconds left until ``start + seconds`` (0 when past; 0 when ``start`` is None)."""
    if start is None:
        return 0.0
    return max(0.0, (start + timedelta(seconds=seconds) - now).total_seconds())


# ---------------------------------------------------------------------------------------------
# Service gating
# ---------------------------------------------------------------------------------------------
def selecting_roles(observed: Observed, name: str) -> list[ServiceRole]:
    """Observed Services whose selector includes the pods of revision ``name``."""
    return [
        role
        for role, svc in observed.services.items()
        if svc.target is not None and (svc.target.is_all or svc.target.revision == name)
    ]


def evidence(observed: Observed, name: str) -> int:
    """Pods of ``name`` known to serve: ready endpoints of a Service that selects them already, or,
    when no Service selects them yet, available pods (endpoints appear only once selected)."""
    rev = observed.revision(name)
    ready = max(0, min(rev.available_replicas, rev.spec_replicas))
    roles = selecting_roles(observed, name)
    if not roles:
        return ready
    return min(ready, max(rev.endpoints(role) for role in roles))


def can_select(observed: Observed, name: str) -> bool:
    """A Service may be pointed at ``name``: it exists and every one of its pods serves."""
    if name not in observed.revisions:
        return False
    return evidence(observed, name) >= max(1, observed.revision(name).spec_replicas)


def service_endpoints(observed: Observed, role: ServiceRole) -> int:
    """Ready endpoints the Service of ``role`` has now, over all revisions."""
    return sum(rev.endpoints(role) for rev in observed.revisions.values())


def choose_target(
    observed: Observed, role: ServiceRole, wanted: ServiceTarget, fallbacks: Iterable[str] = ()
) -> ServiceTarget | None:
    """Where the Service of ``role`` should point in this pass.

    ``wanted`` when the switch is safe: it is the current target, every pod of the rollout, or a
    revision whose pods all serve, or the Service does not exist or serves nothing now (pointing
    it elsewhere then cannot take anything away). Otherwise the first fallback revision that is
    current or could be selected safely; otherwise the current target stays.
    None: leave the Service as it is (its selector is not one zdr writes and it still serves).
    """
    current = observed.target(role)
    if wanted == current or wanted.is_all or (wanted.revision and can_select(observed, wanted.revision)):
        return wanted
    if role not in observed.services or service_endpoints(observed, role) == 0:
        return wanted
    for name in fallbacks:
        target = ServiceTarget.pinned(name)
        if target == current or can_select(observed, name):
            return target
    return current


def keep_for_services(ctx: Context, planned: Mapping[ServiceRole, ServiceTarget | None], name: str) -> int:
    """Pods revision ``name`` must keep because a pinned Service selects it (now or as planned).

    The MAIN and PREVIEW Services serve whole audiences: their revision keeps its size. The
    canary and stable Services are for direct tests: one pod keeps them answering. Nothing is
    kept when the rollout is scaled to zero.
    """
    if ctx.replicas == 0:
        return 0
    observed = ctx.observed
    spec = observed.revision(name).spec_replicas
    roles = {role for role, target in planned.items() if target is not None and target.revision == name}
    roles |= {role for role, svc in observed.services.items() if svc.target and svc.target.revision == name}
    if roles & {ServiceRole.MAIN, ServiceRole.PREVIEW}:
        return spec
    if roles:
        return min(spec, 1)
    return 0


def main_serving(observed: Observed) -> int:
    """Pods serving through the MAIN Service, over all revisions."""
    return sum(serving(rev) for rev in observed.revisions.values())


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int,
) -> None:
    """Put a condition into ``conditions``; lastTransitionTime moves only when status changes."""
    for i, existing in enumerate(conditions):
        if existing.type == type_:
            moved = existing.status != status
            conditions[i] = Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now if moved else existing.last_transition_time,
                observed_generation=generation,
            )
            return
    conditions.append(
        Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=now,
            observed_generation=generation,
        )
    )


def holds_pods(ctx: Context, name: str) -> bool:
    """The revision has pods, or will have, or still has some draining."""
    rev = ctx.rev(name)
    return rev.spec_replicas > 0 or rev.replicas > 0 or rev.terminating > 0


def settle_shared(ctx: Context, *, ceiling: int, services: Targets) -> Decision:
    """RollingUpdate and Canary outside a rollout: the update revision at full size, and the
    previous stable revision kept warm for scaleDownDelaySeconds, out of traffic.

    Warm standby: the previous revision's pods that took traffic drain first (their kept-alive
    connections and WebSockets end with the app's clean close, and clients reconnect to the
    update revision); once it is drained (``Context.drained``) MAIN is pinned to the update
    revision (once all of its pods serve), and only then is the previous revision brought back to
    full size with fresh pods that never take traffic, ready for an undo that moves all traffic at
    once. So pods seen while MAIN is pinned are always fresh ones. After the window they go (out
    of traffic, so all at once), and once no other revision has pods MAIN selects every pod of
    the rollout again. ``services`` are the strategy's other Services; MAIN is decided here.
    """
    replicas, update, observed = ctx.replicas, ctx.update, ctx.observed
    others = ctx.others()
    warm_left = {name: ctx.warm_left(name) for name in others}
    latest = ctx.latest_retired(others)
    warm = [name for name in others if warm_left[name] is not None and name == latest]
    pinned = ServiceTarget(update)
    current = observed.target(ServiceRole.MAIN)
    if warm:
        # MAIN may already be pinned to the update revision while a warm revision still has pods that
        # took traffic (a revert to this template switched it): those drain before any standby.
        drained = all(ctx.drained(n) for n in warm)
        main = choose_target(observed, ServiceRole.MAIN, pinned) if drained else (current or ALL_REVISIONS)
    elif current == pinned and any(holds_pods(ctx, name) for name in others):
        main = current
    else:
        main = ALL_REVISIONS
    services = {**services, ServiceRole.MAIN: main}
    out_of_traffic = main == pinned and current == pinned
    targets = {update: replicas}
    requeue = None
    standby: list[str] = []
    for name in others:
        keep = keep_for_services(ctx, services, name)
        if name in warm:
            requeue = earliest(requeue, warm_left[name])
            if out_of_traffic and ctx.drained(name):
                targets[name] = max(replicas, keep)
                standby.append(name)
            else:
                targets[name] = keep  # drain the pods that took traffic
        else:
            targets[name] = keep
    in_traffic = {name: rev for name, rev in observed.revisions.items() if name not in standby}
    desired = approach(
        in_traffic,
        {name: n for name, n in targets.items() if name not in standby},
        ceiling=ceiling,
        floor=ctx.floor,
        scale_up_order=[update],
        scale_down_order=[*[n for n in others if n not in standby], update],
    )
    for name in standby:
        desired[name] = targets[name]
    new_serving = serving(ctx.rev(update))
    stable = ctx.stable
    if stable is None and new_serving >= replicas:
        stable = update
    # Pods already scaled away only finish their drain: they do not hold the rollout back.
    draining = [name for name in others if desired[name] > 0 and name not in standby]
    complete = stable == update and new_serving >= replicas and not draining
    if complete:
        message = f"{ctx.describe(update)} serves {replicas}/{replicas} pods"
        if standby:
            message += "; kept warm for rollback: " + ", ".join(ctx.describe(n) for n in standby)
    elif new_serving < replicas:
        message = f"waiting for pods of {ctx.describe(update)} to serve: {new_serving}/{replicas}"
    elif warm and not out_of_traffic:
        message = f"moving traffic to {ctx.describe(update)} alone before warming " + ", ".join(
            ctx.describe(n) for n in warm
        )
    else:
        message = f"draining {sum(ctx.rev(n).replicas for n in draining)} pods of previous revisions"
    return Decision(
        replicas=desired,
        services=services,
        stable=stable,
        phase="Healthy" if complete else "Progressing",
        message=message,
        complete=complete,
        requeue_after=requeue,
        floor=ctx.floor,
        standby=tuple(standby),
    )


def forward_main(ctx: Context) -> ServiceTarget:
    """MAIN during a RollingUpdate or Canary rollout: every pod of the rollout, except while MAIN
    is pinned to the stable revision and a revision kept out of traffic (warm, or left by a
    revert) still has pods: then it stays pinned until they are gone, so they never take traffic."""
    current = ctx.observed.target(ServiceRole.MAIN)
    kept_out = [name for name in ctx.observed.revisions if name not in (ctx.stable, ctx.update)]
    pinned_to_stable = ctx.stable is not None and current == ServiceTarget(ctx.stable)
    if pinned_to_stable and any(holds_pods(ctx, name) for name in kept_out):
        return ServiceTarget(ctx.stable)
    return ALL_REVISIONS


__all__ = [
    "ALL_REVISIONS",
    "Context",
    "Decision",
    "Targets",
    "approach",
    "can_select",
    "choose_target",
    "earliest",
    "evidence",
    "forward_main",
    "holds_pods",
    "keep_for_services",
    "main_serving",
    "max_surge",
    "max_unavailable",
    "not_ready",
    "pods",
    "seconds_until",
    "serving",
    "settle_shared",
    "set_condition",
    "weight_replicas",
]
