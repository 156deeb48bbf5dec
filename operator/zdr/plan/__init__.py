"""The planner: ``plan(spec, status, observed, now) -> Plan``, pure and deterministic.

Reads like the steps it takes:

1. validate the spec; a refused spec (invalid, or a container without readinessProbe) yields a
   plan that touches nothing, with a Stalled condition and a Warning event;
2. build the context: the update revision's hash, the revision history (numbers, creation and
   retirement times), the stable revision, the abort, rollback and restart in force, the
   analysis results measured so far, and the command waiting in the annotation;
3. gates: while a rollout runs, a crash-looping or restarting new revision, a pod unready for too
   long or a failed analysis check aborts it;
4. decide: a revert (abort, undo, or a re-applied template that was stable before) moves all
   traffic to one revision the same way for every strategy (``revert.py``); otherwise the
   strategy decides sizes, Service targets and its own progress. A rollout that made no progress
   for progressDeadlineSeconds is aborted, and that pass reverts instead;
5. delete revisions beyond revisionHistoryLimit, compute the status (counts, phase, kstatus
   conditions, analysis, restart) and the events of every transition.

Nothing here reads a clock or the cluster: ``now`` and ``observed`` are inputs, and every piece
of rollout state that must survive a restart is in the returned status.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from zdr.api import (
    LABEL_REVISION,
    AbortRecord,
    Command,
    CommandRecord,
    Condition,
    Phase,
    RestartRecord,
    RevisionRecord,
    RollbackRecord,
    ServiceRole,
    SpecError,
    ZeroDowntimeRolloutSpec,
    ZeroDowntimeRolloutStatus,
    format_time,
    parse_spec,
    parse_status,
    selector_string,
)
from zdr.plan import checks
from zdr.plan.bluegreen import plan_blue_green
from zdr.plan.canary import plan_canary
from zdr.plan.common import Context, Decision, earliest, main_serving, set_condition
from zdr.plan.revert import Revert, plan_revert, revert_of
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
    _gates(ctx)
    decision = _decide(ctx)
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
        records=_drained(records, observed, now),
        paused=False,
    )
    ctx.stable = _stable(ctx)
    if previous.abort is not None and previous.abort.revision == update and ctx.in_rollout:
        ctx.abort = previous.abort  # (without another stable revision there is nothing to go back to)
    rollback = previous.rollback
    if rollback is not None and rollback.from_revision == update and rollback.revision in observed.revisions:
        ctx.rollback = rollback
    if previous.restart is not None and previous.restart.revision in observed.revisions:
        ctx.restart = previous.restart
    ctx.previous_results = {(r.step, r.name): r for r in previous.analysis if r.revision == update}
    _take_command(ctx)
    ctx.paused = spec.paused or bool(ctx.paused_by_command)
    return ctx


def _records(
    previous: ZeroDowntimeRolloutStatus, observed: Observed, update: str, now: datetime
) -> dict[str, RevisionRecord]:
    """Revision history: every known revision numbered in the order it was first rolled out.

    Revisions observed but unknown to status (status lost) are numbered by creation time. A
    template equal to an earlier revision reuses it under a new, highest number (as
    ``kubectl rollout undo`` does); it keeps its retirement time until it is stable again, which
    marks it as a revision that served before (a fast rollback).
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
        records[update] = records[update].model_copy(update={"revision": number})
    return records


def _drained(
    records: dict[str, RevisionRecord], observed: Observed, now: datetime
) -> dict[str, RevisionRecord]:
    """Record ``drainedAt`` for a retired revision seen with no pod (none wanted, none left that is
    not terminating): the pods that took traffic are gone or going, so any pod it gets from now on
    is fresh and may stand by."""

    def empty(name: str) -> bool:
        rev = observed.revision(name)
        return rev.spec_replicas == rev.replicas == 0

    return {
        name: record.model_copy(update={"drained_at": now})
        if record.retired_at is not None and record.drained_at is None and empty(name)
        else record
        for name, record in records.items()
    }


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
    handler = COMMANDS.get(command.verb)
    if handler is None:
        accepted, message = False, f"{command.verb} is not supported by this operator version"
    else:
        accepted, message = handler(ctx, command)
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


