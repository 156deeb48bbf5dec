"""RollingUpdate: replace pods a few at a time behind one Service that selects the whole rollout.

The update revision grows within ``replicas + maxSurge``; an old pod is removed only when a new
pod is available and a ready endpoint of the Service, so serving pods never drop below
``replicas - maxUnavailable`` (with the default maxUnavailable 0: never below replicas).
Superseded revisions (a template changed mid-rollout) drain first, the previous stable last.
"""

from __future__ import annotations

from zdr.api import Phase, ServiceRole
from zdr.plan.common import (
    ALL_REVISIONS,
    Context,
    Decision,
    Targets,
    approach,
    max_surge,
    max_unavailable,
    serving,
)


def plan_rolling(ctx: Context) -> Decision:
    params = ctx.spec.strategy.effective_rolling_update
    replicas = ctx.replicas
    surge = max_surge(params.max_surge, replicas)
    unavailable = max_unavailable(params.max_unavailable, replicas)
    if surge == 0 and unavailable == 0:
        surge = 1  # both rounded to 0: keep capacity and replace one pod at a time
    floor = replicas - unavailable
    services: Targets = {ServiceRole.MAIN: ALL_REVISIONS}
    update = ctx.update

    if ctx.paused and ctx.in_rollout:
        return Decision(
            replicas=ctx.hold(),
            services=services,
            stable=ctx.stable,
            phase="Paused",
            message=f"paused while rolling out {ctx.describe(update)}",
            complete=False,
            paused_reason=_pause_reason(ctx),
            floor=floor,
        )

    old = [name for name in ctx.others()] + ([ctx.stable] if ctx.stable and ctx.stable != update else [])
    old = [name for name in old if name in ctx.observed.revisions]
    targets = {update: replicas, **{name: 0 for name in old}}
    desired = approach(
        ctx.observed.revisions,
        targets,
        ceiling=replicas + surge,
        floor=floor,
        scale_up_order=[update],
        scale_down_order=[*old, update],
    )

    new = ctx.rev(update)
    new_serving = serving(new)
    old_left = [name for name in old if desired[name] > 0 or ctx.rev(name).replicas > 0]
    stable = ctx.stable
    if new_serving >= replicas and all(desired[name] == 0 for name in old) and stable != update:
        if stable is not None:
            ctx.retire(stable)
        stable = update
    complete = stable == update and new_serving >= replicas and not old_left
    phase: Phase
    if complete:
        message = f"{ctx.describe(update)} serves {replicas}/{replicas} pods"
        phase = "Healthy"
    elif stable == update and not old_left:
        message = f"waiting for pods of {ctx.describe(update)} to serve: {new_serving}/{replicas}"
        phase = "Progressing"
    else:
        old_pods = sum(max(desired[name], ctx.rev(name).replicas) for name in old)
        message = (
            f"rolling out {ctx.describe(update)}: {new_serving}/{replicas} new pods serve, "
            f"{old_pods} old pods left"
        )
        phase = "Progressing"
    return Decision(
        replicas=desired,
        services=services,
        stable=stable,
        phase=phase,
        message=message,
        complete=complete,
        floor=floor,
    )


def _pause_reason(ctx: Context) -> str:
    return "SpecPaused" if ctx.spec.paused else "PausedByCommand"
