"""BlueGreen: the new revision runs at full size behind the preview Service; one write switches the
active (MAIN) Service to it.

Sequence for an update revision U replacing the stable revision S:

1. U is scaled to ``replicas`` at once (blue-green costs a second full set of pods).
2. The preview Service moves to U once every pod of U is available (until then it keeps
   selecting S, or moves back to S from a superseded revision, so it always answers).
3. U is *preview-ready* when every pod of U is a ready endpoint of the preview Service;
   ``status.previewReadyAt`` records when (autoPromotionSeconds counts from there).
4. Promotion (automatic after autoPromotionSeconds, or ``kubectl zdr promote``) switches the
   MAIN Service's selector from S to U in one write, only while U is preview-ready.
   ``status.stableRevision`` becomes U and S's ``retiredAt`` is recorded.
5. S's pods, which took traffic until the switch, drain at once (kept-alive connections and
   WebSockets end with the app's clean close and reconnect to U); once S has no pod left, it
   stands by with fresh pods at full size, out of traffic, until ``scaleDownDelaySeconds``
   after the switch, then goes to 0 replicas (kept for rollback within revisionHistoryLimit).

A switch that was written but not recorded (the operator died in between) is recognised from
the MAIN Service's observed selector and recorded then.
"""

from __future__ import annotations

from zdr.api import Phase, ServiceRole
from zdr.plan.common import (
    Context,
    Decision,
    Targets,
    choose_target,
    earliest,
    keep_for_services,
    seconds_until,
    serving,
)
from zdr.plan.types import ServiceTarget


def plan_blue_green(ctx: Context) -> Decision:
    params = ctx.spec.strategy.effective_blue_green
    replicas = ctx.replicas
    update = ctx.update
    observed = ctx.observed

    if (
        ctx.stable is not None
        and ctx.stable != update
        and observed.target(ServiceRole.MAIN) == ServiceTarget(update)
    ):
        ctx.retire(ctx.stable)
        ctx.emit("TrafficSwitched", f"active Service selects {ctx.describe(update)} (recorded after restart)")
        ctx.stable = update

    if not ctx.in_rollout:
        return _steady(ctx)

    stable = ctx.stable
    assert stable is not None
    if ctx.paused:
        services = {
            ServiceRole.MAIN: choose_target(observed, ServiceRole.MAIN, ServiceTarget(stable)),
            ServiceRole.PREVIEW: choose_target(
                observed, ServiceRole.PREVIEW, observed.target(ServiceRole.PREVIEW) or ServiceTarget(stable)
            ),
        }
        return Decision(
            replicas=ctx.hold(),
            services=services,
            stable=stable,
            phase="Paused",
            message=f"paused while rolling out {ctx.describe(update)}",
            complete=False,
            paused_reason="SpecPaused" if ctx.spec.paused else "PausedByCommand",
        )

    preview = choose_target(observed, ServiceRole.PREVIEW, ServiceTarget(update), fallbacks=[stable])
    new = ctx.rev(update)
    preview_serving = serving(new, ServiceRole.PREVIEW)
    preview_ready = (
        observed.target(ServiceRole.PREVIEW) == ServiceTarget(update)
        and new.spec_replicas == replicas
        and preview_serving >= replicas
    )
    same_rollout = ctx.previous.update_revision == update
    ready_at = None
    if preview_ready:
        ready_at = (
            ctx.previous.preview_ready_at if same_rollout and ctx.previous.preview_ready_at else ctx.now
        )
    requested = bool(ctx.promote or (same_rollout and ctx.previous.promote_requested))
    auto_left = seconds_until(ctx.now, ready_at, params.auto_promotion_seconds) if ready_at else None
    promote = preview_ready and (requested or (params.auto_promotion and auto_left == 0))

    main = choose_target(observed, ServiceRole.MAIN, ServiceTarget(update if promote else stable))
    services = {ServiceRole.MAIN: main, ServiceRole.PREVIEW: preview}
    new_stable = stable
    if main == ServiceTarget(update):
        ctx.retire(stable)
        new_stable = update
        ctx.emit(
            "TrafficSwitched",
            f"active Service switched from {ctx.describe(stable)} to {ctx.describe(update)}",
        )

    targets = {update: replicas, stable: replicas if new_stable == stable else ctx.rev(stable).spec_replicas}
    requeue, standby = _retiring(ctx, services, targets)

    phase: Phase
    paused_reason: str | None
    if new_stable == update:
        phase, message, paused_reason = "Progressing", f"switched traffic to {ctx.describe(update)}", None
    elif not preview_ready:
        phase, paused_reason = "Progressing", None
        if preview != ServiceTarget(update):
            message = (
                f"waiting for {ctx.describe(update)} to be available before preview: "
                f"{min(new.available_replicas, new.spec_replicas)}/{replicas}"
            )
        else:
            message = (
                f"waiting for preview pods of {ctx.describe(update)} to serve: {preview_serving}/{replicas}"
            )
    elif params.auto_promotion or requested:
        phase, paused_reason = "Progressing", None
        assert ready_at is not None
        message = (
            f"preview of {ctx.describe(update)} serves; promotion after {params.auto_promotion_seconds}s"
        )
        requeue = earliest(requeue, auto_left)
    else:
        phase, paused_reason = "Paused", "AwaitingPromotion"
        message = f"preview of {ctx.describe(update)} serves; waiting for `kubectl zdr promote`"
    return Decision(
        replicas=targets,
        services=services,
        stable=new_stable,
        phase=phase,
        message=message,
        complete=False,
        paused_reason=paused_reason,
        preview_ready_at=ready_at if new_stable != update else None,
        promote_requested=True if requested and new_stable != update else None,
        requeue_after=requeue,
        standby=standby,
    )


