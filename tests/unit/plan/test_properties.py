"""Property tests: for any observed state the plan keeps the rollout invariants (see invariants.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invariants import violations
from simulate import START, Cluster, make_spec
from zdr.api import (
    AbortRecord,
    Command,
    RestartRecord,
    RevisionRecord,
    RollbackRecord,
    ServiceRole,
    ZeroDowntimeRolloutStatus,
    parse_spec,
)
from zdr.plan import Observed, ObservedRevision, ObservedService, ServiceTarget, plan
from zdr.revision import revision_hash

int_or_percent = st.one_of(st.integers(0, 3), st.sampled_from(["0%", "10%", "25%", "50%", "100%"]))


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["RollingUpdate", "BlueGreen", "Canary"]))
    strategy: dict[str, Any] = {"type": kind}
    if kind == "RollingUpdate":
        surge, unavailable = draw(int_or_percent), draw(int_or_percent)
        if surge in (0, "0%") and unavailable in (0, "0%"):
            surge = 1
        strategy["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    elif kind == "BlueGreen":
        strategy["blueGreen"] = {
            "autoPromotion": draw(st.booleans()),
            "autoPromotionSeconds": draw(st.integers(0, 30)),
            "scaleDownDelaySeconds": draw(st.integers(0, 30)),
        }
    else:
        steps = draw(
            st.lists(
                st.one_of(
                    st.builds(lambda w: {"setWeight": w}, st.integers(0, 100)),
                    st.builds(lambda d: {"pause": {"duration": d}}, st.integers(0, 20)),
                    st.just({"pause": {}}),
                ),
                max_size=4,
            )
        )
        surge = draw(st.one_of(st.integers(1, 3), st.sampled_from(["10%", "25%", "50%"])))
        strategy["canary"] = {
            "maxSurge": surge,
            "steps": steps,
            "scaleDownDelaySeconds": draw(st.integers(0, 30)),
        }
    image = draw(st.sampled_from(["example/web:1", "example/web:2", "example/web:3"]))
    return make_spec(
        draw(st.integers(0, 8)),
        image=image,
        strategy=strategy,
        paused=draw(st.booleans()),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], ZeroDowntimeRolloutStatus, Observed]:
    spec = draw(specs())
    update = revision_hash(parse_spec(spec))
    names = [update, "aaaaaaaaa1", "bbbbbbbbb2", "ccccccccc3"]
    present = draw(st.lists(st.sampled_from(names), unique=True, max_size=4))
    revisions = {}
    for name in present:
        spec_replicas = draw(st.integers(0, 9))
        replicas = draw(st.integers(0, spec_replicas + 2))
        ready = draw(st.integers(0, replicas))
        available = draw(st.integers(0, ready))
        endpoints = {role: draw(st.integers(0, replicas)) for role in ServiceRole if draw(st.booleans())}
        revisions[name] = ObservedRevision(
            name=name,
            spec_replicas=spec_replicas,
            replicas=replicas,
            ready_replicas=ready,
            available_replicas=available,
            created_at=START,
            ready_endpoints=endpoints,
        )
    targets = [ServiceTarget(None), *[ServiceTarget(n) for n in names], None]
    services = {
        role: ObservedService(name=role.value, target=draw(st.sampled_from(targets)))
        for role in ServiceRole
        if draw(st.booleans())
    }
    observed = Observed(generation=draw(st.integers(1, 3)), revisions=revisions, services=services)
    records = [
        RevisionRecord(
            name=name,
            revision=i + 1,
            created_at=START,
            retired_at=draw(st.sampled_from([None, START, START + timedelta(seconds=50)])),
        )
        for i, name in enumerate(names)
        if draw(st.booleans())
    ]
    abort = draw(
        st.sampled_from([None, *names]).map(
            lambda n: n and AbortRecord(revision=n, reason="RolloutAborted", aborted_at=START)
        )
    )
    rollback = draw(
        st.sampled_from([None, *names]).map(
            lambda n: n and RollbackRecord(revision=n, from_revision=update, requested_at=START)
        )
    )
    restart = draw(
        st.sampled_from([None, *names]).map(lambda n: n and RestartRecord(revision=n, requested_at=START))
    )
    verb = draw(st.sampled_from([None, "promote", "abort", "retry", "undo", "restart", "pause", "resume"]))
    command = None
    if verb is not None:
        to_revision = draw(st.sampled_from([None, 1, 2, 3])) if verb == "undo" else None
        command = Command(id=f"c-{verb}", verb=verb, full=draw(st.booleans()), to_revision=to_revision)
    observed = Observed(
        generation=observed.generation, revisions=revisions, services=services, command=command
    )
    status = ZeroDowntimeRolloutStatus(
        observed_generation=1,
        abort=abort,
        rollback=rollback,
        restart=restart,
        stable_revision=draw(st.sampled_from([None, *names])),
        update_revision=draw(st.sampled_from([None, *names])),
        current_step_index=draw(st.sampled_from([None, 0, 1, 2, 3, 4])),
        step_started_at=draw(st.sampled_from([None, START])),
        preview_ready_at=draw(st.sampled_from([None, START])),
        promote_requested=draw(st.sampled_from([None, True])),
        revisions=records,
    )
    return spec, status, observed


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(0, 120))
def test_any_observed_state_keeps_the_invariants(
    scenario: tuple[dict[str, Any], ZeroDowntimeRolloutStatus, Observed], seconds: int
) -> None:
    spec, status, observed = scenario
    result = plan(spec, status, observed, START + timedelta(seconds=seconds))
    assert violations(spec, observed, result) == []
    for name in result.replicas:
        assert name in observed.revisions or name == result.update_revision
    assert all(count >= 0 for count in result.replicas.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs(),
    st.sampled_from(["example/web:1", "example/web:2", "example/web:3"]),
    st.integers(0, 8),
    st.integers(1, 3),
    st.lists(st.integers(0, 40), max_size=3),
)
def test_simulated_rollouts_keep_the_invariants_and_finish(
    spec: dict[str, Any], image: str, replicas: int, ready_after: int, changes_at: list[int]
) -> None:
    """Deploy, then roll out a new template (changed again mid-way), each step within the invariants."""
    spec = {**spec, "paused": False}
    strategy = spec.get("strategy", {})
    if strategy.get("type") == "Canary":
        for step in strategy["canary"]["steps"]:
            if step.get("pause") == {}:
                step["pause"] = {"duration": 3}
    if strategy.get("type") == "BlueGreen":
        strategy["blueGreen"]["autoPromotion"] = True
    cluster = Cluster(ready_after=ready_after)
    cluster.run(spec, limit=400)
    new_spec = make_spec(replicas, image=image, strategy=strategy)
    images = iter(["example/web:4", "example/web:5", "example/web:6"])
    for tick in range(400):
        current = new_spec
        if tick in changes_at:
            new_spec = make_spec(replicas, image=next(images), strategy=strategy)
            current = new_spec
        observed = cluster.observe()
        result = cluster.step(current)
        assert violations(current, observed, result) == [], (tick, result.status.message)
        if (
            result.status.phase == "Healthy"
            and cluster.plans[-2].status.phase == "Healthy"
            and tick > max(changes_at, default=0)
        ):
            break
    else:
        raise AssertionError(f"rollout did not finish: {cluster.status.message}")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs(),
    st.integers(0, 8),
    st.integers(1, 3),
    st.integers(0, 30),
    st.sampled_from(["abort", "undo"]),
    st.booleans(),
)
def test_abort_or_undo_at_any_moment_keeps_the_invariants_and_settles(
    spec: dict[str, Any], replicas: int, ready_after: int, at: int, verb: str, broken: bool
) -> None:
    """Deploy, roll out a new template (its pods possibly never ready), then abort or undo at tick
    ``at``: every step keeps the invariants; the rollout settles with every pod on the stable
    revision (abort) or the one rolled back to (undo), and the template's revision without pods."""
    spec = {**spec, "paused": False, "replicas": replicas}
    strategy = spec.get("strategy", {})
    if strategy.get("type") == "Canary":
        for step in strategy["canary"]["steps"]:
            if step.get("pause") == {}:
                step["pause"] = {"duration": 3}
    cluster = Cluster(ready_after=ready_after)
    cluster.run(spec, limit=400)
    first = cluster.status.stable_revision
    new_spec = make_spec(replicas, image="example/web:9", strategy=strategy)
    update = revision_hash(parse_spec(new_spec))
    if broken:
        cluster.broken.add(update)
    command = Command(id="cmd", verb=verb)  # type: ignore[arg-type]
    handled = None
    for tick in range(300):
        given = command if tick >= at else None
        observed = cluster.observe(given)
        result = cluster.step(new_spec, command=given)
        assert violations(new_spec, observed, result) == [], (tick, result.status.message)
        record = result.status.last_command
        if handled is None and record is not None and record.id == "cmd":
            handled = record
        settled = result.status.abort or result.status.rollback
        if handled is not None and (handled.result == "Rejected" or (settled and settled.completed_at)):
            break
    else:
        raise AssertionError(f"did not settle: {cluster.status.phase}: {cluster.status.message}")
    if handled.result == "Rejected":
        return  # the rollout had finished (nothing to abort) or had nothing to undo to
    target = cluster.status.stable_revision
    assert target is not None
    if verb == "abort":
        assert cluster.status.phase == "Aborted" and target == first
    else:
        assert cluster.status.phase == "Degraded"
    if replicas:
        assert cluster.revisions[target].spec == replicas
    if update != target and update in cluster.revisions:
        assert cluster.revisions[update].spec == 0 or cluster.status.rollback is not None
