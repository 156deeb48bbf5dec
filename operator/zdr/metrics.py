"""Prometheus metrics of the operator itself (served on ZDR_METRICS_ADDR, default 127.0.0.1:9108).

Two kinds:

- the reconcile loop: reaction latency, reconcile duration, errors, endpoint removal;
- rollouts, derived from ``status`` only. Gauges show the status as last written (info, phase,
  step). Histograms and counters count *transitions* between the status a reconcile read and the
  status it wrote (``transition``, a pure function): a transition is written once, so it is
  counted once, and a restarted operator, which reads the status written before, does not count
  it again. ``RolloutMetrics.record`` runs only after the plan was applied: a pass whose status
  write failed counts nothing, and the next pass finds the same transition again; a pass that
  failed after its status write loses that transition (counted never, rather than twice).

Label values are bounded: phases, strategies, verbs, results, abort reasons and step kinds are
closed sets (anything else maps to ``invalid`` or ``Other``); per-rollout labels appear only on
gauges, which hold one series per rollout and are removed with it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from zdr.api import (
    CanaryStep,
    CommandVerb,
    Phase,
    StrategyType,
    ZeroDowntimeRolloutStatus,
    parse_status,
)
from zdr.plan.types import Plan

PHASES: tuple[Phase, ...] = get_args(Phase)
STRATEGIES: tuple[str, ...] = get_args(StrategyType)
VERBS: tuple[str, ...] = get_args(CommandVerb)
RESULTS = ("Accepted", "Rejected")
ABORT_REASONS = (
    "RolloutAborted",
    "ProgressDeadlineExceeded",
    "CrashLoopBackOff",
    "TooManyRestarts",
    "ReadinessTimeout",
    "AnalysisFailed",
)
STEP_KINDS = ("setWeight", "pause", "analysis")
INVALID_VERB = "invalid"
"""The ``verb`` label of a command annotation that could not be read."""
OTHER_REASON = "Other"
UNKNOWN_STRATEGY = "Unknown"

REACTION_SECONDS = Histogram(
    "zdr_reaction_seconds",
    "From a watch event queuing a rollout to the operator's resulting write",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ENDPOINT_REMOVAL_SECONDS = Histogram(
    "zdr_endpoint_removal_seconds",
    "From a pod being taken out of zdr's Services to its absence from every EndpointSlice, seen by zdr",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
RECONCILE_ERRORS = Counter("zdr_reconcile_errors_total", "Reconciles that failed and were retried")
RECONCILE_SECONDS = Histogram(
    "zdr_reconcile_duration_seconds",
    "Duration of one reconcile of one rollout (read, observe, plan, apply), failed ones included",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

ROLLOUT_BUCKETS = (5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
STEP_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


# ---------------------------------------------------------------------------------------------
# Pure: what a status means, and what a status transition adds
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Transition:
    """What one status write adds to the histograms and counters."""

    rollout_seconds: float | None = None
    """A rollout of a new revision reached Healthy: its duration."""
    step: tuple[str, float] | None = None
    """A canary step was left for the next one (or for promotion): its kind and duration."""
    command: tuple[str, str] | None = None
    """A command was handled: (verb, result)."""
    abort_reason: str | None = None
    """A rollout was aborted, automatically or by command: the reason."""


def transition(
    previous: ZeroDowntimeRolloutStatus,
    new: ZeroDowntimeRolloutStatus,
    *,
    now: datetime,
    step_kinds: Sequence[str] = (),
    healthy_revision: str | None = None,
) -> Transition:
    """What going from ``previous`` (the status a reconcile read) to ``new`` (the status it wrote)
    adds. ``step_kinds`` are the kinds of the spec's canary steps, in order; ``healthy_revision`` is
    the revision this process last saw Healthy (None: unknown), see ``rollout_seconds``."""
    return Transition(
        rollout_seconds=rollout_seconds(previous, new, healthy_revision),
        step=completed_step(previous, new, now=now, step_kinds=step_kinds),
        command=handled_command(previous, new),
        abort_reason=new_abort(previous, new),
    )


def unready_since(status: ZeroDowntimeRolloutStatus) -> datetime | None:
    """Since when the rollout has not been Ready (None: Ready, or no Ready condition yet)."""
    ready = status.condition("Ready")
    if ready is None or ready.status == "True":
        return None
    return ready.last_transition_time


def rollout_seconds(
    previous: ZeroDowntimeRolloutStatus, new: ZeroDowntimeRolloutStatus, healthy_revision: str | None
) -> float | None:
    """The duration of a rollout that completes with this write, or None.

    A rollout completes when the phase turns Healthy with the template's revision stable, and that
    revision was rolled out in the stretch that ends here: the stretch is the time the rollout was
    not Ready (``unready_since``), and the revision's record was created in it (a new template:
    the duration counts from that creation). A scale, a restart or a pod lost and replaced make a
    stretch too, but of a revision created before it: those are not rollouts. A template that
    names a revision rolled out before (a revert in git) cannot be told from them by status
    alone: it counts (from the start of the stretch) only when ``healthy_revision``, the revision
    this process last saw Healthy, is known and differs.
    """
    revision = new.update_revision
    if new.phase != "Healthy" or previous.phase == "Healthy" or revision is None:
        return None
    if new.stable_revision != revision:
        return None
    if previous.rollback is not None and previous.rollback.revision == revision:
        return None  # the template now names the revision an undo already serves
    since = unready_since(previous)
    ready = new.condition("Ready")
    if since is None or ready is None or ready.status != "True":
        return None  # never seen unready: status lost, or written by another writer
    record = new.revision_record(revision)
    started = record.created_at if record is not None else None
    if started is None or started < since:
        if healthy_revision is None or healthy_revision == revision:
            return None
        started = since
    return max(0.0, (ready.last_transition_time - started).total_seconds())


def step_kind(step: CanaryStep) -> str:
    if step.set_weight is not None:
        return "setWeight"
    if step.analysis is not None:
        return "analysis"
    return "pause"


def completed_step(
    previous: ZeroDowntimeRolloutStatus,
    new: ZeroDowntimeRolloutStatus,
    *,
    now: datetime,
    step_kinds: Sequence[str],
) -> tuple[str, float] | None:
    """The canary step ``previous`` was at, when this write leaves it for a later step or for the
    promotion: (kind, seconds from ``stepStartedAt``). A step left by an abort, an undo or a new
    template did not complete. Steps entered and left within one reconcile were never written as
    the current step and are not seen."""
    index, started = previous.current_step_index, previous.step_started_at
    if index is None or started is None or index >= len(step_kinds):
        return None
    if new.update_revision != previous.update_revision or new.abort is not None or new.rollback is not None:
        return None
    if new.current_step_index is not None:
        if new.current_step_index <= index:
            return None
        ended = new.step_started_at or now
    elif new.stable_revision == new.update_revision:
        ended = now  # promoted in the pass that finished the steps
    else:
        return None
    return step_kinds[index], max(0.0, (ended - started).total_seconds())


def handled_command(previous: ZeroDowntimeRolloutStatus, new: ZeroDowntimeRolloutStatus) -> tuple[str, str] | None:
    """(verb, result) of a command handled by this write: a new id in ``lastCommand``."""
    command = new.last_command
    if command is None:
        return None
    if previous.last_command is not None and previous.last_command.id == command.id:
        return None
    verb = command.verb if command.verb in VERBS else INVALID_VERB
    return verb, command.result


def new_abort(previous: ZeroDowntimeRolloutStatus, new: ZeroDowntimeRolloutStatus) -> str | None:
    """The reason of an abort that begins with this write."""
    abort = new.abort
    if abort is None:
        return None
    before = previous.abort
    if before is not None and before.revision == abort.revision and before.aborted_at == abort.aborted_at:
        return None
    return abort.reason if abort.reason in ABORT_REASONS else OTHER_REASON


@dataclass(frozen=True)
class RolloutView:
    """What the gauges show for one rollout."""

    strategy: str
    revision: str
    phase: Phase | None
    step: int | None


def view(status: ZeroDowntimeRolloutStatus, strategy: str) -> RolloutView:
    return RolloutView(
        strategy=strategy if strategy in STRATEGIES else UNKNOWN_STRATEGY,
        revision=status.update_revision or "",
        phase=status.phase,
        step=status.current_step_index,
    )


# ---------------------------------------------------------------------------------------------
# The registry side
# ---------------------------------------------------------------------------------------------
Key = tuple[str, str]


class RolloutMetrics:
    """The rollout metrics in one registry, and the little this process remembers per rollout:
    the label set of its info series (to remove it when it changes) and the revision it last saw
    Healthy (see ``rollout_seconds``). Safe to call from several worker threads."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.info = Gauge(
            "zdr_rollout_info",
            "Always 1: one series per rollout, with its strategy and the revision of its template",
            ["namespace", "rollout", "strategy", "revision"],
            registry=registry,
        )
        self.phase = Gauge(
            "zdr_rollout_phase",
            "1 for the rollout's current phase (status.phase), 0 for the other phases",
            ["namespace", "rollout", "phase"],
            registry=registry,
        )
        self.step = Gauge(
            "zdr_rollout_step",
            "Index of the current canary step (status.currentStepIndex); absent when not stepping",
            ["namespace", "rollout"],
            registry=registry,
        )
        self.rollout_seconds = Histogram(
            "zdr_rollout_duration_seconds",
            "From the start of a revision's rollout to Healthy, once per completed rollout",
            ["strategy"],
            buckets=ROLLOUT_BUCKETS,
            registry=registry,
        )
        self.step_seconds = Histogram(
            "zdr_rollout_step_duration_seconds",
            "Time a canary step was the current step, once per step completed",
            ["kind"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.commands = Counter(
            "zdr_commands_total",
            "Commands handled (each request id once), by verb and result",
            ["verb", "result"],
            registry=registry,
        )
        self.aborts = Counter(
            "zdr_aborts_total",
            "Rollouts aborted, automatically or by command, by reason",
            ["reason"],
            registry=registry,
        )
        # Every label value known up front, so that rate() sees a first increment.
        for strategy in STRATEGIES:
            self.rollout_seconds.labels(strategy)
        for kind in STEP_KINDS:
            self.step_seconds.labels(kind)
        for verb in (*VERBS, INVALID_VERB):
            for result in RESULTS:
                self.commands.labels(verb, result)
        for reason in (*ABORT_REASONS, OTHER_REASON):
            self.aborts.labels(reason)
        self._lock = threading.Lock()
        self._shown: dict[Key, RolloutView] = {}
        self._healthy: dict[Key, str | None] = {}
        self.active = True
        """False while this replica does not reconcile (leader election): it records nothing."""

    def record(
        self,
        namespace: str,
        name: str,
        previous: ZeroDowntimeRolloutStatus,
        new: ZeroDowntimeRolloutStatus,
        *,
        strategy: str,
        step_kinds: Sequence[str] = (),
        now: datetime,
    ) -> Transition:
        """Count the transition from ``previous`` to ``new`` (written) and show ``new``."""
        key = (namespace, name)
        with self._lock:
            if not self.active:
                return Transition()
            if key not in self._healthy and previous.phase == "Healthy":
                self._healthy[key] = previous.stable_revision
            healthy = self._healthy.get(key)
            if new.phase == "Healthy":
                self._healthy[key] = new.stable_revision
            shown = self._shown.get(key)
            current = view(new, strategy)
            self._shown[key] = current
            self._show(key, shown, current)
        found = transition(previous, new, now=now, step_kinds=step_kinds, healthy_revision=healthy)
        if found.rollout_seconds is not None:
            self.rollout_seconds.labels(current.strategy).observe(found.rollout_seconds)
        if found.step is not None:
            self.step_seconds.labels(found.step[0]).observe(found.step[1])
        if found.command is not None:
            self.commands.labels(*found.command).inc()
        if found.abort_reason is not None:
            self.aborts.labels(found.abort_reason).inc()
        return found

    def _show(self, key: Key, shown: RolloutView | None, current: RolloutView) -> None:
        namespace, name = key
        if shown is not None and (shown.strategy, shown.revision) != (current.strategy, current.revision):
            with contextlib.suppress(KeyError):
                self.info.remove(namespace, name, shown.strategy, shown.revision)
        self.info.labels(namespace, name, current.strategy, current.revision).set(1)
        for phase in PHASES:
            self.phase.labels(namespace, name, phase).set(1 if phase == current.phase else 0)
        if current.step is None:
            with contextlib.suppress(KeyError):
                self.step.remove(namespace, name)
        else:
            self.step.labels(namespace, name).set(current.step)

    def forget(self, namespace: str, name: str) -> None:
        """The rollout is gone: remove its series."""
        key = (namespace, name)
        with self._lock:
            shown = self._shown.pop(key, None)
            self._healthy.pop(key, None)
            if shown is not None:
                self._remove(key, shown)

    def leading(self, leading: bool) -> None:
        """This replica starts or stops reconciling. One that stops drops its rollout series (the
        leader shows them now) and records nothing until it leads again."""
        with self._lock:
            self.active = leading
            if leading:
                return
            for key, shown in self._shown.items():
                self._remove(key, shown)
            self._shown.clear()
            self._healthy.clear()

    def _remove(self, key: Key, shown: RolloutView) -> None:
        namespace, name = key
        with contextlib.suppress(KeyError):
            self.info.remove(namespace, name, shown.strategy, shown.revision)
        for phase in PHASES:
            with contextlib.suppress(KeyError):
                self.phase.remove(namespace, name, phase)
        with contextlib.suppress(KeyError):
            self.step.remove(namespace, name)


ROLLOUTS = RolloutMetrics()


def record_rollout(rollout: Mapping[str, Any], plan: Plan) -> None:
    """After a reconcile applied ``plan`` to ``rollout`` (as it was read): update its metrics."""
    meta = rollout["metadata"]
    previous = parse_status(rollout.get("status"))
    if plan.spec is not None:
        strategy: str = plan.spec.strategy.type
        steps = (plan.spec.strategy.effective_canary.steps or []) if strategy == "Canary" else []
    else:  # a refused spec: its strategy as written, when it names one
        raw = ((rollout.get("spec") or {}).get("strategy") or {}).get("type")
        strategy, steps = (raw if isinstance(raw, str) else UNKNOWN_STRATEGY), []
    ROLLOUTS.record(
        meta["namespace"],
        meta["name"],
        previous,
        plan.status,
        strategy=strategy,
        step_kinds=[step_kind(step) for step in steps],
        now=datetime.now(UTC).replace(microsecond=0),
    )


def forget(namespace: str, name: str) -> None:
    ROLLOUTS.forget(namespace, name)


LEADER = Gauge(
    "zdr_leader",
    "1 on the replica that holds the zdr-operator Lease and reconciles, 0 on a stand-by",
)
LEADER.set(1)  # without leader election the one process always acts


def leading(leading: bool) -> None:
    """Leader election's ``on_change``: see ``RolloutMetrics.leading``."""
    LEADER.set(1 if leading else 0)
    ROLLOUTS.leading(leading)


def start_server() -> None:
    addr = os.environ.get("ZDR_METRICS_ADDR", "127.0.0.1:9108")
    if addr in ("", "off"):
        return
    host, _, port = addr.rpartition(":")
    # Another operator process may hold the port: metrics are best effort.
    with contextlib.suppress(OSError):
        start_http_server(int(port), addr=host or "0.0.0.0")