def _forward(ctx: Context) -> bool:
    """A rollout of the template's revision runs (not reverting)."""
    return ctx.in_rollout and revert_of(ctx) is None


def _settled(ctx: Context) -> bool:
    """Nothing moves toward a revision: no rollout, or an abort or undo that has completed."""
    if ctx.abort is not None:
        return ctx.abort.completed_at is not None
    if ctx.rollback is not None:
        return ctx.rollback.completed_at is not None
    return not ctx.in_rollout


def _blocked(ctx: Context) -> str | None:
    if ctx.abort is not None:
        return f"{ctx.describe(ctx.update)} is aborted; `kubectl zdr retry` rolls it out again"
    if ctx.rollback is not None:
        return f"rolled back to {ctx.describe(ctx.rollback.revision)}; `kubectl zdr retry` rolls the template out again"
    return None


def _promote(ctx: Context, command: Command) -> tuple[bool, str]:
    if ctx.spec.strategy.type == "RollingUpdate":
        return False, "RollingUpdate has no step or switch to promote"
    blocked = _blocked(ctx)
    if blocked:
        return False, blocked
    if not _forward(ctx):
        return False, "nothing to promote: no rollout in progress"
    ctx.promote, ctx.promote_full = True, command.full
    return True, "promote" + (" --full" if command.full else "") + f" of {ctx.describe(ctx.update)}"


def _pause(ctx: Context, command: Command) -> tuple[bool, str]:
    ctx.paused_by_command = True
    return True, "paused by command"


def _resume(ctx: Context, command: Command) -> tuple[bool, str]:
    ctx.paused_by_command = False
    return True, "resumed" + ("; spec.paused is still true" if ctx.spec.paused else "")


def _abort_command(ctx: Context, command: Command) -> tuple[bool, str]:
    if ctx.abort is not None:
        return False, f"{ctx.describe(ctx.update)} is already aborted"
    if not _forward(ctx):
        return False, "nothing to abort: no rollout in progress"
    _abort(ctx, "RolloutAborted", "aborted by command")
    return True, f"abort of {ctx.describe(ctx.update)}: all traffic goes back to {ctx.describe(ctx.stable)}"


def _retry(ctx: Context, command: Command) -> tuple[bool, str]:
    if ctx.abort is None and ctx.rollback is None:
        return False, "nothing to retry: the rollout is neither aborted nor rolled back"
    _start_over(ctx)
    return True, f"retrying {ctx.describe(ctx.update)}"


def _start_over(ctx: Context) -> None:
    """Roll the template's revision out from its first step again, with fresh analysis."""
    ctx.abort = None
    ctx.rollback = None
    ctx.previous_results = {}
    ctx.fresh_start = True


def _undo(ctx: Context, command: Command) -> tuple[bool, str]:
    target, problem = _undo_target(ctx, command.to_revision)
    if target is None:
        return False, problem
    if target == ctx.update:
        if ctx.abort is None and ctx.rollback is None:
            return False, f"{ctx.describe(target)} is the template's revision already"
        _start_over(ctx)
        return True, f"undo to the template's revision: rolling out {ctx.describe(target)} again"
    ctx.abort = None
    ctx.rollback = RollbackRecord(revision=target, from_revision=ctx.update, requested_at=ctx.now)
    return True, f"rolling back to {ctx.describe(target)}; spec.template is left as it is"


