"""One reconcile of one rollout: observe the cluster, take the analysis measurements that are due,
let the pure planner decide, then turn its scale-downs into endpoint-first retirements."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubernetes import client

from zdr import analysis
from zdr.api import SpecError, ZeroDowntimeRolloutStatus, parse_spec, parse_status
from zdr.observe import Children, observe
from zdr.plan import Plan, plan
from zdr.retire import Retirement, retire


def decide(
    api: client.ApiClient, rollout: Mapping[str, Any], now: datetime
) -> tuple[Plan, Children, Retirement]:
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
            spec,
            parse_status(rollout.get("status")),
            children,
            namespace=meta["namespace"],
            rollout=meta["name"],
            now=now,
        )
    decided = plan(raw_spec, status, observed, now)
    retirement = retire(children.retiring, decided.replicas, now)
    if decided.spec is None:
        retirement = Retirement(replicas=dict(decided.replicas))  # a refused spec touches no pod
    return dataclasses.replace(decided, replicas=retirement.replicas), children, retirement
