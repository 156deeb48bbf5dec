"""Leader election's decision, from plain Lease records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from zdr.leader import LeaseRecord, next_record

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def held_by(holder: str | None, transitions: int = 3, duration: int = 10) -> LeaseRecord:
    earlier = NOW - timedelta(seconds=30)
    return LeaseRecord(holder, duration, earlier, earlier + timedelta(seconds=25), transitions)


def test_no_lease_yet_is_created_by_the_first_replica() -> None:
    record = next_record(None, "a", NOW, 0.0)
    assert record == LeaseRecord("a", 10, NOW, NOW, 0)


def test_the_holder_renews_and_keeps_its_acquire_time_and_transitions() -> None:
    current = held_by("a")
    record = next_record(current, "a", NOW, 100.0)
    assert record is not None
    assert record.holder == "a"
    assert record.renew_time == NOW
    assert record.acquire_time == current.acquire_time
    assert record.transitions == current.transitions


@pytest.mark.parametrize("unchanged_for", [0.0, 5.0, 9.99])
def test_a_live_holder_keeps_the_lease(unchanged_for: float) -> None:
    assert next_record(held_by("a"), "b", NOW, unchanged_for) is None


def test_unchanged_for_the_lease_duration_means_the_holder_is_gone() -> None:
    record = next_record(held_by("a", transitions=3), "b", NOW, 10.0)
    assert record == LeaseRecord("b", 10, NOW, NOW, 4)


def test_expiry_follows_the_duration_written_by_the_holder() -> None:
    current = held_by("a", duration=30)
    assert next_record(current, "b", NOW, 15.0, duration=10) is None
    assert next_record(current, "b", NOW, 30.0, duration=10) is not None


def test_a_released_lease_is_taken_at_once() -> None:
    record = next_record(held_by(None, transitions=7), "b", NOW, 0.0)
    assert record is not None and record.holder == "b" and record.transitions == 8


def test_the_wall_clock_in_the_record_does_not_decide_expiry() -> None:
    # A holder whose clock runs 1 hour behind still holds the lease while it renews.
    skewed = LeaseRecord("a", 10, NOW - timedelta(hours=1), NOW - timedelta(hours=1), 1)
    assert next_record(skewed, "b", NOW, 1.0) is None


def test_spec_round_trip_uses_micro_time() -> None:
    record = LeaseRecord("a", 10, NOW, NOW + timedelta(microseconds=5), 2)
    spec = record.to_spec()
    assert spec["renewTime"] == "2026-01-01T12:00:00.000005Z"
    assert LeaseRecord.from_spec(spec) == record
    assert LeaseRecord.from_spec(None) == LeaseRecord(None)
