"""``kubectl zdr plan``: the steps a rollout will take, found by running the real planner.

Nothing here re-implements a strategy. ``simulate`` calls ``zdr.plan.plan`` again and again on a
model of the cluster in which everything goes right at once:

- every pod a plan asks for exists, is ready and is an endpoint of each Service selecting it by
  the next tick (one tick = one plan);
- a pod a plan removes is gone by the next tick;
- a pause waiting for ``promote`` gets one (the row says so), a timed pause or delay is waited
  out by moving the clock, ``spec.paused`` stops the simulation.

The starting point is the rollout as it is in the cluster (its status and the children
``zdr.observe`` reads), a first deployment when it does not exist yet, or, offline, a previous
revision that serves ``spec.replicas`` pods.

Each row is one plan that changed something (or a pause/wait), with the pods after it:
``old`` (every revision but the update one), ``new``, ``total``; ``serving`` = pods serving through
the main Service once the row is done; ``min serving`` = the fewest serving at any moment of the
row (pods being removed stop serving at once, new pods serve only at the row's end, a
Service switch moves to pods that were ready before it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from zdr.api import (
    CanaryStep,
    Command,
    RevisionRecord,
    ServiceRole,
    ZeroDowntimeRolloutSpec,
    ZeroDowntimeRolloutStatus,
    parse_status,
)
from zdr.plan import Observed, ObservedRevision, ObservedService, Plan, ServiceTarget, checks, plan
from zdr.plan.common import main_serving, max_surge, max_unavailable
from zdr.revision import revision_hash

MAX_TICKS = 2000
PREVIOUS = "previous"
"""Name of the assumed previous revision when the cluster is not consulted."""


@dataclass(frozen=True)
class Row:
    step: int
    action: str
    old_pods: int
    new_pods: int
    total: int
    serving: int
    min_serving: int


@dataclass
class Simulation:
    """The outcome of simulating one rollout."""

    name: str
    spec: ZeroDowntimeRolloutSpec
    start: str
    """Where the simulation started, in words."""
    rows: list[Row] = field(default_factory=list)
    outcome: str = ""
    healthy: bool = False
    floor: int = 0
    """Serving pods the strategy promises to keep (the Available minimum)."""
    notes: list[str] = field(default_factory=list)
    """What the simulation assumed beyond the model (analysis checks passing)."""

    @property
    def lowest_serving(self) -> int:
        during = [r.min_serving for r in self.rows[1:]]
        return min(during) if during else (self.rows[0].serving if self.rows else 0)

    @property
    def baseline(self) -> int:
        """Serving pods the rollout must not go below: the floor, or fewer if fewer served at the start."""
        return min(self.floor, self.rows[0].serving) if self.rows else 0

    @property
    def peak_pods(self) -> int:
        return max((r.total for r in self.rows), default=0)


# ---------------------------------------------------------------------------------------------
# Starting points
# ---------------------------------------------------------------------------------------------
def assumed_previous(
    spec: ZeroDowntimeRolloutSpec, now: datetime
) -> tuple[ZeroDowntimeRolloutStatus, Observed]:
    """A healthy previous revision serving ``spec.replicas`` pods behind every Service of the strategy."""
    replicas = spec.replicas
    pinned = ServiceTarget(PREVIOUS)
    targets: dict[ServiceRole, ServiceTarget] = {
        role: pinned for role in spec.service_roles if role != ServiceRole.MAIN
    }
    targets[ServiceRole.MAIN] = pinned if spec.strategy.type == "BlueGreen" else ServiceTarget()
    created = now - timedelta(hours=1)
    revision = ObservedRevision(
        name=PREVIOUS,
        spec_replicas=replicas,
        replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
        updated_replicas=replicas,
        created_at=created,
        ready_endpoints={role: replicas for role in targets},
    )
    observed = Observed(
        generation=2,
        revisions={PREVIOUS: revision},
        services={role: ObservedService(name=role.value, target=t) for role, t in targets.items()},
    )
    status = ZeroDowntimeRolloutStatus(
        observed_generation=1,
        phase="Healthy",
        stable_revision=PREVIOUS,
        update_revision=PREVIOUS,
        revisions=[RevisionRecord(name=PREVIOUS, revision=1, created_at=created)],
        replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
        updated_replicas=replicas,
    )
    return status, observed


def first_deployment() -> tuple[ZeroDowntimeRolloutStatus, Observed]:
    """Nothing exists yet."""
    return ZeroDowntimeRolloutStatus(), Observed(generation=1)


# ---------------------------------------------------------------------------------------------
# The model cluster
# ---------------------------------------------------------------------------------------------
@dataclass
class _Model:
    sizes: dict[str, int]
    created: dict[str, datetime]
    services: dict[ServiceRole, ServiceTarget | None]
    generation: int
    command: Command | None = None
    restarted: dict[str, str] = field(default_factory=dict)
    """The restartedAt annotation of each revision's pod template."""

    @classmethod
    def from_observed(cls, observed: Observed, now: datetime) -> _Model:
        return cls(
            sizes={name: rev.spec_replicas for name, rev in observed.revisions.items()},
            created={name: rev.created_at or now for name, rev in observed.revisions.items()},
            services={role: svc.target for role, svc in observed.services.items()},
            generation=observed.generation,
            command=observed.command,
            restarted={
                name: rev.restarted_at for name, rev in observed.revisions.items() if rev.restarted_at
            },
        )

    def apply(self, result: Plan, now: datetime) -> None:
        for name, count in result.replicas.items():
            if name not in self.sizes:
                self.created[name] = now
            self.sizes[name] = count
        for name in result.delete:
            self.sizes.pop(name, None)
            self.created.pop(name, None)
        for role, target in result.services.items():
            self.services[role] = target
        for role in result.delete_services:
            self.services.pop(role, None)
        self.restarted.update(result.restarts)

    def observe(self) -> Observed:
        revisions = {}
        for name, size in self.sizes.items():
            endpoints = {
                role: size
                for role, target in self.services.items()
                if target is not None and (target.revision is None or target.revision == name)
            }
            revisions[name] = ObservedRevision(
                name=name,
                spec_replicas=size,
                replicas=size,
                ready_replicas=size,
                available_replicas=size,
                updated_replicas=size,
                created_at=self.created[name],
                restarted_at=self.restarted.get(name),
                ready_endpoints=endpoints,
            )
        services = {role: ObservedService(name=role.value, target=t) for role, t in self.services.items()}
        return Observed(
            generation=self.generation, revisions=revisions, services=services, command=self.command
        )


