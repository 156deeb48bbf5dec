"""Reverting: all traffic back to one revision that served before, as fast as capacity allows.

One sequence for every strategy, used by an abort (back to the stable revision), an undo (to an
earlier revision) and a template re-applied that was stable before (a fast rollback):

1. the target revision T goes to ``replicas`` at once: a rollback is not a rollout, so the surge
   ceiling does not apply (at most one extra set of pods, as BlueGreen always has); a warm T
   already has them;
2. until every pod of T serves, the Services keep what serves now. RollingUpdate and Canary
   first pin MAIN to the stable revision when T is another revision and the stable one serves in
   full, so T's new pods come up out of traffic and traffic moves once, not pod by pod;
3. once every pod of T serves, each Service is switched to T in one write (MAIN, preview,
   canary, stable), and T is the stable revision;
4. other revisions lose their pods: not-ready ones at once, serving ones only while the pods
   serving through MAIN stay at the floor (once MAIN selects T alone: all of them, so the
   revision left drains at once and its kept-alive connections and WebSockets move to T). A
   revert keeps no warm standby: the revision it leaves is the one found wanting;
5. RollingUpdate and Canary: once no other revision has pods, MAIN selects every pod of the
   rollout again (the same pods, so nothing moves).

Nothing here waits for a clock; pauses do not hold a revert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from zdr.api import Phase, ServiceRole
from zdr.plan.common import (
    ALL_REVISIONS,
    Context,
    Decision,
    Targets,
    approach,
    can_select,
    choose_target,
    holds_pods,
    keep_for_services,
    serving,
)
from zdr.plan.types import ServiceTarget

RevertKind = Literal["abort", "undo", "reapply"]


@dataclass(frozen=True)
class Revert:
    target: str
    kind: RevertKind


def revert_of(ctx: Context) -> Revert | None:
    """Whether this pass reverts, and to what: an abort, an undo, or a re-applied stable template."""
    if ctx.abort is not None and ctx.stable is not None:
        return Revert(ctx.stable, "abort")
    if ctx.rollback is not None:
        return Revert(ctx.rollback.revision, "undo")
    record = ctx.records.get(ctx.update)
    if ctx.in_rollout and record is not None and record.retired_at is not None:
        return Revert(ctx.update, "reapply")
    return None


def plan_revert(ctx: Context, revert: Revert) -> Decision:
    target = revert.target
    replicas = ctx.replicas
    observed = ctx.observed
    stable = ctx.stable
    pinned = ServiceTarget(target)
    others = sorted((name for name in observed.revisions if name != target), key=lambda n: (ctx.number(n), n))
    fallbacks = [stable] if stable is not None and stable != target else []
    full = _fully_serves(ctx, target)

    def aim(role: ServiceRole, fallbacks: list[str]) -> ServiceTarget | None:
        current = observed.target(role)
        if full or current is None:
            return choose_target(observed, role, pinned, fallbacks)
        if (
            role == ServiceRole.MAIN
            and current.is_all
            and stable is not None
            and stable != target
            and _fully_serves(ctx, stable)
        ):
            return ServiceTarget(stable)  # T's new pods come up out of traffic
        return current

    services: Targets = {}
    if ctx.shares_main and full and not any(holds_pods(ctx, name) for name in others):
        services[ServiceRole.MAIN] = ALL_REVISIONS
    else:
        services[ServiceRole.MAIN] = aim(ServiceRole.MAIN, fallbacks)
    main = services[ServiceRole.MAIN]
    switched = full and (main == pinned or (main is not None and main.is_all and ctx.shares_main))
    for role in ctx.spec.service_roles:
        if role != ServiceRole.MAIN:
            # Once MAIN has switched, the old stable revision is being left: no Service falls back to it.
            services[role] = aim(role, [] if switched else fallbacks)

    new_stable = stable
    if switched and stable != target:
        if stable is not None:
            ctx.retire(stable)
        new_stable = target
        ctx.emit("TrafficSwitched", f"all traffic moved to {ctx.describe(target)} ({_why(revert)})")

    targets = {target: replicas}
    for name in others:
        targets[name] = keep_for_services(ctx, services, name)
    desired = approach(
        observed.revisions,
        targets,
        ceiling=None,
        floor=ctx.floor,
        scale_up_order=[target],
        scale_down_order=others,
    )

    t = ctx.rev(target)
    target_serving = serving(t)
    left_pods = sum(max(desired[name], ctx.rev(name).replicas, ctx.rev(name).terminating) for name in others)
    record = ctx.abort if revert.kind == "abort" else ctx.rollback if revert.kind == "undo" else None
    completed = record is not None and record.completed_at is not None
    # Done: the target serves every replica and no other revision has a pod left, not even one
    # draining: every connection has moved to the target.
    done = completed or (new_stable == target and target_serving >= replicas and left_pods == 0)
    return _decision(ctx, revert, desired, services, new_stable, done, target_serving, left_pods)


def _fully_serves(ctx: Context, name: str) -> bool:
    if ctx.replicas == 0:
        return True
    rev = ctx.rev(name)
    return rev.spec_replicas >= ctx.replicas and can_select(ctx.observed, name)


def _why(revert: Revert) -> str:
    return {"abort": "abort", "undo": "undo", "reapply": "fast rollback"}[revert.kind]


def _decision(
    ctx: Context,
    revert: Revert,
    desired: dict[str, int],
    services: Targets,
    stable: str | None,
    done: bool,
    target_serving: int,
    left_pods: int,
) -> Decision:
    target, replicas = revert.target, ctx.replicas
    where = ctx.describe(target)
    moving = f"{target_serving}/{replicas} pods of {where} serve"
    if left_pods:
        moving += f", {left_pods} pods of other revisions left (draining included)"
    kept = f"; draining {left_pods} pods of other revisions" if done and left_pods else ""
    phase: Phase
    stalled: tuple[str, str] | None = None
    if revert.kind == "abort":
        assert ctx.abort is not None
        head = f"aborted {ctx.describe(ctx.abort.revision)}: {ctx.abort.message}"
        if done:
            message = (
                f"{head}; {where} serves {replicas}/{replicas} pods; `kubectl zdr retry` or a new template "
                "rolls out again"
            )
        else:
            message = f"{head}; moving all traffic back to {where}: {moving}"
        phase, stalled = "Aborted", (ctx.abort.reason, message)
    elif revert.kind == "undo":
        if done:
            message = (
                f"rolled back to {where}; spec.template still asks for {ctx.describe(ctx.update)}: put the "
                f"template of {where} into spec to keep it, or `kubectl zdr retry` to roll "
                f"{ctx.describe(ctx.update)} out again"
            )
            phase, stalled = "Degraded", ("RolledBack", message)
        else:
            message = f"rolling back to {where}: {moving}"
            phase = "Progressing"
    else:
        message = f"fast rollback to {where}, stable before: {moving}"
        phase = "Progressing"
    return Decision(
        replicas=desired,
        services=services,
        stable=stable,
        phase=phase,
        message=message + kept,
        complete=False,
        floor=ctx.floor,
        stalled=stalled,
        reconciling=not done,
    )


__all__ = ["Revert", "RevertKind", "plan_revert", "revert_of"]
