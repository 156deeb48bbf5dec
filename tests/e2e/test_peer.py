"""The peer the benchmark measures zdr beside: the Argo Rollouts controller, built from the Go module
proxy by `make binaries`, runs one blue-green rollout of the test app under the bench's own traffic
(no-retry prober on new and kept-alive connections, WebSockets, vegeta), and the bench's harness
measures it. So the comparison in `make bench` cannot rot unnoticed: a controller that no longer
starts, a Rollout the CRDs refuse, or a measurement that comes out empty fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.argo import ArgoController, available
from bench.prober import http_records
from bench.run import SCENARIOS, Config, run_scenario
from bench.scenarios import Kube

pytestmark = pytest.mark.e2e


def test_argo_rollouts_blue_green_runs_under_the_bench_and_is_measured(cluster: Path, tmp_path: Path) -> None:
    assert available(), "the Argo Rollouts controller is not built: `make binaries` builds it"
    kube = Kube(cluster)
    argo = ArgoController(log=tmp_path / "argo-rollouts.log")
    argo.start(kube)
    try:
        result, records = run_scenario(
            kube, SCENARIOS["argo-bluegreen"], Config(), tmp_path / "run", 1, {"argo": argo.pid}
        )
        running = argo.pid is not None
    finally:
        argo.stop()
    log = (tmp_path / "argo-rollouts.log").read_text()[-3000:]
    assert result.error is None, f"{result.error}\ncontroller log:\n{log}"
    assert running, f"the controller exited during the run:\n{log}"
    assert result.valid, result.invalid_reasons
    assert result.controller == "argo"
    answered = {r.get("version") for r in http_records(records) if r.get("outcome") == "ok"}
    assert answered == {"v1", "v2"}, "the traffic did not see v2 roll out and v1 come back"
    assert result.sent > 5000 and result.ws_connections >= 20
    assert result.rollout_s is not None and result.rollout_s > 0
    assert result.start_s is not None and result.overhead_s is not None
    assert result.peak_pods is not None and result.peak_pods >= 8  # blue-green runs a second full set
    assert result.new_pods is not None and result.new_pods >= 4
    assert result.reactions_s, "no write of Argo's controller answered a ready endpoint"
    assert result.controller_cpu_s is not None and result.controller_cpu_s > 0
    assert result.controller_peak_rss_mib is not None and result.controller_peak_rss_mib > 10
    assert result.rollback_new_conn_s is not None
    assert result.vegeta is not None and result.vegeta["requests"] > 0
