"""The API models: defaults, round-trips, and validation messages that name the field and the fix."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from zdr import api
from zdr.api import (
    Command,
    LabelSelector,
    LabelSelectorRequirement,
    ServiceRole,
    SpecError,
    ZeroDowntimeRolloutStatus,
    command_annotation,
    duration_seconds,
    parse_command,
    parse_spec,
    parse_status,
    resolve_int_or_percent,
    selector_matches,
    selector_string,
)

BASE: dict[str, Any] = {
    "template": {
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "example/web:1",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                }
            ]
        },
    }
}


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    spec.update(changes)
    return spec


def errors_of(raw: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    return info.value.messages


def test_minimal_spec_gets_every_default() -> None:
    spec = parse_spec(BASE)
    assert spec.replicas == api.DEFAULT_REPLICAS
    assert spec.drain.pre_stop_seconds == 5
    assert spec.drain.termination_grace_period_seconds == 30
    assert spec.min_ready_seconds == 0
    assert spec.progress_deadline_seconds == 600
    assert spec.revision_history_limit == 3
    assert spec.paused is False
    assert spec.allow_missing_readiness_probe is False
    assert spec.strategy.type == "RollingUpdate"
    assert spec.strategy.rolling_update is not None
    assert spec.strategy.rolling_update.max_surge == "25%"
    assert spec.strategy.rolling_update.max_unavailable == 0
    assert spec.selector == LabelSelector(match_labels={"app": "web"})
    assert spec.service.type == "ClusterIP"
    assert spec.service.session_affinity == "None"
    ports = spec.service.ports
    assert ports is not None and [(p.name, p.port, p.target_port) for p in ports] == [("http", 8080, "http")]


def test_strategy_blocks_default_for_their_type() -> None:
    blue_green = parse_spec(spec_with(strategy={"type": "BlueGreen"})).strategy.blue_green
    assert blue_green is not None
    assert (
        blue_green.auto_promotion,
        blue_green.auto_promotion_seconds,
        blue_green.scale_down_delay_seconds,
    ) == (
        True,
        0,
        30,
    )
    canary = parse_spec(spec_with(strategy={"type": "Canary"})).strategy.canary
    assert canary is not None
    assert (canary.max_surge, canary.steps, canary.scale_down_delay_seconds) == ("25%", None, 30)


def test_spec_round_trips_kubernetes_json() -> None:
    raw = spec_with(
        replicas=4,
        strategy={
            "type": "Canary",
            "canary": {
                "maxSurge": 1,
                "steps": [{"setWeight": 20}, {"pause": {"duration": "30s"}}, {"pause": {}}],
            },
        },
        service={
            "name": "web",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            "sessionAffinity": "ClientIP",
        },
    )
    spec = parse_spec(raw)
    dumped = spec.to_k8s()
    assert dumped["strategy"]["canary"]["steps"] == [
        {"setWeight": 20},
        {"pause": {"duration": "30s"}},
        {"pause": {}},
    ]
    assert dumped["service"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
    assert dumped["drain"] == {
        "preStopSeconds": 5,
        "terminationGracePeriodSeconds": 30,
        "maxRequestSeconds": 0,
    }
    assert parse_spec(dumped) == spec


def test_service_names_default_from_rollout_and_service_name() -> None:
    spec = parse_spec(spec_with(strategy={"type": "BlueGreen"}))
    assert spec.service_names("shop") == {
        ServiceRole.MAIN: "shop",
        ServiceRole.PREVIEW: "shop-preview",
        ServiceRole.CANARY: "shop-canary",
        ServiceRole.STABLE: "shop-stable",
    }
    named = parse_spec(
        spec_with(
            service={"name": "web"}, strategy={"type": "BlueGreen", "blueGreen": {"previewService": "try"}}
        )
    )
    assert named.service_names("shop")[ServiceRole.MAIN] == "web"
    assert named.service_names("shop")[ServiceRole.PREVIEW] == "try"
    assert spec.service_roles == (ServiceRole.MAIN, ServiceRole.PREVIEW)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 10}, {"setWeight": 120}]}}},
            "spec.strategy.canary.steps[1].setWeight: must be between 0 and 100 (got 120)",
        ),
        ({"replicas": -1}, "spec.replicas: must be at least 0 (got -1)"),
        ({"replicas": "3"}, "spec.replicas: must be an integer (got '3')"),
        ({"paused": "yes"}, "spec.paused: must be true or false (got 'yes')"),
        (
            {"strategy": {"type": "Blue"}},
            "spec.strategy.type: must be one of RollingUpdate, BlueGreen, Canary (got 'Blue')",
        ),
        ({"drian": {}}, "spec.drian: unknown field; remove it (did you mean drain?)"),
        (
            {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "120%"}}},
            "spec.strategy.rollingUpdate.maxSurge: must be an integer >= 0 or a percentage "
            "from '0%' to '100%' (got '120%')",
        ),
        (
            {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}},
            "spec.strategy.rollingUpdate: maxSurge and maxUnavailable cannot both be 0",
        ),
        (
            {"strategy": {"type": "BlueGreen", "canary": {}}},
            "spec.strategy.canary: only allowed when spec.strategy.type is Canary (type is BlueGreen); "
            "remove it or set type: Canary",
        ),
        (
            {"strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 5, "pause": {}}]}}},
            "spec.strategy.canary.steps[0]: set exactly one of setWeight, pause or analysis (got setWeight and pause)",
        ),
        (
            {"strategy": {"type": "Canary", "canary": {"steps": [{"pause": {"duration": "3 minutes"}}]}}},
            "spec.strategy.canary.steps[0].pause.duration: must be a duration like '30s'",
        ),
        (
            {"strategy": {"type": "Canary", "canary": {"maxSurge": 0}}},
            "spec.strategy.canary.maxSurge: must allow at least one extra pod",
        ),
        (
            {"progressDeadlineSeconds": 10, "minReadySeconds": 30},
            "spec.progressDeadlineSeconds: must be greater than spec.minReadySeconds (got 10 <= 30)",
        ),
        (
            {"selector": {"matchLabels": {"app": "api"}}},
            "spec.selector: does not match spec.template.metadata.labels",
        ),
        (
            {"selector": {"matchLabels": {"zdr.io/revision": "x"}}},
            "spec.selector: label zdr.io/revision is reserved",
        ),
        ({"service": {"name": "Web"}}, "spec.service.name: must start with a letter"),
        (
            {"service": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]}},
            "spec.service.ports[0].nodePort: only allowed",
        ),
        ({"service": {"ports": [{"port": 80}, {"port": 81}]}}, "spec.service.ports[0].name: required when"),
        (
            {"service": {"ports": [{"port": 70000}]}},
            "spec.service.ports[0].port: must be between 1 and 65535",
        ),
        ({"template": {"metadata": {"labels": {"app": "web"}}}}, "spec.template.spec: required"),
        (
            {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
            "spec.template.spec.containers: required: at least one container with a name and an image",
        ),
        (
            {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web"}]}}},
            "spec.template.spec.containers[0].image: required; add the container image",
        ),
        (
            {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"image": "x"}]}}},
            "spec.template.spec.containers[0].name: required",
        ),
        (
            {
                "template": {
                    "spec": {"containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 80}]}]}
                }
            },
            "spec.template.metadata.labels: required when spec.selector is omitted",
        ),
        (
            {
                "template": {
                    "metadata": {"labels": {"app": "web", "zdr.io/rollout": "x"}},
                    "spec": {"containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 80}]}]},
                }
            },
            "spec.template.metadata.labels.zdr.io/rollout: reserved for the operator; remove it",
        ),
        (
            {
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "x"}]},
                }
            },
            "spec.service.ports: required when no container of spec.template declares ports",
        ),
    ],
)
def test_validation_messages_name_the_field_and_the_fix(changes: dict[str, Any], message: str) -> None:
    messages = errors_of(spec_with(**changes))
    assert any(m.startswith(message) for m in messages), messages


def test_every_problem_is_reported_at_once() -> None:
    messages = errors_of(
        spec_with(
            replicas=-2,
            template={"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web"}]}},
            strategy={"type": "Canary", "canary": {"steps": [{"setWeight": 101}]}},
        )
    )
    assert len(messages) == 3
    assert all(m.startswith("spec.") for m in messages)


def test_missing_template_and_non_object_spec() -> None:
    assert errors_of({}) == [
        "spec.template: required; add it (The pod template (a PodTemplateSpec, as in a Deployment): "
        "metadata.labels and spec.containers)"
    ]
    assert errors_of([]) == ["spec: must be an object (got list)"]


def test_selector_with_expressions_matches_template() -> None:
    spec = parse_spec(
        spec_with(selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "www"]}]})
    )
    assert spec.selector is not None and spec.selector.match_expressions
    assert errors_of(spec_with(selector={"matchExpressions": [{"key": "app", "operator": "In"}]})) == [
        "spec.selector.matchExpressions[0].values: required for operator In"
    ]


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [
        (0, 10, True, 0),
        (3, 10, False, 3),
        ("25%", 4, True, 1),
        ("25%", 5, True, 2),
        ("25%", 5, False, 1),
        ("0%", 7, True, 0),
        ("100%", 7, False, 7),
        ("10%", 1, True, 1),
        ("10%", 1, False, 0),
        ("50%", 0, True, 0),
    ],
)
def test_int_or_percent_rounds_like_kubernetes(value: int | str, total: int, up: bool, expected: int) -> None:
    assert resolve_int_or_percent(value, total, round_up=up) == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(0, 0.0), (45, 45.0), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("250ms", 0.25)],
)
def test_durations(value: int | str, seconds: float) -> None:
    assert duration_seconds(value) == seconds


def test_selector_helpers() -> None:
    selector = LabelSelector(
        match_labels={"app": "web"},
        match_expressions=[
            LabelSelectorRequirement(key="tier", operator="In", values=["b", "a"]),
            LabelSelectorRequirement(key="canary", operator="DoesNotExist"),
            LabelSelectorRequirement(key="team", operator="Exists"),
            LabelSelectorRequirement(key="env", operator="NotIn", values=["dev"]),
        ],
    )
    assert selector_string(selector) == "app=web,tier in (a,b),!canary,team,env notin (dev)"
    assert selector_matches(selector, {"app": "web", "tier": "a", "team": "x"})
    assert not selector_matches(selector, {"app": "web", "tier": "a", "team": "x", "canary": "1"})
    assert not selector_matches(selector, {"app": "web", "tier": "c", "team": "x"})
    assert not selector_matches(selector, {"app": "web", "tier": "a", "team": "x", "env": "dev"})


def test_status_round_trip_ignores_kopf_and_patches_nulls() -> None:
    raw = {
        "observedGeneration": 3,
        "phase": "Progressing",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "RolloutInProgress",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "revisions": [{"name": "abc", "revision": 1, "createdAt": "2026-01-01T00:00:00Z"}],
        "kopf": {"progress": {}},
    }
    status = parse_status(raw)
    assert status.observed_generation == 3
    assert status.conditions[0].last_transition_time == datetime(2026, 1, 1, tzinfo=UTC)
    dumped = status.to_k8s()
    assert "kopf" not in dumped
    assert dumped["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    patch = status.to_patch()
    assert patch["stableRevision"] is None and patch["phase"] == "Progressing"
    assert "retiredAt" not in patch["revisions"][0]
    assert parse_status({"phase": "Nonsense"}) == ZeroDowntimeRolloutStatus()
    assert parse_status(None) == ZeroDowntimeRolloutStatus()


def test_times_are_utc_whole_seconds() -> None:
    status = ZeroDowntimeRolloutStatus(progressed_at=datetime(2026, 1, 1, 12, 0, 0, 999999))
    assert status.progressed_at == datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert status.to_k8s()["progressedAt"] == "2026-01-01T12:00:00Z"


def test_command_annotation_round_trip() -> None:
    command = Command(id="1700000000-ab12", verb="promote", full=True)
    text = command_annotation(command)
    assert parse_command(text) == command
    assert '"verb":"promote"' in text
    with pytest.raises(ValueError, match="zdr.io/command"):
        parse_command('{"id": "x", "verb": "explode"}')
    with pytest.raises(ValueError):
        parse_command("not json")


def test_rollout_name_limits() -> None:
    assert api.check_rollout_name("web") == []
    assert api.check_rollout_name("x" * 53)[0].startswith("metadata.name: at most 52 characters")
    assert api.check_rollout_name("Web")[0].startswith("metadata.name: must be a DNS label")


HTTP_CHECK = {"name": "ok", "http": {"path": "/"}}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {
                "analysis": {
                    "checks": [
                        {
                            "name": "a",
                            "http": {},
                            "prometheus": {"address": "http://p", "query": "q", "range": {"max": 1}},
                        }
                    ]
                }
            },
            "spec.analysis.checks[0]: set exactly one of http or prometheus (got http and prometheus)",
        ),
        (
            {"analysis": {"checks": [{"name": "a"}]}},
            "spec.analysis.checks[0]: set exactly one of http or prometheus (got neither)",
        ),
        (
            {"analysis": {"checks": [HTTP_CHECK, HTTP_CHECK]}},
            "spec.analysis.checks[1].name: duplicate check name 'ok'",
        ),
        (
            {"analysis": {"checks": [{**HTTP_CHECK, "name": "Bad_Name"}]}},
            "spec.analysis.checks[0].name: must be a DNS label",
        ),
        (
            {"analysis": {"checks": [{**HTTP_CHECK, "interval": "500ms"}]}},
            "spec.analysis.checks[0].interval: must be at least 1s",
        ),
        (
            {"analysis": {"checks": [{"name": "a", "http": {"target": "Service"}}]}},
            "spec.analysis.checks[0].http.target: RollingUpdate has no Service",
        ),
        (
            {"analysis": {"checks": [{"name": "a", "http": {"url": "ftp://x"}}]}},
            "spec.analysis.checks[0].http.url: must be an absolute http:// or https:// URL",
        ),
        (
            {"analysis": {"checks": [{"name": "a", "http": {"url": "http://x/", "target": "Pods"}}]}},
            "spec.analysis.checks[0].http: set url or target, not both",
        ),
        (
            {"analysis": {"checks": [{"name": "a", "http": {"jsonPath": "a.b"}}]}},
            "spec.analysis.checks[0].http: jsonPath and range go together",
        ),
        (
            {"analysis": {"checks": [{"name": "a", "http": {"path": "x"}}]}},
            "spec.analysis.checks[0].http.path: must start with '/'",
        ),
        (
            {"analysis": {"checks": [{"name": "a", "http": {"statusCodes": [700]}}]}},
            "spec.analysis.checks[0].http.statusCodes: 700 is not",
        ),
        (
            {
                "analysis": {
                    "checks": [
                        {
                            "name": "a",
                            "prometheus": {"address": "prom:9090", "query": "q", "range": {"max": 1}},
                        }
                    ]
                }
            },
            "spec.analysis.checks[0].prometheus.address: must be an http:// or https:// URL",
        ),
        (
            {
                "analysis": {
                    "checks": [
                        {"name": "a", "prometheus": {"address": "http://p", "query": "q", "range": {}}}
                    ]
                }
            },
            "spec.analysis.checks[0].prometheus.range: set min, max or both",
        ),
        (
            {
                "analysis": {
                    "checks": [
                        {
                            "name": "a",
                            "prometheus": {
                                "address": "http://p",
                                "query": "q",
                                "range": {"min": 2, "max": 1},
                            },
                        }
                    ]
                }
            },
            "spec.analysis.checks[0].prometheus.range: min 2 is above max 1",
        ),
        ({"analysis": {"maxRestarts": -1}}, "spec.analysis.maxRestarts: must be at least 0 (got -1)"),
        (
            {
                "strategy": {
                    "type": "Canary",
                    "canary": {"steps": [{"analysis": {"checks": [{"name": "x"}]}, "pause": {}}]},
                }
            },
            "spec.strategy.canary.steps[0]: set exactly one of setWeight, pause or analysis (got pause and analysis)",
        ),
        (
            {
                "strategy": {
                    "type": "Canary",
                    "canary": {"steps": [{"analysis": {"checks": [{"name": "x"}]}}]},
                }
            },
            "spec.strategy.canary.steps[0].analysis.checks[0]: set exactly one of http or prometheus",
        ),
        (
            {"strategy": {"type": "Canary", "canary": {"steps": [{"analysis": {"checks": []}}]}}},
            "spec.strategy.canary.steps[0].analysis.checks: must not be empty",
        ),
    ],
)
def test_analysis_validation_messages(changes: dict[str, Any], message: str) -> None:
    messages = errors_of(spec_with(**changes))
    assert any(m.startswith(message) for m in messages), messages


def test_analysis_defaults_and_a_full_example() -> None:
    spec = api.parse_spec(spec_with())
    gates = spec.analysis
    assert (gates.max_restarts, gates.abort_on_crash_loop, gates.max_unready_seconds, gates.checks) == (
        3,
        True,
        None,
        None,
    )
    full = api.parse_spec(
        spec_with(
            analysis={
                "maxUnreadySeconds": 60,
                "checks": [
                    {
                        "name": "error-rate",
                        "interval": "15s",
                        "failureLimit": 2,
                        "prometheus": {
                            "address": "http://prometheus.monitoring:9090",
                            "query": 'sum(rate(x{revision="{{revision}}"}[1m]))',
                            "range": {"max": 0.01},
                        },
                    },
                    {
                        "name": "stats",
                        "http": {"target": "Pods", "port": "http", "jsonPath": "errors", "range": {"max": 0}},
                    },
                ],
            },
            strategy={
                "type": "Canary",
                "canary": {"steps": [{"setWeight": 10}, {"analysis": {"checks": [HTTP_CHECK]}}]},
            },
        )
    )
    checks = full.analysis.checks or []
    assert checks[0].interval == "15s" and checks[0].count == 1 and checks[0].initial_delay is None
    assert (
        checks[1].http is not None
        and checks[1].http.timeout_seconds == 2
        and checks[1].http.status_codes is None
    )
    assert str(checks[0].prometheus.range) == "<= 0.01"  # type: ignore[union-attr]
    assert api.parse_spec(full.to_k8s()) == full
    rolling = spec_with(strategy={"type": "RollingUpdate", "rollingUpdate": {"scaleDownDelaySeconds": 0}})
    assert api.parse_spec(rolling).strategy.effective_rolling_update.scale_down_delay_seconds == 0
    assert api.parse_spec(spec_with()).strategy.effective_rolling_update.scale_down_delay_seconds == 30


def test_status_records_patch_their_unset_fields_as_null() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    status = api.ZeroDowntimeRolloutStatus(
        abort=api.AbortRecord(revision="a", reason="RolloutAborted", aborted_at=now),
    )
    patch = status.to_patch()
    assert patch["abort"]["completedAt"] is None and patch["abort"]["reason"] == "RolloutAborted"
    assert patch["rollback"] is None and patch["analysis"] == []


def test_a_grace_period_too_short_for_the_declared_requests_is_refused() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(
            spec_with(
                drain={"preStopSeconds": 5, "maxRequestSeconds": 30, "terminationGracePeriodSeconds": 20}
            )
        )
    (message,) = err.value.messages
    assert message.startswith("spec.drain.terminationGracePeriodSeconds: 20 cannot cover")
    assert "raise it to at least 35" in message
    template = spec_with()["template"]
    template["spec"]["terminationGracePeriodSeconds"] = 10
    with pytest.raises(SpecError) as err:
        parse_spec(spec_with(template=template, drain={"maxRequestSeconds": 30}))
    assert err.value.messages[0].startswith("spec.template.spec.terminationGracePeriodSeconds: 10")
    # Left to zdr, the grace period is sized to cover it.
    assert parse_spec(spec_with(drain={"maxRequestSeconds": 30})).drain.max_request_seconds == 30


def test_an_unknown_stop_signal_names_the_choices() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(spec_with(drain={"stopSignal": "SIGKILL"}))
    assert err.value.messages[0].startswith("spec.drain.stopSignal")
    assert "SIGQUIT" in err.value.messages[0]
