"""``kubectl zdr status``: wait until a rollout is Healthy, for CI pipelines.

A rollout counts as done only when the operator has seen the current spec
(``status.observedGeneration == metadata.generation``) and reports phase Healthy; it has failed
when, for that generation, the phase is Degraded or Aborted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from zdr.api import SINGULAR, Duration, duration_seconds
from zdr.cli.cluster import EXIT_FAILED, EXIT_TIMEOUT, EXIT_USAGE, CliError, Connection, follow_rollout

FAILED_PHASES = ("Degraded", "Aborted")
_DURATION = TypeAdapter(Duration)


def parse_timeout(text: str, option: str = "--timeout") -> float:
    """Seconds of a duration such as ``90s``, ``5m``, ``1h30m`` or a plain number of seconds."""
    value: int | str = int(text) if re.fullmatch(r"\d+", text.strip()) else text.strip()
    try:
        return duration_seconds(_DURATION.validate_python(value))
    except ValidationError:
        raise CliError(
            f"{option} {text!r}: not a duration; use e.g. 90s, 5m or 1h30m", exit_code=EXIT_USAGE
        ) from None


def format_seconds(seconds: float) -> str:
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, sec = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{sec}s" if sec else f"{minutes}m"
    hours, mins = divmod(minutes, 60)
    return f"{hours}h{mins}m" if mins else f"{hours}h"


@dataclass(frozen=True)
class Verdict:
    state: Literal["healthy", "failed", "waiting"]
    line: str
    """What to print: the phase and the operator's message, or what is awaited."""


def verdict(obj: Mapping[str, Any]) -> Verdict:
    """Where a rollout stands, from its object alone."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    phase = status.get("phase")
    message = status.get("message") or ""
    if observed is None or phase is None:
        return Verdict("waiting", "waiting for the operator to report a status")
    if generation is not None and observed < generation:
        return Verdict(
            "waiting",
            f"waiting for the operator to observe generation {generation} (status is for {observed})",
        )
    line = f"{phase}: {message}" if message else str(phase)
    if phase == "Healthy":
        return Verdict("healthy", line)
    if phase in FAILED_PHASES:
        return Verdict("failed", line)
    return Verdict("waiting", line)


def wait_until_healthy(
    conn: Connection, name: str, timeout: float | None, emit: Callable[[str], None]
) -> str:
    """Follow the rollout; return the final line when Healthy, raise ``CliError`` otherwise.

    ``timeout`` None or 0 waits without limit. Each new situation is passed to ``emit``.
    """
    started = time.monotonic()
    deadline = started + timeout if timeout else None
    last_line = None
    last = Verdict("waiting", "waiting for the operator to report a status")
    who = f'{SINGULAR} "{name}" in namespace "{conn.namespace}"'
    for obj in follow_rollout(conn, name, deadline):
        last = verdict(obj)
        if last.line != last_line:
            last_line = last.line
            emit(f"[{format_seconds(time.monotonic() - started):>6}] {last.line}")
        if last.state == "healthy":
            return f"{who} is Healthy"
        if last.state == "failed":
            raise CliError(f"{who} failed: {last.line}", exit_code=EXIT_FAILED)
        if deadline is not None and time.monotonic() >= deadline:
            break
    assert timeout is not None
    raise CliError(
        f"timed out after {format_seconds(timeout)} waiting for {who} to be Healthy; last: {last.line}",
        exit_code=EXIT_TIMEOUT,
    )
