"""Analysis checks as the planner sees them: which are due, which failed, which passed.

The measurements themselves are taken by ``zdr.analysis`` (the only module that talks to the
checked endpoints and to Prometheus) and recorded in ``status.analysis``; everything here is a
pure function of those records, the spec and ``now``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from zdr.api import AnalysisCheck, AnalysisResult, ZeroDowntimeRolloutSpec, duration_seconds


def definition(spec: ZeroDowntimeRolloutSpec, step: int | None, name: str) -> AnalysisCheck | None:
    """The check a result belongs to: background (step None) or of canary step ``step``."""
    if step is None:
        checks = spec.analysis.checks or []
    else:
        steps = spec.strategy.effective_canary.steps or [] if spec.strategy.type == "Canary" else []
        analysis = steps[step].analysis if 0 <= step < len(steps) else None
        checks = analysis.checks if analysis is not None else []
    return next((c for c in checks if c.name == name), None)


def next_due(result: AnalysisResult, check: AnalysisCheck) -> datetime:
    """When the next measurement is due."""
    if result.last_measured_at is not None:
        return result.last_measured_at + timedelta(seconds=duration_seconds(check.interval))
    delay = duration_seconds(check.initial_delay) if check.initial_delay is not None else 0.0
    return result.started_at + timedelta(seconds=delay)


def is_due(result: AnalysisResult, check: AnalysisCheck, now: datetime) -> bool:
    return now >= next_due(result, check)


def failed(result: AnalysisResult, check: AnalysisCheck) -> bool:
    """More failures than the check tolerates."""
    return result.failures > check.failure_limit


def passed(result: AnalysisResult, check: AnalysisCheck) -> bool:
    """An analysis step's check that took its count of passing measurements."""
    return result.successes >= check.count and not failed(result, check)


def render_query(query: str, *, revision: str, rollout: str, namespace: str) -> str:
    """A PromQL query with its placeholders replaced."""
    return (
        query.replace("{{revision}}", revision)
        .replace("{{rollout}}", rollout)
        .replace("{{namespace}}", namespace)
    )


def failure_text(result: AnalysisResult, check: AnalysisCheck) -> str:
    where = "background check" if result.step is None else f"step {result.step + 1} check"
    text = f"{where} {check.name} failed {result.failures} times (failureLimit {check.failure_limit})"
    if result.message:
        text += f": {result.message}"
    return text


__all__ = ["definition", "failed", "failure_text", "is_due", "next_due", "passed", "render_query"]
