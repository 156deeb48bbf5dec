"""The traffic prober: open-loop HTTP (new connections and kept-alive) and WebSocket clients on raw
asyncio streams that never retry, record every request and connection, and judge each outcome in
one place (``http.decide``). ``python -m bench.prober URL ...`` runs it from the command line.

Network safety: ``check_target`` refuses every address other than 127.0.0.1, the cluster's
Service range 10.96.0.0/16 and its pod range 10.88.0.0/16; every loop is bounded in count and time.
"""

from bench.prober.http import MODES, HttpConfig, HttpStats, Mode, Record, Response, decide, run_http
from bench.prober.records import (
    BadRecords,
    ModeSummary,
    Summary,
    Tail,
    Validity,
    VersionSpan,
    failed,
    http_records,
    is_failure,
    last_on_other_version,
    percentile,
    read_jsonl,
    summarize,
    timeline,
    validity,
    ws_ends,
)
from bench.prober.run import ProbeProcess, ProberFailed, Traffic, probe
from bench.prober.target import (
    ALLOWED_NETWORKS,
    MAX_DURATION,
    MAX_RATE,
    MAX_REQUESTS,
    MAX_WS_CLIENTS,
    SERVICE_RANGE,
    Target,
    UnsafeTarget,
    check_target,
)
from bench.prober.ws import CLEAN_CLOSE_CODES, WsConfig, run_ws

__all__ = [
    "ALLOWED_NETWORKS",
    "BadRecords",
    "CLEAN_CLOSE_CODES",
    "HttpConfig",
    "HttpStats",
    "MAX_DURATION",
    "MAX_RATE",
    "MAX_REQUESTS",
    "MAX_WS_CLIENTS",
    "MODES",
    "Mode",
    "ModeSummary",
    "ProbeProcess",
    "ProberFailed",
    "Record",
    "Response",
    "SERVICE_RANGE",
    "Summary",
    "Tail",
    "Target",
    "Traffic",
    "UnsafeTarget",
    "Validity",
    "VersionSpan",
    "WsConfig",
    "check_target",
    "decide",
    "failed",
    "http_records",
    "is_failure",
    "last_on_other_version",
    "percentile",
    "probe",
    "read_jsonl",
    "run_http",
    "run_ws",
    "summarize",
    "timeline",
    "validity",
    "ws_ends",
]
