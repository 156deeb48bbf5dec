"""Leader election on a ``coordination.k8s.io`` Lease: of the operator's replicas, one acts.

Every replica watches and queues rollout keys (so a replica that takes over has them at
hand); only the replica holding the Lease runs reconciles. The rules are client-go's:

- a replica takes the Lease when nobody holds it, or when the record it sees has not changed
  for ``leaseDurationSeconds`` (measured on its own monotonic clock from the moment it first
  saw that record, so the replicas' clocks need not agree);
- the holder renews every ``renew`` seconds; when it has not renewed for ``deadline`` seconds
  (shorter than the lease duration) it stops acting before anyone else may take over;
- every write carries the ``resourceVersion`` it read, so two replicas racing for an expired
  Lease cannot both win;
- a holder that shuts down cleanly gives the Lease up, so its successor need not wait.

Hand-over after a holder dies without a word (SIGKILL, node loss) takes at most
``duration + retry`` seconds plus one reconcile.

``next_record`` is the pure decision; ``Elector`` does the reads and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from zdr import log

LEASE_NAME = "zdr-operator"
DURATION_SECONDS = 10
RENEW_SECONDS = 2.0
DEADLINE_SECONDS = 7.0
RETRY_SECONDS = 1.0
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of a Lease's spec that election reads and writes."""

    holder: str | None
    duration_seconds: int = DURATION_SECONDS
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> LeaseRecord:
        spec = spec or {}
        return cls(
            holder=spec.get("holderIdentity") or None,
            duration_seconds=int(spec.get("leaseDurationSeconds") or DURATION_SECONDS),
            acquire_time=_time(spec.get("acquireTime")),
            renew_time=_time(spec.get("renewTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "acquireTime": _micro(self.acquire_time),
            "renewTime": _micro(self.renew_time),
            "leaseTransitions": self.transitions,
        }


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _micro(value: datetime | None) -> str | None:
    """MicroTime as the API server wants it: RFC 3339 with microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def next_record(
    current: LeaseRecord | None,
    me: str,
    now: datetime,
    unchanged_for: float,
    duration: int = DURATION_SECONDS,
) -> LeaseRecord | None:
    """The record to write to hold the Lease, or None while another replica holds it.

    ``current`` is the record read (None: no Lease yet); ``unchanged_for`` is how long, on this
    replica's clock, that same record has been seen without a change.
    """
    if current is None:
        return LeaseRecord(me, duration, now, now, 0)
    if current.holder == me:
        return replace(current, duration_seconds=duration, renew_time=now)
    if current.holder is not None and unchanged_for < current.duration_seconds:
        return None
    return LeaseRecord(me, duration, now, now, current.transitions + 1)


def identity() -> str:
    """Unique per process: the pod's name when known, plus a random suffix (a restarted
    container of the same pod is a new candidate, never mistaken for the old holder)."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def lease_namespace() -> str:
    explicit = os.environ.get("ZDR_LEASE_NAMESPACE") or os.environ.get("POD_NAMESPACE")
    if explicit:
        return explicit
    if SA_NAMESPACE_FILE.exists():
        return SA_NAMESPACE_FILE.read_text().strip()
    return "zdr-system"


def enabled() -> bool:
    return os.environ.get("ZDR_LEADER_ELECTION", "").lower() in ("1", "true", "yes")


class Elector:
    """Holds the Lease while it can; ``leading`` is set exactly while this replica may act."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str = LEASE_NAME,
        me: str | None = None,
        duration: int = DURATION_SECONDS,
        renew: float = RENEW_SECONDS,
        deadline: float = DEADLINE_SECONDS,
        retry: float = RETRY_SECONDS,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not renew < deadline < duration:
            raise ValueError(f"want renew < deadline < duration, got {renew}, {deadline}, {duration}")
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name = namespace, name
        self.me = me or identity()
        self.duration, self.renew, self.deadline, self.retry = duration, renew, deadline, retry
        self.on_change = on_change
        self.leading = asyncio.Event()
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = 0.0
        self._renewed_at = 0.0
        self.log = log.get().bind(lease=f"{namespace}/{name}", identity=self.me)

    async def run(self, stop: asyncio.Event) -> None:
        """Tries to take and keep the Lease until ``stop`` is set, then gives it up."""
        try:
            while not stop.is_set():
                try:
                    held = await asyncio.to_thread(self._try)
                except ApiException as exc:
                    self.log.warning("lease update failed", status=exc.status, reason=exc.reason)
                    held = False
                except Exception as exc:  # noqa: BLE001 - the API server may be away; keep trying
                    self.log.warning("lease update failed", error=str(exc))
                    held = False
                now = time.monotonic()
                if held:
                    self._renewed_at = now
                    self._set(True)
                elif self.leading.is_set() and now - self._renewed_at >= self.deadline:
                    self._set(False)
                wait = self.renew if self.leading.is_set() else self.retry
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
        finally:
            if self.leading.is_set():
                self._set(False)
                await asyncio.to_thread(self.release)

    def _set(self, leading: bool) -> None:
        if leading == self.leading.is_set():
            return
        if leading:
            self.leading.set()
            self.log.info("leading: this replica reconciles")
        else:
            self.leading.clear()
            self.log.warning("stopped leading: this replica only watches")
        if self.on_change is not None:
            self.on_change(leading)

    def _read(self) -> dict[str, Any] | None:
        try:
            resp: Any = self.coordination.read_namespaced_lease(self.name, self.namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        lease: dict[str, Any] = json.loads(resp.data)
        return lease

    def _write(self, record: LeaseRecord, resource_version: str) -> bool:
        """Replaces the Lease's spec if nobody wrote it since ``resource_version``."""
        body: Any = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace, "resourceVersion": resource_version},
            "spec": record.to_spec(),
        }
        try:
            self.coordination.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # another replica wrote first
                return False
            raise
        return True

    def _try(self) -> bool:
        """One read and at most one write; True when this replica holds the Lease after it."""
        lease = self._read()
        if lease is None:
            return self._create()
        current = LeaseRecord.from_spec(lease.get("spec"))
        version = lease["metadata"]["resourceVersion"]
        key = (current.holder, current.renew_time, current.transitions, version)
        now_mono = time.monotonic()
        if key != self._seen:
            self._seen, self._seen_at = key, now_mono
        wanted = next_record(current, self.me, datetime.now(UTC), now_mono - self._seen_at, self.duration)
        if wanted is None or not self._write(wanted, version):
            return False
        if current.holder != self.me:
            self.log.info("took the lease", previous=current.holder, transitions=wanted.transitions)
        return True

    def _create(self) -> bool:
        record = next_record(None, self.me, datetime.now(UTC), 0.0, self.duration)
        assert record is not None
        body: Any = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": record.to_spec(),
        }
        try:
            self.coordination.create_namespaced_lease(self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self.log.info("created the lease")
        return True

    def release(self) -> None:
        """Gives the Lease up (holder cleared) if this replica still holds it."""
        try:
            lease = self._read()
            if lease is None:
                return
            current = LeaseRecord.from_spec(lease.get("spec"))
            if current.holder != self.me:
                return
            if self._write(
                LeaseRecord(None, 1, None, None, current.transitions), lease["metadata"]["resourceVersion"]
            ):
                self.log.info("released the lease")
        except Exception as exc:  # noqa: BLE001 - best effort: the Lease expires anyway
            self.log.warning("could not release the lease", error=str(exc))
