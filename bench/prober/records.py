"""Reading the probers' JSON lines and judging them: summaries, timelines and the validity rule.

A run is valid only when the instrument could have seen every failure: each prober wrote its
``start`` and ``done`` records (it was not killed), every request it sent has a record with an
outcome, every WebSocket client is accounted for, and the schedule held: in every full 1 s
window of actual send time each HTTP mode sent at least 95 % of its target rate, and its send
lag p99 stayed within 250 ms. A request counts as a success only when its outcome is ``ok``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.prober.http import Record

MIN_WINDOW_SHARE = 0.95
MAX_LAG_P99_MS = 250.0
WARMUP_SECONDS = 1.0
"""A prober's first second (connections being opened, the interpreter warming up) is not judged:
``Traffic.start`` returns only after it, so no scenario begins before the schedule is steady."""


class BadRecords(ValueError):
    """A JSON lines file holds a line that is not a record: the prober's output is broken."""


def read_jsonl(paths: Iterable[Path]) -> list[Record]:
    """Every record of the files; an unparseable complete line raises ``BadRecords``."""
    records: list[Record] = []
    for path in paths:
        if not path.exists():
            continue
        with path.open() as f:
            for n, line in enumerate(f, 1):
                if not line.endswith("\n"):
                    break  # a line still being written (the prober runs)
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise BadRecords(f"{path}:{n}: not JSON: {line[:80]!r}") from exc
    return records


