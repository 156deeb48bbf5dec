"""Prometheus metrics of the operator itself (served on ZDR_METRICS_ADDR, default 127.0.0.1:9108)."""

from __future__ import annotations

import contextlib
import os

from prometheus_client import Counter, Histogram, start_http_server

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


def start_server() -> None:
    addr = os.environ.get("ZDR_METRICS_ADDR", "127.0.0.1:9108")
    if addr in ("", "off"):
        return
    host, _, port = addr.rpartition(":")
    # Another operator process may hold the port: metrics are best effort.
    with contextlib.suppress(OSError):
        start_http_server(int(port), addr=host or "0.0.0.0")