def _undo_target(ctx: Context, to_revision: int | None) -> tuple[str | None, str]:
    """The revision an undo goes to, or why there is none."""
    serving = ctx.rollback.revision if ctx.rollback is not None else ctx.stable
    if serving is None:
        return None, "nothing to undo: no revision has served yet"
    moving = _forward(ctx)
    if to_revision is not None:
        record = next((r for r in ctx.records.values() if r.revision == to_revision), None)
        if record is None:
            known = ", ".join(str(r.revision) for r in sorted(ctx.records.values(), key=lambda r: r.revision))
            return None, f"no revision {to_revision} (known: {known})"
        if record.name not in ctx.observed.revisions:
            return None, (
                f"revision {to_revision} is no longer kept (revisionHistoryLimit "
                f"{ctx.spec.revision_history_limit})"
            )
        if record.name == serving and not moving:
            return None, f"{ctx.describe(record.name)} serves already"
        return record.name, ""
    if moving:
        return serving, ""
    earlier = [
        r
        for name, r in ctx.records.items()
        if name != serving and name in ctx.observed.revisions and r.retired_at is not None
    ]
    if not earlier:
        return None, "nothing to undo: no earlier revision that served is kept"
    latest = max(earlier, key=lambda r: (r.retired_at or r.created_at, r.revision))
    return latest.name, ""


def _restart(ctx: Context, command: Command) -> tuple[bool, str]:
    serving = ctx.rollback.revision if ctx.rollback is not None else ctx.stable
    if serving is None:
        return False, "nothing to restart: no revision serves yet"
    if not _settled(ctx):
        return False, "a rollout is in progress; restart once it has finished"
    ctx.restart = RestartRecord(revision=serving, requested_at=ctx.now)
    return True, f"replacing every pod of {ctx.describe(serving)}, one at a time"


COMMANDS: dict[str, Callable[[Context, Command], tuple[bool, str]]] = {
    "promote": _promote,
    "pause": _pause,
    "resume": _resume,
    "abort": _abort_command,
    "retry": _retry,
    "undo": _undo,
    "restart": _restart,
}


# ---------------------------------------------------------------------------------------------
# Gates: what aborts a running rollout
# ---------------------------------------------------------------------------------------------
def _abort(ctx: Context, reason: str, message: str) -> None:
    ctx.abort = AbortRecord(revision=ctx.update, reason=reason, message=message, aborted_at=ctx.now)
    ctx.results.clear()
    ctx.checks.clear()
    ctx.emit(
        "RolloutAborted",
        f"{ctx.describe(ctx.update)}: {message}; all traffic goes back to {ctx.describe(ctx.stable)}",
        warning=True,
    )


def _gates(ctx: Context) -> None:
    """Health gates and analysis results of the update revision while it rolls out."""
    if not _forward(ctx):
        return
    for check in ctx.spec.analysis.checks or []:
        ctx.check(None, check)
    gates = ctx.spec.analysis
    new = ctx.rev(ctx.update)
    what = ctx.describe(ctx.update)
    if gates.abort_on_crash_loop and new.crash_looping > 0:
        _abort(ctx, "CrashLoopBackOff", f"{new.crash_looping} pod(s) of {what} in CrashLoopBackOff")
        return
    if gates.max_restarts is not None and new.most_restarts > gates.max_restarts:
        _abort(
            ctx,
            "TooManyRestarts",
            f"a pod of {what} restarted {new.most_restarts} times (maxRestarts {gates.max_restarts})",
        )
        return
    if gates.max_unready_seconds is not None and new.unready_since is not None:
        unready = (ctx.now - new.unready_since).total_seconds()
        if unready >= gates.max_unready_seconds:
            _abort(
                ctx,
                "ReadinessTimeout",
                f"a pod of {what} not ready for {int(unready)}s (maxUnreadySeconds {gates.max_unready_seconds})",
            )
            return
        ctx.wake(gates.max_unready_seconds - unready)
    for (step, name), result in sorted(
        ctx.previous_results.items(), key=lambda kv: (kv[0][0] or -1, kv[0][1])
    ):
        definition = checks.definition(ctx.spec, step, name)
        if definition is not None and checks.failed(result, definition):
            _abort(ctx, "AnalysisFailed", checks.failure_text(result, definition))
            return


def _decide(ctx: Context) -> Decision:
    revert = revert_of(ctx)
    if revert is not None:
        return plan_revert(ctx, revert)
    forward = ctx.in_rollout
    records, events = dict(ctx.records), list(ctx.events)
    decision = STRATEGIES[ctx.spec.strategy.type](ctx)
    if forward and _progress(ctx, decision)[1]:
        # No progress for progressDeadlineSeconds: this pass aborts instead (nothing it decided
        # counts, and it decided little: a pass that makes progress is not overdue).
        ctx.records, ctx.events = records, events
        deadline = ctx.spec.progress_deadline_seconds
        _abort(
            ctx,
            "ProgressDeadlineExceeded",
            f"no progress for {deadline}s (progressDeadlineSeconds) at: {decision.message}",
        )
        assert ctx.stable is not None
        return plan_revert(ctx, Revert(ctx.stable, "abort"))
    return decision


