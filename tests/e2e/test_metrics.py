"""The operator's own metrics, scraped by a real Prometheus (a static target on 127.0.0.1) while
rollouts go to Healthy, read back through PromQL on Prometheus' HTTP API.

The operator here is a process of its own, serving metrics on a free port on 127.0.0.1 and
watching only this test's namespace, so every count it reports belongs to this test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.e2e import kube
from tests.e2e.conftest import OperatorProcess
from tests.e2e.prometheus import Prometheus, free_port
from tests.e2e.rollouts import ROLLING, Rollouts, canary, rollout, with_version
from tests.e2e.test_cli import cli, plugin  # noqa: F401 - plugin: the fixture that installs what cli runs

pytestmark = pytest.mark.e2e


class Metered:
    def __init__(self, zdr: Rollouts, prometheus: Prometheus, operator: OperatorProcess) -> None:
        self.zdr = zdr
        self.prometheus = prometheus
        self.operator = operator

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.prometheus.query(promql.replace("NS", self.zdr.namespace))

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, promql: str, expected: float, timeout: float = 30) -> None:
        try:
            kube.wait_until(
                f"{promql} == {expected}", lambda: self.value(promql) == expected, timeout=timeout, interval=1.0
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; last value {self.value(promql)}; operator log:\n{self.operator.log_tail(20)}"
            ) from None

    def wait_absent(self, promql: str, timeout: float = 30) -> None:
        kube.wait_until(f"{promql} to be absent", lambda: not self.query(promql), timeout=timeout, interval=1.0)


@pytest.fixture
def metered(
    cluster: Path, crd: None, api: client.ApiClient, core: client.CoreV1Api, tmp_path: Path
) -> Iterator[Metered]:
    namespace = f"metrics-{uuid.uuid4().hex[:6]}"  # watched by no other operator of the session
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    kube.wait_for_default_service_account(core, namespace)
    address = f"127.0.0.1:{free_port()}"
    operator = OperatorProcess(cluster, tmp_path / "operator.log", namespaces=namespace, metrics_addr=address)
    prometheus = Prometheus(core, namespace, tmp_path / "prometheus", static={"zdr": [address]}, pods=False)
    operator.start()
    try:
        prometheus.start()
        try:
            yield Metered(Rollouts(api, namespace), prometheus, operator)
        finally:
            prometheus.stop()
    finally:
        operator.stop()
        core.delete_namespace(namespace, body=client.V1DeleteOptions(grace_period_seconds=0))


@pytest.mark.usefixtures("plugin")
def test_rollout_metrics_through_prometheus(metered: Metered) -> None:
    zdr, ns = metered.zdr, metered.zdr.namespace
    metered.wait_value('up{job="zdr"}', 1, timeout=60)

    web = rollout("web", ROLLING, replicas=2)
    shop = rollout("shop", canary([{"setWeight": 50}, {"pause": {}}]), replicas=2)
    zdr.create(web)
    zdr.create(shop)
    first = zdr.wait_phase("web", "Healthy")["updateRevision"]
    zdr.wait_phase("shop", "Healthy")

    paused = cli("pause", "web", "-n", ns)
    assert paused.returncode == 0, paused.stderr
    zdr.update_spec("web", with_version(web, "v2")["spec"])
    zdr.update_spec("shop", with_version(shop, "v2")["spec"])
    zdr.wait_phase("web", "Paused", timeout=30)
    metered.wait_value('zdr_rollout_phase{namespace="NS",rollout="web",phase="Paused"}', 1)
    kube.wait_until(
        "the canary to wait at its pause step",
        lambda: (s := zdr.status("shop")).get("phase") == "Paused" and s.get("currentStepIndex") == 1,
        timeout=90,
    )
    metered.wait_value('zdr_rollout_step{namespace="NS",rollout="shop"}', 1)

    resumed = cli("resume", "web", "-n", ns)
    assert resumed.returncode == 0, resumed.stderr
    promoted = cli("promote", "shop", "-n", ns)
    assert promoted.returncode == 0, promoted.stderr
    second = zdr.wait_phase("web", "Healthy", timeout=120)["updateRevision"]
    zdr.wait_phase("shop", "Healthy", timeout=120)
    assert second != first

    # One info series per rollout, for the template's revision; the first one's is gone.
    metered.wait_value(f'zdr_rollout_info{{namespace="NS",rollout="web",revision="{second}"}}', 1)
    [info] = metered.query('zdr_rollout_info{namespace="NS",rollout="web"}')
    assert info["metric"]["strategy"] == "RollingUpdate" and info["metric"]["revision"] == second
    assert metered.query(f'zdr_rollout_info{{namespace="NS",rollout="web",revision="{first}"}}') == []

    # The phase as a state set: Healthy 1, the four others 0.
    metered.wait_value('zdr_rollout_phase{namespace="NS",rollout="web",phase="Healthy"}', 1)
    assert metered.value('sum(zdr_rollout_phase{namespace="NS",rollout="web"})') == 1
    assert metered.value('count(zdr_rollout_phase{namespace="NS",rollout="web"})') == 5
    metered.wait_absent('zdr_rollout_step{namespace="NS",rollout="shop"}')

    # Each rollout counted once: the first deployment and the update, per strategy.
    metered.wait_value('zdr_rollout_duration_seconds_count{strategy="RollingUpdate"}', 2)
    metered.wait_value('zdr_rollout_duration_seconds_count{strategy="Canary"}', 2)
    assert (metered.value('zdr_rollout_duration_seconds_sum{strategy="RollingUpdate"}') or 0) > 0
    metered.wait_value('zdr_rollout_step_duration_seconds_count{kind="setWeight"}', 1)
    metered.wait_value('zdr_rollout_step_duration_seconds_count{kind="pause"}', 1)

    for verb in ("pause", "resume", "promote"):
        metered.wait_value(f'zdr_commands_total{{verb="{verb}",result="Accepted"}}', 1)
    assert metered.value("sum(zdr_aborts_total)") == 0
    assert (metered.value("zdr_reconcile_duration_seconds_count") or 0) > 0
    assert metered.value("zdr_reconcile_errors_total") is not None

    # Counted once, also while the operator keeps reconciling a Healthy rollout.
    zdr.command("web", "restart")
    kube.wait_until(
        "the restart to complete",
        lambda: ((zdr.status("web").get("restart") or {}).get("completedAt")),
        timeout=120,
    )
    zdr.wait_phase("web", "Healthy")
    metered.wait_value('zdr_commands_total{verb="restart",result="Accepted"}', 1)
    assert metered.value('max_over_time(zdr_rollout_duration_seconds_count{strategy="RollingUpdate"}[10m])') == 2

    # A deleted rollout leaves no series behind.
    zdr.custom.delete_namespaced_custom_object("zdr.io", "v1alpha1", ns, "zerodowntimerollouts", "web")
    metered.wait_absent('zdr_rollout_info{namespace="NS",rollout="web"}')
    metered.wait_absent('zdr_rollout_phase{namespace="NS",rollout="web"}')
    assert len(metered.query('zdr_rollout_info{namespace="NS"}')) == 1
