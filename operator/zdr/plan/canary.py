"""Canary: shift the share of serving pods to the new revision, step by step.

The MAIN Service selects every pod of the rollout, so the canary weight is the ratio of serving
pods: ``setWeight: w`` targets ``ceil(replicas * w / 100)`` pods of the update revision U and the
rest on the stable revision S. Pods move within the surge ceiling (never more than
``replicas + maxSurge`` pods, so a step's pods are never created all at once) and an old pod goes
only after a new one serves (the floor is ``replicas``).

Two direct-test Services select one revision each: ``<service>-canary`` the update revision
(once its pods serve; S until then) and ``<service>-stable`` the stable revision.

Steps:
- ``setWeight`` is done when every revision is at its target size and U's target pods serve;
- ``pause`` waits for its duration (from ``status.stepStartedAt``) or, without one, for
  ``kubectl zdr promote``; promote also skips any step (``--full``: all of them);
- ``analysis`` measures U at the weight in force; it is done once every check took its count of
  passing measurements (a check failing more than its failureLimit aborts the rollout; that is
  decided with the other gates, before the strategy);
- after the last step the weight is 100: U grows to ``replicas`` while S drains, keeping one pod
  while ``<service>-stable`` selects it. Once all of U serves, ``<service>-stable`` moves to U
  and U becomes stable; S is then kept warm for ``scaleDownDelaySeconds`` (``settle_shared``:
  back at full size, out of traffic), then scaled to 0.

The stable revision shrinks as the canary grows (pods are shifted, not added), so an abort
cannot just drop the canary: ``revert.py`` scales the stable revision back to full size first
and removes canary pods only as stable pods serve (as Argo Rollouts does).

The step index and its start time are in ``status``; a pass that finds a step done advances,
so a restart neither repeats nor skips a step (at worst a pause starts a few seconds late).
"""

from __future__ import annotations

from datetime import datetime

from zdr.api import CanaryStep, Phase, ServiceRole, duration_seconds, format_time
from zdr.plan import checks
from zdr.plan.common import (
    Context,
    Decision,
    Targets,
    approach,
    choose_target,
    forward_main,
    keep_for_services,
    main_serving,
    max_surge,
    seconds_until,
    serving,
    settle_shared,
    weight_replicas,
)
from zdr.plan.types import ServiceTarget


def plan_canary(ctx: Context) -> Decision:
    update = ctx.update
    observed = ctx.observed
    if (
        ctx.stable is not None
        and ctx.stable != update
        and observed.target(ServiceRole.STABLE) == ServiceTarget(update)
    ):
        ctx.retire(ctx.stable)
        ctx.emit(
            "RevisionPromoted", f"stable Service selects {ctx.describe(update)} (recorded after restart)"
        )
        ctx.stable = update
    if not ctx.in_rollout:
        return _steady(ctx)
    if ctx.paused:
        return _paused(ctx)
    return _shift(ctx)


def _ceiling(ctx: Context) -> int:
    params = ctx.spec.strategy.effective_canary
    surge = max_surge(params.max_surge, ctx.replicas)
    return ctx.replicas + max(surge, 1 if ctx.replicas > 0 else 0)


def _steady(ctx: Context) -> Decision:
    """No rollout running (or the first one): the update revision at full size, the previous one warm."""
    update = ctx.update
    observed = ctx.observed
    target = ServiceTarget(update)
    services: Targets = {
        ServiceRole.CANARY: choose_target(observed, ServiceRole.CANARY, target),
        ServiceRole.STABLE: choose_target(observed, ServiceRole.STABLE, target),
    }
    return settle_shared(ctx, ceiling=_ceiling(ctx), services=services)


def _paused(ctx: Context) -> Decision:
    observed = ctx.observed
    stable = ctx.stable
    assert stable is not None
    services = {
        ServiceRole.MAIN: forward_main(ctx),
        ServiceRole.CANARY: choose_target(
            observed, ServiceRole.CANARY, observed.target(ServiceRole.CANARY) or ServiceTarget(stable)
        ),
        ServiceRole.STABLE: choose_target(observed, ServiceRole.STABLE, ServiceTarget(stable)),
    }
    index, started = _step_state(ctx)
    return Decision(
        replicas=ctx.hold(),
        services=services,
        stable=stable,
        phase="Paused",
        message=f"paused at step {index + 1}/{len(_steps(ctx))} of {ctx.describe(ctx.update)}",
        complete=False,
        paused_reason="SpecPaused" if ctx.spec.paused else "PausedByCommand",
        step_index=index,
        step_started_at=started,
        canary_weight=_weight(ctx),
    )


def _steps(ctx: Context) -> list[CanaryStep]:
    return list(ctx.spec.strategy.effective_canary.steps or [])


def _step_state(ctx: Context) -> tuple[int, datetime]:
    """The step index and its start, carried over while the update revision is the same."""
    previous = ctx.previous
    if previous.update_revision == ctx.update and previous.current_step_index is not None:
        index = min(previous.current_step_index, len(_steps(ctx)))
        return index, previous.step_started_at or ctx.now
    return 0, ctx.now


def _target_weight(steps: list[CanaryStep], index: int) -> int:
    """Weight in force at step ``index``: its own setWeight, else the last one before it; 100 at the end."""
    if index >= len(steps):
        return 100
    for step in reversed(steps[: index + 1]):
        if step.set_weight is not None:
            return step.set_weight
    return 0


def _targets(ctx: Context, weight: int, services: Targets) -> dict[str, int]:
    stable = ctx.stable
    assert stable is not None
    new = weight_replicas(ctx.replicas, weight)
    targets = {ctx.update: max(new, keep_for_services(ctx, services, ctx.update))}
    for name in ctx.others():
        targets[name] = keep_for_services(ctx, services, name)
    targets[stable] = max(ctx.replicas - new, keep_for_services(ctx, services, stable))
    return targets


