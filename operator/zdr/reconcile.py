"""One reconcile of one rollout: observe the cluster, then let the pure planner decide."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubernetes import client

from zdr.api import SpecError, parse_spec
from zdr.observe import Children, observe
from zdr.plan import Plan, plan


def decide(api: client.ApiClient, rollout: Mapping[str, Any], now: datetime) -> tuple[Plan, Children]:
    raw_spec = rollout.get("spec") or {}
    try:
        spec = parse_spec(raw_spec)
    except SpecError:
        spec = None  # the planner refuses it and touches nothing; observing still fills status
    observed, children = observe(api, rollout, spec)
    return plan(raw_spec, rollout.get("status"), observed, now), children
