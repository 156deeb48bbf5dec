"""Revision hashing, drain injection, readiness checks and the child builders."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from zdr.api import ALL_REVISIONS, ServiceRole, ServiceTarget, parse_spec
from zdr.revision import (
    HASH_LENGTH,
    build_deployment,
    build_service,
    carries_serving_label,
    effective_template,
    readiness_problems,
    revision_hash,
    selector_target,
    service_selector,
)

CONTAINER: dict[str, Any] = {
    "name": "web",
    "image": "example/web:1",
    "ports": [{"name": "http", "containerPort": 8080}],
    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
}


def spec_of(*containers: dict[str, Any], pod: dict[str, Any] | None = None, **fields: Any) -> Any:
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": list(containers or [CONTAINER])},
    }
    template["spec"].update(pod or {})
    return parse_spec({"template": template, **fields})


def test_hash_is_short_stable_hex_and_pinned() -> None:
    digest = revision_hash(spec_of())
    assert len(digest) == HASH_LENGTH and int(digest, 16) >= 0
    # Pinned: a change here means every existing rollout would roll out again on upgrade.
    assert digest == "a93c18b252"


def test_hash_ignores_key_order_and_non_template_fields() -> None:
    reordered = dict(reversed(list(CONTAINER.items())))
    assert revision_hash(spec_of(reordered)) == revision_hash(spec_of())
    assert revision_hash(spec_of(replicas=7, minReadySeconds=3, paused=True)) == revision_hash(spec_of())
    assert revision_hash(spec_of(strategy={"type": "Canary"})) == revision_hash(spec_of())


def test_hash_follows_what_runs() -> None:
    base = revision_hash(spec_of())
    assert revision_hash(spec_of({**CONTAINER, "image": "example/web:2"})) != base
    assert revision_hash(spec_of(drain={"preStopSeconds": 10})) != base
    assert revision_hash(spec_of(drain={"terminationGracePeriodSeconds": 60})) != base


def test_drain_injects_native_sleep_prestop_and_grace_period() -> None:
    template = effective_template(spec_of())
    container = template["spec"]["containers"][0]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}
    assert template["spec"]["terminationGracePeriodSeconds"] == 30


def test_drain_keeps_a_containers_own_prestop() -> None:
    own = {**CONTAINER, "lifecycle": {"preStop": {"exec": {"command": ["drain"]}}, "postStart": {"exec": {}}}}
    sidecar = {"name": "proxy", "image": "example/proxy:1"}
    template = effective_template(spec_of(own, sidecar))
    web, proxy = template["spec"]["containers"]
    assert web["lifecycle"]["preStop"] == {"exec": {"command": ["drain"]}}
    assert proxy["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}


def test_drain_preserves_other_lifecycle_hooks_and_the_users_template() -> None:
    with_post_start = {**CONTAINER, "lifecycle": {"postStart": {"exec": {"command": ["warm"]}}}}
    spec = spec_of(with_post_start)
    before = copy.deepcopy(spec.template)
    container = effective_template(spec)["spec"]["containers"][0]
    assert container["lifecycle"] == {
        "postStart": {"exec": {"command": ["warm"]}},
        "preStop": {"sleep": {"seconds": 5}},
    }
    assert spec.template == before


def test_zero_prestop_disables_injection() -> None:
    template = effective_template(spec_of(drain={"preStopSeconds": 0}))
    assert "lifecycle" not in template["spec"]["containers"][0]
    assert template["spec"]["terminationGracePeriodSeconds"] == 30


@pytest.mark.parametrize(
    ("drain", "pod", "own_sleep", "expected"),
    [
        ({}, {}, None, 30),  # 5 s preStop + 10 s default shutdown < 30
        ({"preStopSeconds": 25}, {}, None, 35),  # 25 + 10
        ({}, {"terminationGracePeriodSeconds": 60}, None, 65),  # app needs 60 after its preStop of 5
        ({"terminationGracePeriodSeconds": 90}, {"terminationGracePeriodSeconds": 20}, None, 90),
        ({}, {}, 40, 50),  # the container's own sleep of 40 + 10
        ({"preStopSeconds": 0, "terminationGracePeriodSeconds": 1}, {}, None, 10),
    ],
)
def test_grace_period_covers_prestop_and_shutdown(
    drain: dict[str, int], pod: dict[str, Any], own_sleep: int | None, expected: int
) -> None:
    container = dict(CONTAINER)
    if own_sleep is not None:
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": own_sleep}}}
    template = effective_template(spec_of(container, pod=pod, drain=drain))
    assert template["spec"]["terminationGracePeriodSeconds"] == expected


def test_readiness_probe_required_on_serving_containers() -> None:
    no_probe = {k: v for k, v in CONTAINER.items() if k != "readinessProbe"}
    problems = readiness_problems(spec_of(no_probe))
    assert problems == [
        "spec.template.spec.containers[0] (web): exposes ports but has no readinessProbe; "
        "add a readinessProbe (e.g. httpGet on the serving port) so traffic only reaches pods "
        "that answer, or set spec.allowMissingReadinessProbe: true"
    ]
    assert readiness_problems(spec_of(no_probe, allowMissingReadinessProbe=True)) == []
    sidecar = {"name": "log", "image": "example/log:1"}
    assert readiness_problems(spec_of(CONTAINER, sidecar)) == []


def test_readiness_probe_when_no_container_declares_ports() -> None:
    bare = {"name": "worker", "image": "example/worker:1"}
    probed = {**bare, "name": "probed", "readinessProbe": {"exec": {"command": ["true"]}}}
    service = {"ports": [{"port": 80, "targetPort": 8080}]}
    assert readiness_problems(spec_of(bare, service=service))[0].startswith(
        "spec.template.spec.containers: no container has a readinessProbe"
    )
    assert readiness_problems(spec_of(bare, probed, service=service)) == []


def test_build_deployment() -> None:
    spec = spec_of(replicas=4, minReadySeconds=5, progressDeadlineSeconds=120)
    digest = revision_hash(spec)
    deployment = build_deployment("web", "shop", spec, digest, 2)
    labels = {"app.kubernetes.io/managed-by": "zdr", "zdr.io/rollout": "web", "zdr.io/revision": digest}
    assert deployment["metadata"] == {"name": f"web-{digest}", "namespace": "shop", "labels": labels}
    body = deployment["spec"]
    assert body["replicas"] == 2
    assert body["selector"] == {
        "matchLabels": {"app": "web", "zdr.io/rollout": "web", "zdr.io/revision": digest}
    }
    assert body["template"]["metadata"]["labels"] == {"app": "web", **labels, "zdr.io/serving": "true"}
    assert carries_serving_label(deployment)
    assert "zdr.io/serving" not in body["selector"]["matchLabels"]  # flipping it keeps the pod its own
    assert body["template"]["spec"]["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert body["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert (body["minReadySeconds"], body["progressDeadlineSeconds"], body["revisionHistoryLimit"]) == (
        5,
        120,
        0,
    )


def test_build_deployment_keeps_selector_expressions() -> None:
    spec = spec_of(selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]})
    selector = build_deployment("web", "shop", spec, "abc", 1)["spec"]["selector"]
    assert selector["matchExpressions"] == [{"key": "app", "operator": "In", "values": ["web"]}]
    assert selector["matchLabels"] == {"zdr.io/rollout": "web", "zdr.io/revision": "abc"}


def test_service_selectors_round_trip() -> None:
    spec = spec_of()
    wide = service_selector("web", spec, ALL_REVISIONS)
    assert wide == {"app": "web", "zdr.io/rollout": "web", "zdr.io/serving": "true"}
    pinned = service_selector("web", spec, ServiceTarget("abc"))
    assert pinned == {**wide, "zdr.io/revision": "abc"}
    assert selector_target(wide, "web", spec) == ALL_REVISIONS
    assert selector_target(pinned, "web", spec) == ServiceTarget("abc")
    # Services of pods created before the serving label are still recognized.
    older = service_selector("web", spec, ServiceTarget("abc"), serving=False)
    assert older == {"app": "web", "zdr.io/rollout": "web", "zdr.io/revision": "abc"}
    assert selector_target(older, "web", spec) == ServiceTarget("abc")
    assert selector_target({**wide, "zdr.io/serving": "false"}, "web", spec) is None
    assert selector_target({"app": "web"}, "web", spec) is None
    assert selector_target(None, "web", spec) is None


def test_build_service_main_and_extra_roles() -> None:
    spec = spec_of(
        service={
            "type": "NodePort",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}],
            "sessionAffinity": "ClientIP",
            "sessionAffinityTimeoutSeconds": 600,
            "annotations": {"example.com/lb": "internal"},
        }
    )
    selector = service_selector("web", spec, ALL_REVISIONS)
    main = build_service("web", spec, selector, rollout_name="web", namespace="shop")
    assert main["metadata"]["labels"]["zdr.io/service-role"] == "main"
    assert main["metadata"]["annotations"] == {"example.com/lb": "internal"}
    assert main["spec"] == {
        "type": "NodePort",
        "selector": selector,
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080}],
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
    }
    canary = build_service(
        "web-canary", spec, selector, rollout_name="web", namespace="shop", role=ServiceRole.CANARY
    )
    assert canary["spec"]["type"] == "ClusterIP"
    assert "nodePort" not in canary["spec"]["ports"][0]
    assert "annotations" not in canary["metadata"]
    assert canary["spec"]["sessionAffinity"] == "ClientIP"


def test_declared_request_bound_sizes_the_grace_period() -> None:
    # preStop 5 + the longest request 25: the default allowance (25) after SIGTERM is not enough
    # once a request may take 40 s.
    template = effective_template(spec_of(drain={"maxRequestSeconds": 40}))
    assert template["spec"]["terminationGracePeriodSeconds"] == 5 + 40
    small = effective_template(spec_of(drain={"maxRequestSeconds": 1}))
    assert (
        small["spec"]["terminationGracePeriodSeconds"]
        == effective_template(spec_of())["spec"]["terminationGracePeriodSeconds"]
    )


def test_stop_signal_reaches_every_container_without_its_own() -> None:
    own = {"name": "sidecar", "image": "example/proxy:1", "lifecycle": {"stopSignal": "SIGINT"}}
    template = effective_template(spec_of(CONTAINER, own, drain={"stopSignal": "SIGQUIT"}))
    web, sidecar = template["spec"]["containers"]
    assert web["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}, "stopSignal": "SIGQUIT"}
    assert sidecar["lifecycle"]["stopSignal"] == "SIGINT"
    assert template["spec"]["os"] == {"name": "linux"}
    assert revision_hash(spec_of(drain={"stopSignal": "SIGQUIT"})) != revision_hash(spec_of())
    assert "os" not in effective_template(spec_of())["spec"]
