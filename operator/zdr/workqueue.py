"""A rate-free work queue of rollout keys, in the manner of client-go's workqueue.

Watch events (the rollout itself, its Deployments, its EndpointSlices) only add the
rollout's key; one worker per key at a time runs a full reconcile. Keys added while
queued are coalesced; keys added while their reconcile runs are queued again, so an
event is never lost and a reconcile never runs twice at once for the same rollout.
`add_after` is how the planner's time-based waits (pauses, delays) come back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Key = tuple[str, str]  # (namespace, name)


@dataclass
class WorkQueue:
    """Deduplicating queue with delayed adds; `ready` holds keys waiting for a worker."""

    ready: asyncio.Queue[Key] = field(default_factory=asyncio.Queue)
    queued: set[Key] = field(default_factory=set)
    running: set[Key] = field(default_factory=set)
    dirty: set[Key] = field(default_factory=set)
    timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    # When each key was last added: the start of the reaction-latency measurement.
    added_at: dict[Key, float] = field(default_factory=dict)

    def add(self, key: Key) -> None:
        self.added_at.setdefault(key, time.monotonic())
        if key in self.running:
            self.dirty.add(key)
            return
        if key in self.queued:
            return
        self.queued.add(key)
        self.ready.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Adds `key` after `delay` seconds; an earlier pending timer for it wins."""
        loop = asyncio.get_running_loop()
        due = loop.time() + max(delay, 0.0)
        current = self.timers.get(key)
        if current is not None and current.when() <= due:
            return
        if current is not None:
            current.cancel()
        self.timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: Key) -> None:
        self.timers.pop(key, None)
        self.add(key)

    def forget(self, key: Key) -> None:
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def get(self) -> Key:
        key = await self.ready.get()
        self.queued.discard(key)
        self.running.add(key)
        return key

    def done(self, key: Key) -> None:
        self.running.discard(key)
        self.added_at.pop(key, None)
        if key in self.dirty:
            self.dirty.discard(key)
            self.add(key)


async def run_workers(
    queue: WorkQueue,
    reconcile: Callable[[Key], Awaitable[float | None]],
    workers: int,
    stop: asyncio.Event,
    gate: asyncio.Event | None = None,
) -> None:
    """Runs `workers` loops; `reconcile` returns seconds until it wants to run again, or None.

    With a `gate` (leader election), a worker takes keys only while it is set; keys stay
    queued meanwhile, so the replica that takes over finds them waiting."""

    async def worker() -> None:
        while not stop.is_set():
            if gate is not None:
                await gate.wait()
            key = await queue.get()
            if gate is not None and not gate.is_set():  # lost the lease while waiting for a key
                queue.done(key)
                queue.add(key)
                continue
            try:
                again = await reconcile(key)
            except Exception:  # noqa: BLE001 - a failed reconcile is retried, never fatal
                again = 2.0
            finally:
                queue.done(key)
            if again is not None:
                queue.add_after(key, again)

    await asyncio.gather(*(worker() for _ in range(workers)))
