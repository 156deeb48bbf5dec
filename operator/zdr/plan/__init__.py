"""The planner: ``plan(spec, status, observed, now) -> Plan``, pure and deterministic.

Reads like the steps it takes:

1. validate the spec; a refused spec (invalid, or a container without readinessProbe) yields a
   plan that touches nothing, with a Stalled condition and a Warning event;
2. build the context: the update revision's hash, the revision history (numbers, creation and
   retirement times), the stable revision, and the command waiting in the annotation;
3. let the strategy decide sizes, Service targets and its own progress;
4. delete revisions beyond revisionHistoryLimit, compute the status (counts, phase, kstatus
   conditions, progress deadline) and the events of every transition.

Nothing here reads a clock or the cluster: ``now`` and ``observed`` are inputs, and every piece
of rollout state that must survive a restart is in the returned status.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from zdr.api import (
    CommandRecord,
    Condition,
    Phase,
    RevisionRecord,
    ServiceRole,
    SpecError,
    ZeroDowntimeRolloutSpec,
    ZeroDowntimeRolloutStatus,
    parse_spec,
    parse_status,
    selector_string,
)
from zdr.plan.bluegreen import plan_blue_green
from zdr.plan.canary import plan_canary
from zdr.plan.common import Context, Decision, earliest, main_serving, set_condition
from zdr.plan.rolling import plan_rolling
from zdr.plan.types import (
    ALL_REVISIONS,
    Event,
    Observed,
    ObservedRevision,
    ObservedService,
    Plan,
    ServiceTarget,
)
from zdr.revision import readiness_problems, revision_hash

__all__ = [
    "ALL_REVISIONS",
    "Event",
    "Observed",
    "ObservedRevision",
    "ObservedService",
    "Plan",
    "ServiceRole",
    "ServiceTarget",
    "plan",
]

Strategy = Callable[[Context], Decision]
STRATEGIES: dict[str, Strategy] = {
    "RollingUpdate": plan_rolling,
    "BlueGreen": plan_blue_green,
    "Canary": plan_canary,
}

CONDITION_ORDER = ("Ready", "Reconciling", "Stalled", "Available", "Progressing", "Paused")


def plan(
    spec: Mapping[str, Any] | ZeroDowntimeRolloutSpec,
    status: Mapping[str, Any] | ZeroDowntimeRolloutStatus | None,
    observed: Observed,
    now: datetime,
) -> Plan:
    """Decide the next changes for one rollout.

    ``spec`` is the resource's ``spec`` (raw or parsed), ``status`` its ``status`` as last
    written (raw, parsed or None), ``observed`` the children as they are, ``now`` an aware
    datetime (naive means UTC). Timestamps are kept to whole seconds, as the API server does.
    """
    now = _whole_seconds(now)
    previous = status if isinstance(status, ZeroDowntimeRolloutStatus) else parse_status(status)
    raw = spec.to_k8s() if isinstance(spec, ZeroDowntimeRolloutSpec) else spec
    try:
        parsed = parse_spec(raw)
    except SpecError as exc:
        return refuse(previous, observed, now, "InvalidSpec", exc.messages)
    problems = readiness_problems(parsed)
    if problems:
        return refuse(previous, observed, now, "MissingReadinessProbe", problems)
    ctx = _context(parsed, previous, observed, now)
    decision = STRATEGIES[parsed.strategy.type](ctx)
    return _finish(ctx, decision)


def _whole_seconds(now: datetime) -> datetime:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).replace(microsecond=0)


# ---------------------------------------------------------------------------------------------
# Refusal
# ---------------------------------------------------------------------------------------------
def refuse(
    previous: ZeroDowntimeRolloutStatus, observed: Observed, now: datetime, reason: str, problems: list[str]
) -> Plan:
    """A plan that touches nothing: the spec cannot be rolled out as written."""
    summary = "; ".join(problems)
    conditions = list(previous.conditions)
    generation = observed.generation
    headline = "spec refused" if reason == "InvalidSpec" else "readiness probe missing"
    set_condition(conditions, "Stalled", "True", reason, summary, now=now, generation=generation)
    set_condition(conditions, "Ready", "False", reason, headline, now=now, generation=generation)
    set_condition(conditions, "Reconciling", "False", reason, headline, now=now, generation=generation)
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    status = previous.model_copy(
        update={
            "observed_generation": generation,
            "phase": "Degraded",
            "message": f"{headline}: {problems[0]}{more}",
            "conditions": _ordered(conditions),
        }
    )
    before = previous.condition("Stalled")
    repeated = (
        before is not None
        and before.status == "True"
        and before.reason == reason
        and before.message == summary
        and previous.observed_generation == generation
    )
    events = () if repeated else (Event("Warning", reason, summary),)
    return Plan(spec=None, update_revision=None, status=status, events=events)


# ---------------------------------------------------------------------------------------------
# Context: history, stable revision, command
# ---------------------------------------------------------------------------------------------
def _context(
    spec: ZeroDowntimeRolloutSpec, previous: ZeroDowntimeRolloutStatus, observed: Observed, now: datetime
) -> Context:
    update = revision_hash(spec)
    records = _records(previous, observed, update, now)
    ctx = Context(
        spec=spec,
        previous=previous,
        observed=observed,
        now=now,
        update=update,
        stable=None,
        records=records,
        paused=False,
    )
    ctx.stable = _stable(ctx)
    _take_command(ctx)
    ctx.paused = spec.paused or bool(ctx.paused_by_command)
    return ctx


def _records(
    previous: ZeroDowntimeRolloutStatus, observed: Observed, update: str, now: datetime
) -> dict[str, RevisionRecord]:
    """Revision history: every known revision numbered in the order it was first rolled out.

    Revisions observed but unknown to status (status lost) are numbered by creation time. A
    template equal to an earlier revision reuses it under a new, highest number (as
    ``kubectl rollout undo`` does), and it is no longer retired.
    """
    records = {r.name: r for r in previous.revisions}
    number = max((r.revision for r in records.values()), default=0)
    unknown = [rev for name, rev in observed.revisions.items() if name not in records]
    for rev in sorted(unknown, key=lambda r: (r.created_at or now, r.name)):
        number += 1
        records[rev.name] = RevisionRecord(name=rev.name, revision=number, created_at=rev.created_at or now)
    if update not in records:
        number += 1
        records[update] = RevisionRecord(name=update, revision=number, created_at=now)
    elif previous.update_revision not in (None, update) and records[update].revision != number:
        number += 1
        records[update] = records[update].model_copy(update={"revision": number, "retired_at": None})
    elif records[update].retired_at is not None and previous.update_revision != update:
        records[update] = records[update].model_copy(update={"retired_at": None})
    return records


def _stable(ctx: Context) -> str | None:
    """The stable revision: as recorded while its Deployment exists; otherwise (status lost, or
    the Deployment deleted) the revision with the most available pods; None before any served."""
    recorded = ctx.previous.stable_revision
    if recorded is not None and recorded in ctx.observed.revisions:
        return recorded
    serving_revisions = [rev for rev in ctx.observed.revisions.values() if rev.available_replicas > 0]
    if not serving_revisions:
        return None
    others = [rev for rev in serving_revisions if rev.name != ctx.update] or serving_revisions
    best = max(others, key=lambda rev: (rev.available_replicas, ctx.number(rev.name)))
    return best.name


def _take_command(ctx: Context) -> None:
    """Consume the command in the annotation once (its id is recorded in status.lastCommand)."""
    previous = ctx.previous
    ctx.last_command = previous.last_command
    ctx.paused_by_command = bool(previous.paused_by_command)
    observed = ctx.observed
    if observed.command is None:
        if observed.command_error:
            bad_id = "invalid:" + hashlib.sha256(observed.command_error.encode()).hexdigest()[:10]
            if previous.last_command is None or previous.last_command.id != bad_id:
                ctx.last_command = CommandRecord(
                    id=bad_id, verb="", result="Rejected", message=observed.command_error, handled_at=ctx.now
                )
                ctx.emit("CommandRejected", observed.command_error, warning=True)
        return
    command = observed.command
    if previous.last_command is not None and previous.last_command.id == command.id:
        return
    accepted = True
    if command.verb == "promote":
        if ctx.spec.strategy.type == "RollingUpdate":
            accepted, message = False, "RollingUpdate has no step or switch to promote"
        elif ctx.in_rollout:
            ctx.promote, ctx.promote_full = True, command.full
            message = "promote" + (" --full" if command.full else "") + f" of {ctx.describe(ctx.update)}"
        else:
            accepted, message = False, "nothing to promote: no rollout in progress"
    elif command.verb == "pause":
        ctx.paused_by_command = True
        message = "paused by command"
    elif command.verb == "resume":
        ctx.paused_by_command = False
        message = "resumed" + ("; spec.paused is still true" if ctx.spec.paused else "")
    else:
        accepted, message = False, f"{command.verb} is not supported by this operator version"
    ctx.last_command = CommandRecord(
        id=command.id,
        verb=command.verb,
        result="Accepted" if accepted else "Rejected",
        message=message,
        handled_at=ctx.now,
    )
    if accepted:
        ctx.emit(command.verb.capitalize() + "Requested", message)
    else:
        ctx.emit("CommandRejected", f"{command.verb}: {message}", warning=True)


# ---------------------------------------------------------------------------------------------
# Finishing: history limit, status, conditions, events
# ---------------------------------------------------------------------------------------------
def _finish(ctx: Context, decision: Decision) -> Plan:
    spec, observed, previous, now = ctx.spec, ctx.observed, ctx.previous, ctx.now
    replicas = {
        name: count
        for name, count in decision.replicas.items()
        if name in observed.revisions or name == ctx.update
    }
    roles = spec.service_roles
    services = {
        role: target for role, target in decision.services.items() if role in roles and target is not None
    }
    delete_services = tuple(role for role in observed.services if role not in roles)
    delete = _beyond_history(ctx, decision, replicas, services)
    keep = (
        set(observed.revisions) - set(delete)
        | {ctx.update}
        | ({decision.stable} if decision.stable else set())
    )
    records = sorted((r for name, r in ctx.records.items() if name in keep), key=lambda r: r.revision)

    revisions = list(observed.revisions.values())
    new = ctx.rev(ctx.update)
    paused = decision.paused_reason is not None
    status = ZeroDowntimeRolloutStatus(
        observed_generation=observed.generation,
        phase=decision.phase,
        message=decision.message,
        stable_revision=decision.stable,
        update_revision=ctx.update,
        current_step_index=decision.step_index,
        canary_weight=decision.canary_weight,
        replicas=sum(rev.replicas for rev in revisions),
        ready_replicas=sum(rev.ready_replicas for rev in revisions),
        updated_replicas=new.replicas,
        available_replicas=sum(rev.available_replicas for rev in revisions),
        selector=selector_string(spec.effective_selector),
        revisions=records,
        step_started_at=decision.step_started_at,
        preview_ready_at=decision.preview_ready_at,
        promote_requested=decision.promote_requested,
        paused_by_command=True if ctx.paused_by_command else None,
        last_command=ctx.last_command,
    )
    progressed_at = _progressed_at(previous, status, paused, now)
    deadline = spec.progress_deadline_seconds
    overdue = not decision.complete and not paused and now - progressed_at >= timedelta(seconds=deadline)
    requeue = decision.requeue_after
    if not decision.complete and not paused and not overdue:
        requeue = earliest(requeue, (progressed_at + timedelta(seconds=deadline) - now).total_seconds())
    phase: Phase = "Degraded" if overdue else decision.phase
    message = decision.message
    if overdue:
        message = f"no progress for {deadline}s (progressDeadlineSeconds): {decision.message}"
    conditions = _conditions(ctx, decision, overdue, message)
    status = status.model_copy(
        update={"progressed_at": progressed_at, "phase": phase, "message": message, "conditions": conditions}
    )
    events = [*ctx.events]
    events += _transition_events(ctx, decision, status, overdue)
    events += _change_events(ctx, replicas, services, delete, delete_services)
    return Plan(
        spec=spec,
        update_revision=ctx.update,
        replicas=replicas,
        delete=delete,
        services=services,
        delete_services=delete_services,
        status=status,
        events=tuple(events),
        requeue_after=requeue,
    )


def _beyond_history(
    ctx: Context,
    decision: Decision,
    replicas: Mapping[str, int],
    services: Mapping[ServiceRole, ServiceTarget],
) -> tuple[str, ...]:
    """Old revisions at 0 pods, selected by no Service, beyond revisionHistoryLimit (oldest go)."""
    protected = {ctx.update, ctx.stable, decision.stable}
    selected = {t.revision for t in services.values()} | {
        svc.target.revision for svc in ctx.observed.services.values() if svc.target
    }
    idle = [
        name
        for name, rev in ctx.observed.revisions.items()
        if name not in protected
        and name not in selected
        and replicas.get(name, rev.spec_replicas) == 0
        and rev.spec_replicas == 0
        and rev.replicas == 0
    ]
    idle.sort(key=lambda name: (ctx.number(name), name), reverse=True)
    return tuple(sorted(idle[ctx.spec.revision_history_limit :]))


def _signature(status: ZeroDowntimeRolloutStatus) -> tuple[Any, ...]:
    return (
        status.update_revision,
        status.stable_revision,
        status.current_step_index,
        status.replicas,
        status.ready_replicas,
        status.available_replicas,
        status.updated_replicas,
    )


def _progressed_at(
    previous: ZeroDowntimeRolloutStatus, status: ZeroDowntimeRolloutStatus, paused: bool, now: datetime
) -> datetime:
    """When the rollout last moved: any change of revisions, step or pod counts; or a resume."""
    if previous.progressed_at is None or _signature(previous) != _signature(status):
        return now
    if previous.phase == "Paused" and not paused:
        return now
    return previous.progressed_at


def _ordered(conditions: list[Condition]) -> list[Condition]:
    rank = {name: i for i, name in enumerate(CONDITION_ORDER)}
    return sorted(conditions, key=lambda c: (rank.get(c.type, len(rank)), c.type))


def _conditions(ctx: Context, decision: Decision, overdue: bool, message: str) -> list[Condition]:
    """kstatus-style conditions: Ready (summary), Reconciling and Stalled (abnormal-true), plus
    Available, Progressing and Paused as a Deployment user expects them."""
    conditions = list(ctx.previous.conditions)
    gen, now = ctx.observed.generation, ctx.now

    def put(type_: str, status: Any, reason: str, text: str) -> None:
        set_condition(conditions, type_, status, reason, text, now=now, generation=gen)

    paused = decision.paused_reason
    if decision.complete:
        put("Ready", "True", "RolloutComplete", message)
        put("Reconciling", "False", "RolloutComplete", "")
        put("Progressing", "True", "RolloutComplete", message)
    elif overdue:
        put("Ready", "False", "ProgressDeadlineExceeded", message)
        put("Reconciling", "False", "ProgressDeadlineExceeded", "")
        put("Progressing", "False", "ProgressDeadlineExceeded", message)
    elif paused:
        put("Ready", "False", paused, message)
        put("Reconciling", "True", paused, message)
        put("Progressing", "Unknown", paused, message)
    else:
        put("Ready", "False", "RolloutInProgress", message)
        put("Reconciling", "True", "RolloutInProgress", message)
        put("Progressing", "True", "RolloutInProgress", message)
    if overdue:
        put("Stalled", "True", "ProgressDeadlineExceeded", message)
    else:
        put("Stalled", "False", "NoFailure", "")
    floor = ctx.replicas if decision.floor is None else decision.floor
    available = main_serving(ctx.observed)
    if available >= floor:
        put("Available", "True", "MinimumReplicasAvailable", f"{available} pods serve (minimum {floor})")
    else:
        put("Available", "False", "MinimumReplicasUnavailable", f"{available} pods serve (minimum {floor})")
    if paused:
        put("Paused", "True", paused, message)
    else:
        put("Paused", "False", "NotPaused", "")
    return _ordered(conditions)


def _transition_events(
    ctx: Context, decision: Decision, status: ZeroDowntimeRolloutStatus, overdue: bool
) -> list[Event]:
    previous = ctx.previous
    events: list[Event] = []
    if previous.update_revision != ctx.update:
        if ctx.stable is None or ctx.stable == ctx.update:
            events.append(Event("Normal", "RolloutStarted", f"deploying {ctx.describe(ctx.update)}"))
        else:
            events.append(
                Event(
                    "Normal",
                    "RolloutStarted",
                    f"rolling out {ctx.describe(ctx.update)} to replace {ctx.describe(ctx.stable)} "
                    f"({ctx.spec.strategy.type})",
                )
            )
    promoted = decision.stable is not None and previous.stable_revision not in (None, decision.stable)
    if promoted and not any(e.reason in ("RevisionPromoted", "TrafficSwitched") for e in ctx.events):
        events.append(Event("Normal", "RevisionPromoted", f"{ctx.describe(decision.stable)} is now stable"))
    if decision.complete and previous.phase != "Healthy":
        events.append(Event("Normal", "RolloutCompleted", status.message or ""))
    was_paused = previous.phase == "Paused"
    if decision.paused_reason and not overdue and not was_paused:
        events.append(Event("Normal", "RolloutPaused", status.message or ""))
    if was_paused and not decision.paused_reason:
        events.append(Event("Normal", "RolloutResumed", status.message or ""))
    stalled_before = previous.condition("Stalled")
    if overdue and not (
        stalled_before
        and stalled_before.status == "True"
        and stalled_before.reason == "ProgressDeadlineExceeded"
    ):
        events.append(Event("Warning", "ProgressDeadlineExceeded", status.message or ""))
    if status.current_step_index is not None and status.current_step_index != previous.current_step_index:
        steps = ctx.spec.strategy.effective_canary.steps or []
        if status.current_step_index < len(steps):
            events.append(
                Event(
                    "Normal",
                    "StepStarted",
                    f"step {status.current_step_index + 1}/{len(steps)} of {ctx.describe(ctx.update)}",
                )
            )
    return events


def _change_events(
    ctx: Context,
    replicas: Mapping[str, int],
    services: Mapping[ServiceRole, ServiceTarget],
    delete: tuple[str, ...],
    delete_services: tuple[ServiceRole, ...],
) -> list[Event]:
    observed = ctx.observed
    events: list[Event] = []
    for name, count in sorted(replicas.items()):
        rev = observed.revisions.get(name)
        if rev is None:
            events.append(
                Event("Normal", "RevisionCreated", f"{ctx.describe(name)} created with {count} pods")
            )
        elif count != rev.spec_replicas:
            reason = "ScaledUp" if count > rev.spec_replicas else "ScaledDown"
            events.append(
                Event("Normal", reason, f"{ctx.describe(name)} from {rev.spec_replicas} to {count} pods")
            )
    for role, target in services.items():
        if role not in observed.services:
            events.append(
                Event("Normal", "ServiceCreated", f"{role.value} Service selects {_target_text(ctx, target)}")
            )
        elif observed.target(role) != target:
            events.append(
                Event(
                    "Normal",
                    "ServiceSwitched",
                    f"{role.value} Service now selects {_target_text(ctx, target)}",
                )
            )
    for name in delete:
        events.append(
            Event("Normal", "RevisionDeleted", f"{ctx.describe(name)} deleted (revisionHistoryLimit)")
        )
    for role in delete_services:
        events.append(Event("Normal", "ServiceDeleted", f"{role.value} Service is not used by this strategy"))
    return events


def _target_text(ctx: Context, target: ServiceTarget) -> str:
    return "every pod of the rollout" if target.revision is None else ctx.describe(target.revision)