def _services(ctx: Context, weight: int) -> Targets:
    stable = ctx.stable
    assert stable is not None
    observed = ctx.observed
    canary = ServiceTarget(ctx.update) if weight_replicas(ctx.replicas, weight) > 0 else ServiceTarget(stable)
    return {
        ServiceRole.MAIN: forward_main(ctx),
        ServiceRole.CANARY: choose_target(observed, ServiceRole.CANARY, canary, fallbacks=[stable]),
        ServiceRole.STABLE: choose_target(observed, ServiceRole.STABLE, ServiceTarget(stable)),
    }


def _reached(ctx: Context, targets: dict[str, int]) -> bool:
    """Every revision is at its target size and the update revision's target pods serve."""
    sizes = all(ctx.rev(name).spec_replicas == n for name, n in targets.items())
    return sizes and serving(ctx.rev(ctx.update)) >= targets[ctx.update]


def _weight(ctx: Context) -> int:
    total = main_serving(ctx.observed)
    if total == 0:
        return 0
    return round(100 * serving(ctx.rev(ctx.update)) / total)


def _shift(ctx: Context) -> Decision:
    steps = _steps(ctx)
    count = len(steps)
    update = ctx.update
    stable = ctx.stable
    assert stable is not None
    index, started = _step_state(ctx)
    if ctx.promote:
        skipped = count if ctx.promote_full else min(count, index + 1)
        ctx.emit(
            "StepSkipped",
            f"promote: {'all remaining steps' if ctx.promote_full else f'step {index + 1}/{count}'} "
            f"of {ctx.describe(update)} skipped",
        )
        index, started = skipped, ctx.now

    requeue = None
    while True:
        weight = _target_weight(steps, index)
        services = _services(ctx, weight)
        targets = _targets(ctx, weight, services)
        if index >= count:
            break
        step = steps[index]
        if step.set_weight is not None:
            if not _reached(ctx, targets):
                break
            ctx.emit("StepCompleted", f"step {index + 1}/{count}: weight {step.set_weight}% reached")
        elif step.analysis is not None:
            pending = [c for c in step.analysis.checks if not checks.passed(ctx.check(index, c), c)]
            if pending:
                break
            ctx.emit(
                "StepCompleted", f"step {index + 1}/{count}: analysis passed ({_results_text(ctx, index)})"
            )
        else:
            assert step.pause is not None
            if step.pause.duration is None:
                break
            left = seconds_until(ctx.now, started, duration_seconds(step.pause.duration))
            if left > 0:
                requeue = left
                break
            ctx.emit("StepCompleted", f"step {index + 1}/{count}: pause of {step.pause.duration} ended")
        index, started = index + 1, ctx.now
        requeue = None

    desired = approach(
        ctx.observed.revisions,
        targets,
        ceiling=_ceiling(ctx),
        floor=ctx.replicas,
        scale_up_order=[update, stable],
        scale_down_order=[*ctx.others(), stable, update],
    )
    new = ctx.rev(update)
    new_serving = serving(new)
    new_stable = stable
    if index >= count and new_serving >= ctx.replicas and new.spec_replicas == ctx.replicas:
        promoted = choose_target(ctx.observed, ServiceRole.STABLE, ServiceTarget(update))
        if promoted == ServiceTarget(update):
            services[ServiceRole.STABLE] = promoted
            services[ServiceRole.CANARY] = choose_target(ctx.observed, ServiceRole.CANARY, promoted)
            ctx.retire(stable)
            new_stable = update
            ctx.emit("RevisionPromoted", f"{ctx.describe(update)} serves every replica and is now stable")

    paused_reason = None
    phase: Phase = "Progressing"
    if new_stable == update:
        message = f"{ctx.describe(update)} promoted; draining {ctx.describe(stable)}"
    elif index >= count:
        message = f"promoting {ctx.describe(update)}: {new_serving}/{ctx.replicas} pods serve"
    else:
        step = steps[index]
        where = f"step {index + 1}/{count}"
        if step.set_weight is not None:
            message = (
                f"{where}: setWeight {step.set_weight}: {new_serving}/{targets[update]} canary pods serve"
            )
        elif step.analysis is not None:
            message = f"{where}: analysis at weight {_weight(ctx)}%: {_results_text(ctx, index)}"
        elif step.pause is not None and step.pause.duration is not None:
            phase, paused_reason = "Paused", "CanaryPauseStep"
            message = (
                f"{where}: paused for {step.pause.duration} from {format_time(started)} "
                f"at weight {_weight(ctx)}%"
            )
        else:
            phase, paused_reason = "Paused", "AwaitingPromotion"
            message = f"{where}: paused at weight {_weight(ctx)}% until `kubectl zdr promote`"
    return Decision(
        replicas=desired,
        services=services,
        stable=new_stable,
        phase=phase,
        message=message,
        complete=False,
        paused_reason=paused_reason,
        step_index=None if new_stable == update else index,
        step_started_at=None if new_stable == update else started,
        canary_weight=None if new_stable == update else _weight(ctx),
        requeue_after=requeue,
    )


def _results_text(ctx: Context, step: int) -> str:
    parts = []
    for (index, name), result in sorted(ctx.results.items(), key=lambda kv: kv[0][1]):
        if index != step:
            continue
        check = ctx.checks[(index, name)]
        parts.append(f"{name} {result.successes}/{check.count} passed, {result.failures} failed")
    return ", ".join(parts)
