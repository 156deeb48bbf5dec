"""Kopf wiring: watches feed a work queue; a worker runs observe -> plan -> apply.

Watched kinds: ZeroDowntimeRollouts, and the Deployments, Pods, Services and
EndpointSlices labelled ``app.kubernetes.io/managed-by: zdr``. Every event only
queues its rollout's key; the reconcile reads the rollout and its children afresh,
so the operator is level-triggered and a restarted operator resumes from the
cluster plus ``status``. There is no polling: the planner's ``requeue_after`` is the
only timer, for waits that no watch event ends (pauses, delays, deadlines).

With ``ZDR_LEADER_ELECTION=true`` (the shipped Deployment runs two replicas) every replica
watches and queues, but only the holder of the ``zdr-operator`` Lease reconciles (leader.py).

Kopf's own state is not used: no finalizers (children go with their owner through
garbage collection), no progress annotations, nothing stored in memory that a
restart would lose.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from zdr import leader, log, metrics
from zdr.api import GROUP, LABEL_MANAGED_BY, LABEL_ROLLOUT, PLURAL, VERSION
from zdr.apply import Applier
from zdr.reconcile import decide
from zdr.revision import MANAGED_BY
from zdr.workqueue import Key, WorkQueue, run_workers

WORKERS = 4
MANAGED = {LABEL_MANAGED_BY: MANAGED_BY}


class Operator:
    """What the handlers share: the API client and the queue (rebuilt on every start)."""

    def __init__(self) -> None:
        self.queue = WorkQueue()
        self.api: client.ApiClient | None = None
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.elector: leader.Elector | None = None
        self.election: asyncio.Task[None] | None = None


OP = Operator()


def _load_api() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    log.configure()
    settings.posting.enabled = False  # zdr posts its own Events, with CamelCase reasons
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    if os.environ.get("ZDR_CLUSTER_SCAN", "true").lower() in ("0", "false", "no"):
        # One namespace, named on the command line: no cluster-wide list of namespaces or CRDs,
        # so a Role in that namespace is all the operator needs.
        settings.scanning.disabled = True
    OP.api = _load_api()
    OP.queue = WorkQueue()
    OP.stop = asyncio.Event()
    gate = None
    if leader.enabled():
        metrics.leading(False)  # a stand-by until the Lease is taken
        OP.elector = leader.Elector(OP.api, leader.lease_namespace(), on_change=metrics.leading)
        OP.election = asyncio.create_task(OP.elector.run(OP.stop))
        gate = OP.elector.leading
    OP.task = asyncio.create_task(run_workers(OP.queue, _reconcile, WORKERS, OP.stop, gate))
    metrics.start_server()
    log.get().info("zdr operator started", workers=WORKERS, leader_election=gate is not None)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    OP.stop.set()
    if OP.task is not None:
        OP.task.cancel()
    if OP.election is not None:  # gives the Lease up, so a successor need not wait for it to expire
        await asyncio.wait_for(OP.election, timeout=5)


@kopf.on.probe(id="leading")
def leading(**_: Any) -> bool:
    """In the liveness endpoint's report: whether this replica reconciles."""
    return OP.elector is None or OP.elector.leading.is_set()


@kopf.on.event(GROUP, VERSION, PLURAL)
def rollout_event(*, namespace: str | None, name: str, type: str, **_: Any) -> None:
    if namespace is None:
        return
    if type == "DELETED":
        OP.queue.forget((namespace, name))
        metrics.forget(namespace, name)
        return
    OP.queue.add((namespace, name))


def _child_event(*, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    rollout = labels.get(LABEL_ROLLOUT)
    if rollout and namespace:
        OP.queue.add((namespace, rollout))


for _group, _version, _plural in (
    ("apps", "v1", "deployments"),
    ("", "v1", "pods"),
    ("", "v1", "services"),
    ("discovery.k8s.io", "v1", "endpointslices"),
):
    kopf.on.event(_group, _version, _plural, labels=MANAGED, id=f"child-{_plural}")(_child_event)


async def _reconcile(key: Key) -> float | None:
    started = OP.queue.added_at.get(key, time.monotonic())
    try:
        with metrics.RECONCILE_SECONDS.time():
            return await asyncio.to_thread(reconcile, key, started)
    except Exception as exc:  # retried soon: the next reconcile starts from what is observed
        log.get().exception("reconcile failed", rollout=f"{key[0]}/{key[1]}", error=str(exc))
        metrics.RECONCILE_ERRORS.inc()
        return 1.0


def reconcile(key: Key, started: float) -> float | None:
    """One level-triggered pass for one rollout; returns seconds until a timed re-check."""
    namespace, name = key
    assert OP.api is not None
    custom = client.CustomObjectsApi(OP.api)
    try:
        rollout: dict[str, Any] = custom.get_namespaced_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            OP.queue.forget(key)
            metrics.forget(namespace, name)
            return None
        raise
    if rollout["metadata"].get("deletionTimestamp"):
        metrics.forget(namespace, name)
        return None
    plan, children, retirement = decide(OP.api, rollout, datetime.now(UTC))
    writes = Applier(OP.api).apply(rollout, plan, children, retirement)
    metrics.record_rollout(rollout, plan)
    for seconds in retirement.removal_seconds:
        metrics.ENDPOINT_REMOVAL_SECONDS.observe(seconds)
    status = plan.status
    logger = log.get().bind(
        rollout=f"{namespace}/{name}",
        revision=status.update_revision,
        step=status.current_step_index,
        phase=status.phase,
    )
    if writes:
        metrics.REACTION_SECONDS.observe(time.monotonic() - started)
        logger.info(status.message or "reconciled", writes=writes)
    else:
        logger.debug("in sync")
    if retirement.waiting:
        logger.info("scale-down waits for pods to leave the endpoints", waiting=retirement.waiting)
    if retirement.removal_seconds:
        logger.info("pods out of the endpoints", seconds=[round(s, 3) for s in retirement.removal_seconds])
    waits = [t for t in (plan.requeue_after, retirement.requeue_after) if t is not None]
    return min(waits) if waits else None