# ---------------------------------------------------------------------------------------------
# Simulation
# ---------------------------------------------------------------------------------------------
def serving_floor(spec: ZeroDowntimeRolloutSpec) -> int:
    """Serving pods the strategy keeps while it replaces pods (the Available minimum)."""
    replicas = spec.replicas
    if spec.strategy.type == "RollingUpdate":
        params = spec.strategy.effective_rolling_update
        surge = max_surge(params.max_surge, replicas)
        unavailable = max_unavailable(params.max_unavailable, replicas)
        if surge == 0 and unavailable == 0:
            return replicas
        return replicas - unavailable
    return replicas


def _strategy_block(spec: ZeroDowntimeRolloutSpec) -> Any:
    strategy = spec.strategy
    if strategy.type == "BlueGreen":
        return strategy.effective_blue_green
    if strategy.type == "Canary":
        return strategy.effective_canary
    return strategy.effective_rolling_update


def simulate(
    name: str,
    spec: ZeroDowntimeRolloutSpec,
    status: Mapping[str, Any] | ZeroDowntimeRolloutStatus | None,
    observed: Observed,
    *,
    start: str,
    now: datetime | None = None,
) -> Simulation:
    """Run the planner from ``(status, observed)`` until the rollout is Healthy and settled."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    current = status if isinstance(status, ZeroDowntimeRolloutStatus) else parse_status(status)
    sim = Simulation(name=name, spec=spec, start=start, floor=serving_floor(spec))
    assumed = _assumed_checks(spec)
    if assumed:
        sim.notes.append("analysis checks are assumed to pass every measurement: " + ", ".join(assumed))
    update = revision_hash(spec)
    model = _Model.from_observed(observed, now)
    numbers = {r.name: r.revision for r in current.revisions}

    def label(revision: str) -> str:
        number = numbers.get(revision)
        return f"rev {number}" if number is not None else f"rev {revision}"

    old, new = _split(observed, update)
    serving_now = main_serving(observed)
    sim.rows.append(
        Row(0, _describe_start(observed, update, label), old, new, old + new, serving_now, serving_now)
    )

    steps = list(spec.strategy.effective_canary.steps or []) if spec.strategy.type == "Canary" else []
    promotes = 0
    announced: set[tuple[str, int | None]] = set()
    idle = 0
    for _ in range(MAX_TICKS):
        current = assume_checks_pass(spec, current, now)
        result = plan(spec, current, observed, now)
        if result.spec is None:
            sim.outcome = f"refused: {result.status.message}"
            return sim
        numbers = {r.name: r.revision for r in result.status.revisions}
        previous_status = current
        current = result.status
        model.apply(result, now)
        after = model.observe()
        actions = _actions(result, observed, label, spec.strategy.type)
        if actions:
            idle = 0
            old, new = _split(after, update)
            before_serving = main_serving(observed)
            sim.rows.append(
                Row(
                    len(sim.rows),
                    _with_step(current, steps) + "; ".join(actions),
                    old,
                    new,
                    old + new,
                    main_serving(after),
                    min(before_serving, _serving_during(observed, result, model)),
                )
            )
        settled = not actions
        phase = current.phase
        paused = current.condition("Paused")
        reason = paused.reason if paused is not None and paused.status == "True" else None
        if phase == "Healthy" and settled and result.requeue_after is None:
            sim.healthy = True
            sim.outcome = f"Healthy: {current.message}"
            _note(sim, after, update, f"done: {current.message}")
            return sim
        if phase == "Degraded":
            sim.outcome = f"Degraded: {current.message}"
            return sim
        if reason in ("SpecPaused", "PausedByCommand"):
            why = "spec.paused is true" if reason == "SpecPaused" else "paused by `kubectl zdr pause`"
            _note(sim, after, update, f"paused: {why}; the rollout waits here until resumed")
            sim.outcome = f"Paused: {current.message}"
            return sim
        observed = after
        if reason == "AwaitingPromotion" and settled:
            key = ("promote", current.current_step_index)
            if key not in announced:
                announced.add(key)
                where = _step_name(current, steps) or "preview serves"
                _note(sim, after, update, f"{where}: waits for `kubectl zdr promote`")
            promotes += 1
            model.command = Command(id=f"plan-promote-{promotes}", verb="promote")
            observed = model.observe()
            now += timedelta(seconds=1)
            continue
        if settled and _same(previous_status, current):
            idle += 1
            wait = result.requeue_after
            if wait is not None and wait > 0:
                key = (reason or phase or "", current.current_step_index)
                if key not in announced:
                    announced.add(key)
                    _note(sim, after, update, _wait_text(spec, reason, wait, current, steps, label))
                now += timedelta(seconds=max(1.0, wait))
                continue
            if idle > 3:
                sim.outcome = f"no progress: {current.message}"
                return sim
        now += timedelta(seconds=1)
    sim.outcome = f"not settled after {MAX_TICKS} plans: {current.message}"
    return sim


def assume_checks_pass(
    spec: ZeroDowntimeRolloutSpec, status: ZeroDowntimeRolloutStatus, now: datetime
) -> ZeroDowntimeRolloutStatus:
    """``status`` with a passing measurement in every analysis result that is due (as the operator
    records a real one before it plans)."""
    results = list(status.analysis)
    changed = False
    for i, result in enumerate(results):
        check = checks.definition(spec, result.step, result.name)
        if check is None or not checks.is_due(result, check, now):
            continue
        changed = True
        results[i] = result.model_copy(
            update={
                "measurements": result.measurements + 1,
                "successes": result.successes + 1,
                "message": "assumed to pass (plan)",
                "last_measured_at": now,
                "last_success_at": now,
            }
        )
    return status.model_copy(update={"analysis": results}) if changed else status


def _assumed_checks(spec: ZeroDowntimeRolloutSpec) -> list[str]:
    names = [f"{c.name} (background)" for c in spec.analysis.checks or []]
    if spec.strategy.type == "Canary":
        for i, step in enumerate(spec.strategy.effective_canary.steps or []):
            if step.analysis is not None:
                names += [f"{c.name} (step {i + 1})" for c in step.analysis.checks]
    return names


def _same(a: ZeroDowntimeRolloutStatus, b: ZeroDowntimeRolloutStatus) -> bool:
    keys = ("phase", "message", "current_step_index", "stable_revision", "update_revision")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _split(observed: Observed, update: str) -> tuple[int, int]:
    old = sum(rev.spec_replicas for name, rev in observed.revisions.items() if name != update)
    new = observed.revision(update).spec_replicas if update in observed.revisions else 0
    return old, new


def _note(sim: Simulation, observed: Observed, update: str, text: str) -> None:
    old, new = _split(observed, update)
    serving = main_serving(observed)
    sim.rows.append(Row(len(sim.rows), text, old, new, old + new, serving, serving))


def _serving_during(before: Observed, result: Plan, model: _Model) -> int:
    """Fewest pods serving through the main Service while the plan is carried out.

    Pods that stay and serve keep serving; removed pods stop at once; pods not ready before
    start serving only at the end; a switched Service serves the pods that were ready before.
    """
    main = model.services.get(ServiceRole.MAIN)
    if main is None:
        return 0
    total = 0
    for name, rev in before.revisions.items():
        if main.revision is not None and main.revision != name:
            continue
        size = model.sizes.get(name, 0)
        ready = max(0, min(rev.available_replicas, rev.spec_replicas))
        total += min(ready, size)
    return total


def _describe_start(observed: Observed, update: str, label: Any) -> str:
    live = [(name, rev) for name, rev in observed.revisions.items() if rev.spec_replicas > 0]
    if not live:
        return "now: nothing deployed yet"
    parts = []
    for name, rev in sorted(live, key=lambda item: item[0]):
        serving = min(rev.available_replicas, rev.spec_replicas)
        current = " (this spec)" if name == update else ""
        parts.append(f"{label(name)}{current}: {serving}/{rev.spec_replicas} pods ready")
    return "now: " + ", ".join(parts)


def _service_word(role: ServiceRole, strategy: str) -> str:
    if role == ServiceRole.MAIN:
        return "active Service" if strategy == "BlueGreen" else "Service"
    return f"{role.value} Service"


def _actions(result: Plan, before: Observed, label: Any, strategy: str) -> list[str]:
    actions: list[str] = []
    for name, count in sorted(
        result.replicas.items(), key=lambda item: (item[0] != result.update_revision, item[0])
    ):
        rev = before.revisions.get(name)
        if rev is None:
            actions.append(f"create {label(name)} with {count} pod{'s' if count != 1 else ''}")
        elif count != rev.spec_replicas:
            actions.append(f"{label(name)} {rev.spec_replicas}→{count}")
    for role, target in sorted(result.services.items(), key=lambda item: list(ServiceRole).index(item[0])):
        if before.target(role) == target and role in before.services:
            continue
        where = "every revision" if target.revision is None else label(target.revision)
        verb = "create" if role not in before.services else "switch"
        actions.append(f"{verb} {_service_word(role, strategy)} → {where}")
    for name, value in sorted(result.restarts.items()):
        if before.revision(name).restarted_at != value:
            actions.append(f"restart {label(name)}: its Deployment replaces one pod at a time")
    for name in result.delete:
        actions.append(f"delete {label(name)} (revisionHistoryLimit)")
    for role in result.delete_services:
        actions.append(f"delete {_service_word(role, strategy)}")
    return actions


def _step_name(status: ZeroDowntimeRolloutStatus, steps: list[CanaryStep]) -> str:
    index = status.current_step_index
    if index is None or not steps:
        return ""
    if index >= len(steps):
        return "after the steps"
    step = steps[index]
    if step.set_weight is not None:
        what = f"setWeight {step.set_weight}"
    elif step.pause is not None and step.pause.duration is not None:
        what = f"pause {step.pause.duration}"
    elif step.pause is not None:
        what = "pause"
    else:
        what = "analysis"
    return f"step {index + 1}/{len(steps)} {what}"


def _with_step(status: ZeroDowntimeRolloutStatus, steps: list[CanaryStep]) -> str:
    name = _step_name(status, steps)
    return f"{name}: " if name else ""


def _wait_text(
    spec: ZeroDowntimeRolloutSpec,
    reason: str | None,
    seconds: float,
    status: ZeroDowntimeRolloutStatus,
    steps: list[CanaryStep],
    label: Any,
) -> str:
    strategy = spec.strategy
    index = status.current_step_index
    if index is not None and index < len(steps) and steps[index].analysis is not None:
        analysis = steps[index].analysis
        assert analysis is not None
        wanted = ", ".join(f"{c.name} {c.count}x every {c.interval}" for c in analysis.checks)
        return f"{_step_name(status, steps)}: measures {wanted} (assumed to pass)"
    if reason == "CanaryPauseStep":
        return _step_name(status, steps) or f"pause {_seconds_text(seconds)}"
    if status.phase == "Healthy":
        delay = getattr(_strategy_block(spec), "scale_down_delay_seconds", None) or seconds
        warm = [r.name for r in status.revisions if r.retired_at is not None]
        which = label(warm[-1]) if warm else "the previous revision"
        return f"wait {_seconds_text(delay)}: scaleDownDelaySeconds keeps {which} warm for rollback"
    if status.preview_ready_at is not None:
        auto = strategy.effective_blue_green.auto_promotion_seconds
        return f"preview serves: wait {_seconds_text(auto)} (autoPromotionSeconds), then switch"
    return f"wait {_seconds_text(seconds)}: {status.message}"


def _seconds_text(seconds: float) -> str:
    whole = int(round(seconds))
    if whole < 120:
        return f"{whole}s"
    minutes, sec = divmod(whole, 60)
    return f"{minutes}m{sec}s" if sec else f"{minutes}m"
