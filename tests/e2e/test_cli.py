"""The kubectl plugin on the real cluster, run as users run it: the installed ``kubectl-zdr``
script as a subprocess, and ``kubectl zdr`` through kubectl's plugin mechanism.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.e2e import kube
from tests.e2e.conftest import KUBECONFIG, OperatorProcess
from tests.e2e.rollouts import ROLLING, Rollouts, blue_green, rollout, with_version

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
PLUGIN = VENV_BIN / "kubectl-zdr"
KUBECTL = ROOT / ".cluster" / "bin" / "kubectl"


@pytest.fixture(scope="session")
def plugin() -> Path:
    """The console script, installed with the package (installed once if it is missing)."""
    if not PLUGIN.exists():
        subprocess.run(
            [str(VENV_BIN / "pip"), "install", "-q", "--no-deps", "-e", str(ROOT)],
            check=True,
            capture_output=True,
        )
    assert PLUGIN.exists()
    return PLUGIN


@pytest.fixture
def zdr(api: client.ApiClient, namespace: str, operator: OperatorProcess, plugin: Path) -> Rollouts:
    if operator.proc is None or operator.proc.poll() is not None:
        operator.start()
    return Rollouts(api, namespace)


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(KUBECONFIG), "COLUMNS": "200", **extra}


def cli(*args: str, timeout: float = 180, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), *args], capture_output=True, text=True, timeout=timeout, env=env(**extra_env)
    )


def without_ages(text: str) -> str:
    return re.sub(r"(age|retired) \S+", "", text)


def annotation(zdr: Rollouts, name: str) -> dict[str, Any]:
    text = zdr.get(name)["metadata"]["annotations"]["zdr.io/command"]
    body: dict[str, Any] = json.loads(text)
    return body


def test_get_shows_revisions_pods_and_services(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("web", ROLLING)
    zdr.create(manifest)
    first = zdr.wait_phase("web", "Healthy")["stableRevision"]
    zdr.update_spec("web", with_version(manifest, "v2")["spec"])
    st = zdr.wait_phase("web", "Healthy", timeout=120)
    second = st["stableRevision"]

    out = cli("get", "web", "-n", namespace)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    lines = text.splitlines()
    assert lines[0].startswith(f"{namespace}/web  RollingUpdate  Healthy")
    new_line = next(line for line in lines if f"revision 2  {second}" in line)
    assert "stable" in new_line and f"Deployment web-{second} 3/3 ready" in new_line
    assert any(f"revision 1  {first}" in line for line in lines)
    for pod in zdr.pods("web", second):
        row = next(line for line in lines if pod.metadata.name in line)
        assert "1/1  Running  restarts 0" in row
    service = next(line for line in lines if "web (main)  selects " in line)
    assert service.endswith("endpoints 3 ready")
    assert text.index(f"revision 2  {second}") < text.index(f"revision 1  {first}") < text.index("Services")


def test_get_watch_follows_a_rollout_until_interrupted(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("web", ROLLING, replicas=2)
    zdr.create(manifest)
    zdr.wait_phase("web", "Healthy")
    proc = subprocess.Popen(
        [str(PLUGIN), "get", "web", "-n", namespace, "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    try:
        time.sleep(2)
        zdr.update_spec("web", with_version(manifest, "v2")["spec"])
        second = zdr.wait_phase("web", "Healthy", timeout=120)["stableRevision"]
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    frames = stdout.split("\n--- ")
    assert len(frames) >= 3  # the first tree, then one per burst of changes
    assert "Progressing" in stdout
    assert f"revision 2  {second}  stable" in frames[-1]
    assert "Traceback" not in stderr


def test_status_exits_zero_once_healthy(zdr: Rollouts, namespace: str) -> None:
    zdr.create(rollout("web", ROLLING))
    out = cli("status", "web", "-n", namespace, "--timeout", "2m")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any("Progressing" in line or "waiting" in line for line in lines[:-1])
    assert "Healthy: revision 1" in lines[-2]
    assert lines[-1] == f'zerodowntimerollout "web" in namespace "{namespace}" is Healthy'


def test_status_fails_on_a_refused_spec(zdr: Rollouts, namespace: str) -> None:
    zdr.create(rollout("web", ROLLING, readiness=False))
    started = time.monotonic()
    out = cli("status", "web", "-n", namespace, "--timeout", "90s")
    assert out.returncode == 1, out.stdout + out.stderr
    assert time.monotonic() - started < 60
    assert out.stderr.startswith(
        f'error: zerodowntimerollout "web" in namespace "{namespace}" failed: Degraded: readiness probe missing'
    )
    assert "Traceback" not in out.stderr


def test_status_times_out_on_a_paused_rollout(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("shop", blue_green(auto=False))
    zdr.create(manifest)
    zdr.wait_phase("shop", "Healthy")
    zdr.update_spec("shop", with_version(manifest, "v2")["spec"])
    out = cli("status", "shop", "-n", namespace, "--timeout", "8s")
    assert out.returncode == 3, out.stdout + out.stderr
    assert "timed out after 8s" in out.stderr and "waiting for `kubectl zdr promote`" in out.stderr


def test_promote_blue_green_manual(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("shop", blue_green(auto=False))
    zdr.create(manifest)
    blue = zdr.wait_phase("shop", "Healthy")["stableRevision"]
    zdr.update_spec("shop", with_version(manifest, "v2")["spec"])
    paused = zdr.wait_phase("shop", "Paused", timeout=90)
    green = paused["updateRevision"]
    generation = zdr.get("shop")["metadata"]["generation"]
    assert zdr.service_selector("shop")["zdr.io/revision"] == blue

    out = cli("promote", "shop", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(
        f'promote of zerodowntimerollout "shop" in namespace "{namespace}": Accepted: '
    )
    request = annotation(zdr, "shop")
    assert request["verb"] == "promote" and request["full"] is False
    assert request["requestedBy"] == "kubernetes-admin" and request["requestedAt"].endswith("Z")
    obj = zdr.get("shop")
    assert obj["metadata"]["generation"] == generation  # the spec was not written
    assert obj["status"]["lastCommand"]["id"] == request["id"]

    done = cli("status", "shop", "-n", namespace, "--timeout", "90s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert zdr.service_selector("shop")["zdr.io/revision"] == green
    zdr.wait_only("shop", {"v2"})  # kube-proxy follows the selector switch within ~1 s

    again = cli("promote", "shop", "-n", namespace)
    assert again.returncode == 1
    assert "Rejected: nothing to promote" in again.stderr


def test_pause_and_resume_by_command(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("web", ROLLING)
    zdr.create(manifest)
    zdr.wait_phase("web", "Healthy")
    out = cli("pause", "web", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert "Accepted: paused by command" in out.stdout
    zdr.update_spec("web", with_version(manifest, "v2")["spec"])
    st = zdr.wait_phase("web", "Paused", timeout=30)
    assert st["stableRevision"] != st["updateRevision"]
    out = cli("resume", "web", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert cli("status", "web", "-n", namespace, "--timeout", "2m").returncode == 0


@pytest.mark.parametrize(
    ("verb", "flags"), [("abort", []), ("retry", []), ("undo", ["--to-revision", "1"]), ("restart", [])]
)
def test_other_commands_report_the_operators_answer(
    zdr: Rollouts, namespace: str, verb: str, flags: list[str]
) -> None:
    """Whatever the operator answers, the plugin writes the request and reports that answer."""
    zdr.create(rollout("web", ROLLING))
    zdr.wait_phase("web", "Healthy")
    generation = zdr.get("web")["metadata"]["generation"]
    out = cli(verb, "web", *flags, "-n", namespace)
    request = annotation(zdr, "web")
    assert request["verb"] == verb
    assert request.get("toRevision") == (1 if verb == "undo" else None)
    last = zdr.status("web")["lastCommand"]
    assert last["id"] == request["id"]
    assert zdr.get("web")["metadata"]["generation"] == generation
    line = f'{verb}{" --to-revision 1" if flags else ""} of zerodowntimerollout "web" in namespace "{namespace}": '
    line += f"{last['result']}: {last['message']}"
    if last["result"] == "Accepted":
        assert out.returncode == 0 and out.stdout.strip() == line
    else:
        assert out.returncode == 1 and out.stderr.strip() == f"error: {line}"


def test_abort_then_retry_a_blue_green_rollout(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("shop", blue_green(auto=False))
    zdr.create(manifest)
    blue = zdr.wait_phase("shop", "Healthy")["stableRevision"]
    zdr.update_spec("shop", with_version(manifest, "v2")["spec"])
    green = zdr.wait_phase("shop", "Paused", timeout=90)["updateRevision"]

    out = cli("abort", "shop", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert (
        f"Accepted: abort of revision 2 ({green}): all traffic goes back to revision 1 ({blue})" in out.stdout
    )
    status = cli("status", "shop", "-n", namespace, "--timeout", "60s")
    assert status.returncode == 1
    assert f'"shop" in namespace "{namespace}" failed: Aborted: aborted revision 2 ({green})' in status.stderr
    kube.wait_until("the aborted revision to be scaled down", lambda: not zdr.pods("shop", green), timeout=60)
    assert zdr.service_selector("shop")["zdr.io/revision"] == blue
    tree = cli("get", "shop", "-n", namespace).stdout
    assert "BlueGreen  Aborted" in tree.splitlines()[0]
    assert f"revision 1  {blue}  stable" in tree and f"revision 2  {green}  update" in tree

    out = cli("retry", "shop", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert f"Accepted: retrying revision 2 ({green})" in out.stdout
    zdr.wait_phase("shop", "Paused", timeout=90)
    assert cli("promote", "shop", "-n", namespace).returncode == 0
    done = cli("status", "shop", "-n", namespace, "--timeout", "90s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert zdr.service_selector("shop")["zdr.io/revision"] == green


def test_undo_a_finished_rolling_update(zdr: Rollouts, namespace: str) -> None:
    manifest = rollout("web", ROLLING)
    zdr.create(manifest)
    first = zdr.wait_phase("web", "Healthy")["stableRevision"]
    zdr.update_spec("web", with_version(manifest, "v2")["spec"])
    second = zdr.wait_phase("web", "Healthy", timeout=120)["stableRevision"]

    out = cli("undo", "web", "--to-revision", "7", "-n", namespace)
    assert out.returncode == 1
    assert out.stderr.strip().endswith("Rejected: no revision 7 (known: 1, 2)")

    out = cli("undo", "web", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert f"Accepted: rolling back to revision 1 ({first}); spec.template is left as it is" in out.stdout
    zdr.wait_only("web", {"v1"}, timeout=60)
    st = zdr.wait_phase("web", "Degraded", timeout=60)
    assert st["stableRevision"] == first and st["updateRevision"] == second
    status = cli("status", "web", "-n", namespace, "--timeout", "30s")
    assert status.returncode == 1
    assert f"failed: Degraded: rolled back to revision 1 ({first})" in status.stderr
    assert f"revision 1  {first}  stable" in cli("get", "web", "-n", namespace).stdout


def test_restart_replaces_every_pod(zdr: Rollouts, namespace: str) -> None:
    zdr.create(rollout("web", ROLLING))
    revision = zdr.wait_phase("web", "Healthy")["stableRevision"]
    before = {p.metadata.name for p in zdr.pods("web")}
    out = cli("restart", "web", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert f"Accepted: replacing every pod of revision 1 ({revision}), one at a time" in out.stdout

    def replaced() -> bool:
        pods = zdr.pods("web")
        ready = [p for p in pods if all(c.ready for c in p.status.container_statuses or [])]
        return len(ready) == 3 and not {p.metadata.name for p in pods} & before

    kube.wait_until("every pod to be replaced", replaced, timeout=120)
    done = cli("status", "web", "-n", namespace, "--timeout", "60s")
    assert done.returncode == 0, done.stdout + done.stderr


def test_plan_starts_from_the_rollout_in_the_cluster(zdr: Rollouts, namespace: str, tmp_path: Path) -> None:
    manifest = rollout("web", ROLLING)
    zdr.create(manifest)
    zdr.wait_phase("web", "Healthy")
    path = tmp_path / "web.yaml"
    path.write_text(yaml.safe_dump(with_version(manifest, "v2")))
    out = cli("plan", "-f", str(path), "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert f'from the cluster\'s current state (namespace "{namespace}", context zdr-local)' in out.stdout
    assert "now: rev 1: 3/3 pods ready" in out.stdout
    assert "create rev 2 with 1 pod" in out.stdout
    assert "serving never below 3 pods (the strategy keeps at least 3)" in out.stdout
    assert "result: Healthy" in out.stdout
    assert len(zdr.deployments("web")) == 1  # planning applied nothing


def test_errors_for_unknown_names_namespaces_and_an_unreachable_cluster(
    zdr: Rollouts, namespace: str, tmp_path: Path
) -> None:
    out = cli("get", "nope", "-n", namespace)
    assert out.returncode == 1
    assert out.stderr == (
        f'error: zerodowntimerollout "nope" not found in namespace "{namespace}"; '
        f"list with kubectl get zdr -n {namespace}\n"
    )
    out = cli("promote", "nope", "-n", "no-such-namespace")
    assert out.returncode == 1
    assert (
        out.stderr
        == 'error: zerodowntimerollout "nope" not found: namespace "no-such-namespace" does not exist\n'
    )

    lonely = f"lonely-{uuid.uuid4().hex[:6]}"
    zdr.create(rollout(lonely, ROLLING))
    out = cli("get", lonely, "-n", "default")
    assert out.returncode == 1
    assert f"(it exists in namespace {namespace}: add -n {namespace})" in out.stderr

    config = yaml.safe_load(KUBECONFIG.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    bad = tmp_path / "unreachable.yaml"
    bad.write_text(yaml.safe_dump(config))
    for args in (["get", lonely], ["status", lonely], ["abort", lonely]):
        out = cli(*args, "-n", namespace, KUBECONFIG=str(bad))
        assert out.returncode == 1
        assert out.stderr == (
            "error: cannot reach the Kubernetes API server at https://127.0.0.1:1 (connection refused); "
            f"kubeconfig {bad}, context 'zdr-local'; is the cluster running?\n"
        )


def test_kubectl_runs_the_plugin(zdr: Rollouts, namespace: str) -> None:
    zdr.create(rollout("web", ROLLING))
    zdr.wait_phase("web", "Healthy")
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    out = subprocess.run(
        [str(KUBECTL), "zdr", "get", "web", "-n", namespace],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(PATH=path),
    )
    assert out.returncode == 0, out.stderr
    direct = cli("get", "web", "-n", namespace).stdout
    assert without_ages(out.stdout) == without_ages(direct)
    status = subprocess.run(
        [str(KUBECTL), "zdr", "status", "web", "-n", namespace, "--timeout", "30s"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(PATH=path),
    )
    assert status.returncode == 0, status.stderr