class Tail:
    """Reads the complete lines appended to a JSONL file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""

    def read(self) -> list[Record]:
        if not self.path.exists():
            return []
        with self.path.open() as f:
            f.seek(self.offset)
            chunk = f.read()
            self.offset = f.tell()
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        out: list[Record] = []
        for line in lines:
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError as exc:
                    raise BadRecords(f"{self.path}: not JSON: {line[:80]!r}") from exc
        return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def http_records(records: Iterable[Record]) -> Iterator[Record]:
    return (r for r in records if r.get("kind") == "http")


def ws_ends(records: Iterable[Record]) -> Iterator[Record]:
    return (r for r in records if r.get("kind") == "ws" and r.get("event") == "end")


def is_failure(r: Record) -> bool:
    """An HTTP request whose outcome is not ``ok`` (a missing outcome included), or an abnormal
    WebSocket end."""
    if r.get("kind") == "http":
        return r.get("outcome") != "ok"
    return r.get("kind") == "ws" and r.get("event") == "end" and r.get("abnormal") is not False


def failed(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if is_failure(r)]


def last_on_other_version(
    records: Iterable[Record], target: str, start: float, end: float = float("inf")
) -> float | None:
    """Seconds after ``start`` at which a connection was last seen on another version than
    ``target``, over every kind of connection: a request sent on a new or a kept-alive connection
    and answered by another version, or a WebSocket to another version still open then (its end,
    clean or not). 0.0: none after ``start``. None (not measured): no answer from ``target`` came
    after that last moment before ``end``, or a WebSocket on another version was still open at
    ``end``, so the records cannot show that every connection had moved."""
    answered: list[float] = []
    last: float | None = None
    for r in records:
        if r.get("kind") == "http":
            t = float(r["t_send"])
            if r.get("outcome") != "ok" or not start <= t < end:
                continue
            if r.get("version") == target:
                answered.append(t)
            else:
                last = t if last is None else max(last, t)
        elif r.get("kind") == "ws" and r.get("event") == "end" and r.get("version") not in (None, target):
            t = float(r["t"])
            if t < start or float(r["t_open"]) >= end:
                continue
            if t >= end:
                return None
            last = t if last is None else max(last, t)
    if last is None:
        return 0.0
    if not any(t > last for t in answered):
        return None
    return round(last - start, 2)


def sent_at(r: Record) -> float:
    """When the request actually left (its scheduled time plus its send lag)."""
    return float(r["t_send"]) + float(r.get("lag_ms") or 0.0) / 1000


@dataclass(frozen=True)
class ModeSummary:
    sent: int
    failed: int
    failure_pct: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    rate: float
    """Requests per second actually sent (first to last actual send)."""
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    lag_max_ms: float | None
    errors: dict[str, int]
    per_second: list[int] = field(default_factory=list)
    """Requests actually sent in each full 1 s window of the run (the validity rule's input; after the warm-up)."""
    target_rate: float | None = None

    @property
    def min_window_rate(self) -> int | None:
        return min(self.per_second) if self.per_second else None


@dataclass(frozen=True)
class VersionSpan:
    count: int
    first: float
    last: float


@dataclass(frozen=True)
class Validity:
    prober_errors: list[str]
    """The prober's own faults: records missing, outcomes missing, clients unaccounted for."""
    schedule: list[str]
    """Where the run fell behind its schedule."""

    @property
    def valid(self) -> bool:
        return not self.prober_errors and not self.schedule

    @property
    def reasons(self) -> list[str]:
        return self.prober_errors + self.schedule

    def message(self) -> str:
        return "valid" if self.valid else "INVALID: " + "; ".join(self.reasons)


@dataclass(frozen=True)
class Summary:
    sent: int
    failed: int
    failure_pct: float
    p50_ms: float | None
    p99_ms: float | None
    errors: dict[str, int]
    modes: dict[str, ModeSummary]
    versions: dict[str, VersionSpan]
    """Responses per version with the first and last send time that got one."""
    ws_connections: int
    ws_abnormal: int
    ws_ends: dict[str, int]
    ws_close_codes: dict[str, int]
    ws_versions: dict[str, int]
    ws_clients: dict[str, int]
    """Final state of each WebSocket client: ``stopped`` or ``dead``, counted."""
    validity: Validity
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.validity.valid

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["valid"] = self.valid
        return d

    def report(self) -> dict[str, Any]:
        """The command line's JSON summary."""
        return {
            "modes": {
                m: {
                    "sent": s.sent,
                    "failed": s.failed,
                    "errors": s.errors,
                    "lag_ms": {"p50": s.lag_p50_ms, "p99": s.lag_p99_ms, "max": s.lag_max_ms},
                    "per_second": s.per_second,
                    "target_rate": s.target_rate,
                }
                for m, s in self.modes.items()
            },
            "websocket": {
                "connections": self.ws_connections,
                "abnormal": self.ws_abnormal,
                "ends": self.ws_ends,
                "close_codes": self.ws_close_codes,
                "clients": self.ws_clients,
            },
            "versions": {v: s.count for v, s in self.versions.items()},
            "valid": self.valid,
            "invalid_reasons": self.validity.reasons,
        }

    def line(self) -> str:
        p50 = "-" if self.p50_ms is None else f"{self.p50_ms:.1f}"
        p99 = "-" if self.p99_ms is None else f"{self.p99_ms:.1f}"
        versions = ", ".join(f"{v}: {s.count}" for v, s in self.versions.items())
        modes = "; ".join(
            f"{m}: {s.failed}/{s.sent} failed, lag p99 {s.lag_p99_ms} ms, min 1 s window {s.min_window_rate}/s"
            for m, s in self.modes.items()
        )
        return (
            f"sent {self.sent}, failed {self.failed} ({self.failure_pct:.3f}%), p50 {p50} ms, p99 {p99} ms "
            f"[{modes}]; ws connections {self.ws_connections}, abnormal ws ends {self.ws_abnormal}, "
            f"clients {self.ws_clients or '-'}; versions {versions}; errors {dict(self.errors) or 'none'}; "
            f"{self.validity.message()}"
        )


def _windows(recs: Sequence[Record], start: float, end: float) -> list[int]:
    """Requests actually sent in each full 1 s window of [start, end)."""
    n = int(math.floor(end - start))
    counts = [0] * max(n, 0)
    for r in recs:
        i = int(math.floor(sent_at(r) - start))
        if 0 <= i < n:
            counts[i] += 1
    return counts


def _mode_summary(recs: Sequence[Record], meta: Record | None = None) -> ModeSummary:
    bad = [r for r in recs if is_failure(r)]
    ok_lat = [float(r["latency_ms"]) for r in recs if not is_failure(r) and r.get("latency_ms") is not None]
    judged = recs
    if meta is not None:
        after = float(meta.get("t_start", 0.0)) + WARMUP_SECONDS
        judged = [r for r in recs if float(r["t_send"]) >= after]
    lags = [float(r.get("lag_ms") or 0.0) for r in judged]
    times = [sent_at(r) for r in recs]
    span = max(times) - min(times) if len(times) > 1 else 0.0
    per_second: list[int] = []
    if meta is not None and recs:
        first = float(meta.get("t_start", min(float(r["t_send"]) for r in recs))) + WARMUP_SECONDS
        last = max(float(r["t_send"]) for r in recs)
        per_second = _windows(recs, first, last)
    return ModeSummary(
        sent=len(recs),
        failed=len(bad),
        failure_pct=100.0 * len(bad) / len(recs) if recs else 0.0,
        p50_ms=percentile(ok_lat, 50),
        p99_ms=percentile(ok_lat, 99),
        max_ms=max(ok_lat) if ok_lat else None,
        rate=(len(recs) - 1) / span if span > 0 else 0.0,
        lag_p50_ms=percentile(lags, 50),
        lag_p99_ms=percentile(lags, 99),
        lag_max_ms=max(lags) if lags else None,
        errors=dict(Counter(str(r.get("outcome") or "no_outcome") for r in bad)),
        per_second=per_second,
        target_rate=float(meta["rate"]) if meta is not None else None,
    )


def validity(records: Sequence[Record]) -> Validity:
    """The validity rule over a whole run (module docstring)."""
    reasons: list[str] = []
    late: list[str] = []
    metas = [r for r in records if r.get("kind") == "meta"]
    starts = [m for m in metas if m.get("event") == "start"]
    dones = {(m.get("prober")): m for m in metas if m.get("event") == "done"}
    if not starts:
        return Validity(["no prober start record: the schedule cannot be judged"], [])
    by_mode: dict[str, list[Record]] = {}
    for r in http_records(records):
        by_mode.setdefault(str(r.get("mode")), []).append(r)
    for start in starts:
        name = str(start.get("prober"))
        done = dones.get(name)
        if done is None:
            reasons.append(f"prober {name} wrote no done record (killed or crashed before the end)")
        if start.get("http_mode"):
            mode = str(start["http_mode"])
            recs = by_mode.get(mode, [])
            missing = [r for r in recs if "outcome" not in r]
            if missing:
                reasons.append(f"{mode}: {len(missing)} record(s) without an outcome")
            if done is not None and int(done.get("sent", -1)) != len(recs):
                reasons.append(f"{mode}: sent {done.get('sent')} requests but {len(recs)} records")
            summary = _mode_summary(recs, start)
            floor = MIN_WINDOW_SHARE * float(start["rate"])
            low = [(i, c) for i, c in enumerate(summary.per_second) if c < floor]
            if low:
                i, c = min(low, key=lambda x: x[1])
                late.append(
                    f"{mode}: {len(low)} 1 s window(s) below {floor:.0f}/s (lowest {c}/s at t+{i}s "
                    f"of {float(start['rate']):g}/s)"
                )
            if summary.lag_p99_ms is not None and summary.lag_p99_ms > MAX_LAG_P99_MS:
                late.append(
                    f"{mode}: send lag p99 {summary.lag_p99_ms:.0f} ms > {MAX_LAG_P99_MS:.0f} ms "
                    f"(max {summary.lag_max_ms:.0f} ms)"
                )
        if start.get("ws_clients"):
            expected = int(start["ws_clients"])
            clients = {
                int(r["client"]) for r in records if r.get("kind") == "ws" and r.get("event") == "client"
            }
            if len(clients) != expected:
                reasons.append(f"websocket: {len(clients)} of {expected} clients accounted for")
    return Validity(reasons, late)


def timeline(records: Iterable[Record], bucket: float = 1.0) -> list[dict[str, Any]]:
    """Per ``bucket`` seconds of send time: responses per version and failures per error kind."""
    rows: dict[int, dict[str, Any]] = {}
    for r in http_records(records):
        b = math.floor(float(r["t_send"]) / bucket)
        row = rows.setdefault(b, {"t": round(b * bucket, 3), "versions": {}, "errors": {}})
        if is_failure(r):
            kind = str(r.get("outcome") or "no_outcome")
            row["errors"][kind] = row["errors"].get(kind, 0) + 1
        else:
            v = r.get("version") or "?"
            row["versions"][v] = row["versions"].get(v, 0) + 1
    return [rows[k] for k in sorted(rows)]


def _inside(r: Record, lo: float, hi: float) -> bool:
    if r.get("kind") == "http":
        return lo <= float(r["t_send"]) <= hi
    if r.get("event") == "end":
        return float(r.get("t_open", 0.0)) <= hi and float(r.get("t", 0.0)) >= lo
    return lo <= float(r.get("t", 0.0)) <= hi


def summarize(
    records: Iterable[Record],
    window: tuple[float, float] | None = None,
    bucket: float = 1.0,
) -> Summary:
    """Summary of the requests sent (and WebSocket connections ended) inside ``window``, if given;
    validity is always judged over the whole run."""
    everything = list(records)
    recs = (
        everything
        if window is None
        else [r for r in everything if r.get("kind") != "meta" and _inside(r, *window)]
    )
    http = list(http_records(recs))
    metas = {
        str(m["http_mode"]): m
        for m in everything
        if m.get("kind") == "meta" and m.get("event") == "start" and m.get("http_mode")
    }
    by_mode: dict[str, list[Record]] = {}
    for r in http:
        by_mode.setdefault(str(r["mode"]), []).append(r)
    total = _mode_summary(http)
    versions: dict[str, VersionSpan] = {}
    for r in sorted(http, key=lambda r: float(r["t_send"])):
        v = r.get("version")
        if is_failure(r) or not v:
            continue
        t = float(r["t_send"])
        cur = versions.get(v)
        versions[v] = VersionSpan(1, t, t) if cur is None else VersionSpan(cur.count + 1, cur.first, t)
    ends = list(ws_ends(recs))
    clients = [r for r in everything if r.get("kind") == "ws" and r.get("event") == "client"]
    return Summary(
        sent=total.sent,
        failed=total.failed,
        failure_pct=total.failure_pct,
        p50_ms=total.p50_ms,
        p99_ms=total.p99_ms,
        errors=total.errors,
        modes={m: _mode_summary(rs, metas.get(m)) for m, rs in sorted(by_mode.items())},
        versions=versions,
        ws_connections=len(ends),
        ws_abnormal=sum(1 for e in ends if is_failure(e)),
        ws_ends=dict(Counter(str(e.get("end_kind")) for e in ends)),
        ws_close_codes=dict(Counter(str(e.get("code")) for e in ends)),
        ws_versions=dict(Counter(str(e.get("version")) for e in ends)),
        ws_clients=dict(Counter(str(c.get("state")) for c in clients)),
        validity=validity(everything),
        timeline=timeline(recs, bucket),
    )