def _steady(ctx: Context) -> Decision:
    """No rollout running: the stable revision (or the very first one) at full size, both Services on it."""
    replicas = ctx.replicas
    update = ctx.update
    observed = ctx.observed
    target = ServiceTarget(update)
    services = {
        ServiceRole.MAIN: choose_target(observed, ServiceRole.MAIN, target),
        ServiceRole.PREVIEW: choose_target(observed, ServiceRole.PREVIEW, target),
    }
    targets = {update: replicas}
    requeue, warm = _retiring(ctx, services, targets)
    main_serving = serving(ctx.rev(update))
    stable = ctx.stable
    if stable is None and services[ServiceRole.MAIN] == target and main_serving >= replicas:
        stable = update
    complete = stable == update and main_serving >= replicas
    if complete:
        message = f"{ctx.describe(update)} serves {replicas}/{replicas} pods"
        if warm:
            message += "; kept warm for rollback: " + ", ".join(ctx.describe(name) for name in warm)
    else:
        message = f"waiting for pods of {ctx.describe(update)} to serve: {main_serving}/{replicas}"
    return Decision(
        replicas=targets,
        services=services,
        stable=stable,
        phase="Healthy" if complete else "Progressing",
        message=message,
        complete=complete,
        requeue_after=requeue,
        standby=warm,
    )


def _retiring(
    ctx: Context, services: Targets, targets: dict[str, int]
) -> tuple[float | None, tuple[str, ...]]:
    """Sizes of the revisions that no longer serve, into ``targets``: what Services need of them,
    except that the revision the last switch replaced stands by during its scale-down delay, at
    full size with fresh pods once every pod that took traffic has drained. Returns when that
    delay ends and the revisions standing by."""
    requeue = None
    standby: list[str] = []
    others = ctx.others()
    latest = ctx.latest_retired(others)
    for name in others:
        keep = keep_for_services(ctx, services, name)
        left = ctx.warm_left(name) if name == latest else None
        targets[name] = keep
        if left is None:
            continue
        requeue = earliest(requeue, left)
        if ctx.drained(name):
            targets[name] = max(ctx.replicas, keep)
            standby.append(name)
    return requeue, tuple(standby)
