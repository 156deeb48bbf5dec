"""One reconcile of one rollout: observe the cluster, take the analysis measurements that are due,
then let the pure planner decide."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubernetes import client

from zdr import analysis
from zdr.api import SpecError, ZeroDowntimeRolloutStatus, parse_spec, parse_status
from zdr.observe import Children, observe
from zdr.plan import Plan, plan


def decide(api: client.ApiClient, rollout: Mapping[str, Any], now: datetime) -> tuple[Plan, Children]:
    raw_spec = rollout.get("spec") or {}
    try:
        spec = parse_spec(raw_spec)
    except SpecError:
        spec = None  # the planner refuses it and touches nothing; observing still fills status
    observed, children = observe(api, rollout, spec)
    status: Mapping[str, Any] | ZeroDowntimeRolloutStatus | None = rollout.get("status")
    if spec is not None:
        meta = rollout["metadata"]
        status = analysis.measure(
            spec, parse_status(rollout.get("status")), children, namespace=meta["namespace"], rollout=meta["name"], now=now
        )
    return plan(raw_spec, status, observed, now), children