# ---------------------------------------------------------------------------------------------
# Finishing: history limit, status, conditions, events
# ---------------------------------------------------------------------------------------------
def _finish(ctx: Context, decision: Decision) -> Plan:
    spec, observed, now = ctx.spec, ctx.observed, ctx.now
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
    if decision.stable is not None:
        record = ctx.records.get(decision.stable)
        if record is not None and record.retired_at is not None:
            ctx.records[decision.stable] = record.model_copy(update={"retired_at": None, "drained_at": None})
    delete = _beyond_history(ctx, decision, replicas, services)
    keep = (
        set(observed.revisions) - set(delete)
        | {ctx.update}
        | ({decision.stable} if decision.stable else set())
    )
    records = sorted((r for name, r in ctx.records.items() if name in keep), key=lambda r: r.revision)

    revisions = list(observed.revisions.values())
    in_traffic = [rev for rev in revisions if rev.name not in decision.standby]
    new = ctx.rev(ctx.update)
    paused = decision.paused_reason is not None
    restart, restarts = _restart_progress(ctx, decision)
    _records_completion(ctx, decision)
    status = ZeroDowntimeRolloutStatus(
        observed_generation=observed.generation,
        phase=decision.phase,
        message=decision.message,
        stable_revision=decision.stable,
        update_revision=ctx.update,
        current_step_index=decision.step_index,
        canary_weight=decision.canary_weight,
        replicas=sum(rev.replicas for rev in in_traffic),
        ready_replicas=sum(rev.ready_replicas for rev in in_traffic),
        updated_replicas=new.replicas,
        available_replicas=sum(rev.available_replicas for rev in in_traffic),
        standby_replicas=sum(ctx.rev(name).replicas for name in decision.standby),
        selector=_selector(spec, decision.standby),
        revisions=records,
        step_started_at=decision.step_started_at,
        preview_ready_at=decision.preview_ready_at,
        promote_requested=decision.promote_requested,
        paused_by_command=True if ctx.paused_by_command else None,
        last_command=ctx.last_command,
        abort=ctx.abort,
        rollback=ctx.rollback,
        restart=restart,
        analysis=sorted(ctx.results.values(), key=lambda r: (r.step is not None, r.step or 0, r.name)),
    )
    progressed_at, overdue = _progress(ctx, decision)
    if decision.stalled is not None:
        overdue = False
    deadline = spec.progress_deadline_seconds
    requeue = earliest(decision.requeue_after, ctx.wake_after, _next_measurement(ctx))
    if not decision.complete and not paused and not overdue and decision.stalled is None:
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
        restarts=restarts,
        events=tuple(events),
        requeue_after=requeue,
    )


def _selector(spec: ZeroDowntimeRolloutSpec, standby: tuple[str, ...]) -> str:
    """The scale subresource's selector: the rollout's pods but the warm standby, so that what an
    HorizontalPodAutoscaler measures and counts is the serving set."""
    selector = selector_string(spec.effective_selector)
    if standby:
        selector += f",{LABEL_REVISION} notin ({','.join(sorted(standby))})"
    return selector


def _records_completion(ctx: Context, decision: Decision) -> None:
    """Mark an abort or an undo complete once nothing moves any more."""
    if decision.reconciling:
        return
    if ctx.abort is not None and ctx.abort.completed_at is None:
        ctx.abort = ctx.abort.model_copy(update={"completed_at": ctx.now})
        ctx.emit(
            "AbortCompleted",
            f"{ctx.describe(decision.stable)} serves every pod; {ctx.describe(ctx.update)} has none left",
        )
    if ctx.rollback is not None and ctx.rollback.completed_at is None:
        ctx.rollback = ctx.rollback.model_copy(update={"completed_at": ctx.now})
        ctx.emit(
            "RolledBack",
            f"{ctx.describe(ctx.rollback.revision)} serves every pod; spec.template still asks for "
            f"{ctx.describe(ctx.update)}",
        )


