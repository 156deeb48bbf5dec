"""RollingUpdate: replace pods a few at a time behind one Service that selects the whole rollout.

The update revision grows within ``replicas + maxSurge``; an old pod is removed only when a new
pod is available and a ready endpoint of the Service, so serving pods never drop below
``replicas - maxUnavailable`` (with the default maxUnavailable 0: never below replicas).
Superseded revisions (a template changed mid-rollout) drain first, the previous stable last.

Once every pod of the update revision serves it is the stable revision; the previous one is
then kept warm for ``scaleDownDelaySeconds`` (``settle_shared``): once its last pods that took
traffic have drained, the Service is pinned to the new revision and the previous one is brought
back to full size with fresh pods out of traffic, so an undo needs no new pods.
"""

from __future__ import annotations

from zdr.api import Phase, ServiceRole
from zdr.plan.common import (
    Context,
    Decision,
    Targets,
    approach,
    forward_main,
    keep_for_services,
    max_surge,
    max_unavailable,
    serving,
    settle_shared,
)


def _ceiling(ctx: Context) -> int:
    params = ctx.spec.strategy.effective_rolling_update
    replicas = ctx.replicas
    surge = max_surge(params.max_surge, replicas)
    if surge == 0 and max_unavailable(params.max_unavailable, replicas) == 0:
        surge = 1  # both rounded to 0: keep capacity and replace one pod at a time
    return replicas + surge


def plan_rolling(ctx: Context) -> Decision:
    replicas = ctx.replicas
    floor = ctx.floor
    update = ctx.update
    if not ctx.in_rollout:
        return settle_shared(ctx, ceiling=_ceiling(ctx), services={})
    services: Targets = {ServiceRole.MAIN: forward_main(ctx)}

    if ctx.paused:
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

    stable = ctx.stable
    assert stable is not None
    old = [name for name in ctx.others() if name in ctx.observed.revisions]
    if stable in ctx.observed.revisions:
        old.append(stable)
    targets = {update: replicas, **{name: keep_for_services(ctx, services, name) for name in old}}
    desired = approach(
        ctx.observed.revisions,
        targets,
        ceiling=_ceiling(ctx),
        floor=floor,
        scale_up_order=[update],
        scale_down_order=[*old, update],
    )

    new = ctx.rev(update)
    new_serving = serving(new)
    if new_serving >= replicas:
        # Every new pod serves: the update revision is stable. The previous one drains like any
        # old pod; settle_shared keeps it warm afterwards with fresh pods out of traffic.
        ctx.retire(stable)
        return Decision(
            replicas=desired,
            services=services,
            stable=update,
            phase="Progressing",
            message=f"{ctx.describe(update)} serves {replicas}/{replicas} pods; retiring {ctx.describe(stable)}",
            complete=False,
            floor=floor,
        )
    old_pods = sum(max(desired[name], ctx.rev(name).replicas) for name in old)
    phase: Phase = "Progressing"
    return Decision(
        replicas=desired,
        services=services,
        stable=stable,
        phase=phase,
        message=(
            f"rolling out {ctx.describe(update)}: {new_serving}/{replicas} new pods serve, "
            f"{old_pods} old pods left"
        ),
        complete=False,
        floor=floor,
    )


def _pause_reason(ctx: Context) -> str:
    return "SpecPaused" if ctx.spec.paused else "PausedByCommand"
