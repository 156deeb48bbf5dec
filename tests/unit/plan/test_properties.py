"""Property tests: for any observed state the plan keeps the rollout invariants (see invariants.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invariants import violations
from simulate import START, Cluster, make_spec
from zdr.api import (
    RevisionRecord,
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
    status = ZeroDowntimeRolloutStatus(
        observed_generation=1,
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