def _restart_progress(ctx: Context, decision: Decision) -> tuple[RestartRecord | None, dict[str, str]]:
    """The restart in force: the restartedAt value its revision's pods must carry, and whether every
    pod carries it. A restart in progress keeps a settled rollout from reporting done."""
    restart = ctx.restart
    if restart is None:
        return None, {}
    nonce = format_time(restart.requested_at)
    if restart.completed_at is None:
        rev = ctx.rev(restart.revision)
        done = (
            rev.restarted_at == nonce
            and rev.synced
            and rev.updated_replicas >= rev.spec_replicas
            and rev.replicas == rev.spec_replicas
            and rev.available_replicas >= rev.spec_replicas
        )
        if done:
            restart = restart.model_copy(update={"completed_at": ctx.now})
            ctx.emit("RestartCompleted", f"every pod of {ctx.describe(restart.revision)} was replaced")
        elif restart.revision == decision.stable and (decision.complete or decision.stalled):
            replaced = rev.updated_replicas if rev.restarted_at == nonce else 0
            text = (
                f"restarting the pods of {ctx.describe(restart.revision)} one at a time: "
                f"{min(replaced, rev.spec_replicas)}/{rev.spec_replicas} replaced"
            )
            if decision.complete:
                decision.complete = False
                decision.phase = "Progressing"
                decision.message = text
            else:
                decision.message += f"; {text}"
    return restart, {restart.revision: nonce}


def _next_measurement(ctx: Context) -> float | None:
    due = [
        (checks.next_due(result, ctx.checks[key]) - ctx.now).total_seconds()
        for key, result in ctx.results.items()
        if key in ctx.checks
    ]
    return earliest(*due)


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


def _progress(ctx: Context, decision: Decision) -> tuple[datetime, bool]:
    """When the rollout last moved, and whether that is more than progressDeadlineSeconds ago.

    Moving: any change of revisions, step or pod counts; a resume or a retry; a passing
    measurement of an analysis step (the step waits for those). Paused and finished rollouts
    are never overdue.
    """
    previous, now, observed = ctx.previous, ctx.now, ctx.observed
    revisions = list(observed.revisions.values())
    signature = (
        ctx.update,
        decision.stable,
        decision.step_index,
        sum(rev.replicas for rev in revisions),
        sum(rev.ready_replicas for rev in revisions),
        sum(rev.available_replicas for rev in revisions),
        ctx.rev(ctx.update).replicas,
    )
    paused = decision.paused_reason is not None
    moved = previous.progressed_at is None or _signature(previous) != signature or ctx.fresh_start
    resumed = previous.phase == "Paused" and not paused
    progressed = now if moved or resumed or previous.progressed_at is None else previous.progressed_at
    for result in ctx.results.values():
        if result.step is not None and result.last_success_at is not None:
            progressed = max(progressed, result.last_success_at)
    overdue = (
        not decision.complete
        and not paused
        and now - progressed >= timedelta(seconds=ctx.spec.progress_deadline_seconds)
    )
    return progressed, overdue


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
    elif decision.stalled is not None:
        reason = decision.stalled[0]
        put("Ready", "False", reason, message)
        put("Reconciling", "False", reason, "")
        put("Progressing", "False", reason, message)
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
    if decision.stalled is not None:
        put("Stalled", "True", decision.stalled[0], message)
    elif overdue:
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
    restarted = any(e.reason == "RestartCompleted" for e in ctx.events)
    if decision.complete and previous.phase != "Healthy" and not restarted:
        events.append(Event("Normal", "RolloutCompleted", status.message or ""))
    was_paused = previous.phase == "Paused"
    if decision.paused_reason and not overdue and not was_paused:
        events.append(Event("Normal", "RolloutPaused", status.message or ""))
    if was_paused and not decision.paused_reason and decision.stalled is None and not decision.reconciling:
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
