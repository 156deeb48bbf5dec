"""The kubectl plugin without a cluster: command requests, the plan simulation of every example,
the tree, CI status verdicts, and the error messages, in process with typer's CliRunner.

API calls go to a small fake API server on loopback that answers like kube-apiserver (Status
objects, merge patches, one-line watch streams), so the real client code paths run.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner
from zdr.api import COMMAND_ANNOTATION, parse_command, parse_spec
from zdr.cli import app
from zdr.cli.cluster import CliError, KubeOptions, connect
from zdr.cli.commands import annotation_patch, build_command, outcome_of
from zdr.cli.progress import parse_timeout, verdict
from zdr.cli.simulate import Simulation, assumed_previous, first_deployment, simulate
from zdr.cli.tree import Snapshot, age, pod_state, render
from zdr.plan import Observed, ObservedRevision, ObservedService, ServiceRole, ServiceTarget
from zdr.revision import revision_hash

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

runner = CliRunner()


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def write(tmp_path: Path, doc: dict[str, Any] | str, name: str = "rollout.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def offline_simulation(doc: dict[str, Any]) -> Simulation:
    spec = parse_spec(doc["spec"])
    status, observed = assumed_previous(spec, NOW)
    return simulate(doc["metadata"]["name"], spec, status, observed, start="test", now=NOW)


def kubeconfig(tmp_path: Path, server: str, namespace: str | None = None, name: str = "kubeconfig") -> Path:
    context: dict[str, Any] = {"cluster": "c", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "ctx", "context": context},
            {"name": "other", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": "ctx",
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------------------------------------
# Command requests
# ---------------------------------------------------------------------------------------------
def test_command_json_round_trips_through_the_annotation() -> None:
    command = build_command("undo", to_revision=3, requested_by="jane", now=NOW)
    patch = annotation_patch(command)
    assert list(patch) == [COMMAND_ANNOTATION]
    body = json.loads(patch[COMMAND_ANNOTATION])
    assert body == {
        "id": command.id,
        "verb": "undo",
        "full": False,
        "toRevision": 3,
        "requestedAt": "2026-01-01T12:00:00Z",
        "requestedBy": "jane",
    }
    assert parse_command(patch[COMMAND_ANNOTATION]) == command


def test_command_ids_are_unique_and_start_with_the_time() -> None:
    ids = {build_command("promote", now=NOW).id for _ in range(500)}
    assert len(ids) == 500
    assert all(re.fullmatch(r"20260101T120000Z-[0-9a-f]{8}", i) for i in ids)


def test_promote_full_and_unknown_requester() -> None:
    command = build_command("promote", full=True, now=NOW)
    body = json.loads(annotation_patch(command)[COMMAND_ANNOTATION])
    assert body["full"] is True and "requestedBy" not in body and "toRevision" not in body


@pytest.mark.parametrize(("verb", "kwargs"), [("abort", {"full": True}), ("promote", {"to_revision": 2})])
def test_flags_of_other_verbs_are_refused(verb: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(CliError):
        build_command(verb, **kwargs)


def test_outcome_from_status_last_command() -> None:
    def obj(last: dict[str, Any] | None, annotation: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"annotations": {COMMAND_ANNOTATION: annotation} if annotation else {}}
        return {"metadata": meta, "status": {"lastCommand": last} if last else {}}

    mine = json.dumps({"id": "a", "verb": "promote"})
    assert outcome_of(obj(None, mine), "a") is None
    assert outcome_of(obj({"id": "older", "result": "Accepted"}, mine), "a") is None
    accepted = outcome_of(obj({"id": "a", "result": "Accepted", "message": "ok"}, mine), "a")
    assert accepted is not None and accepted.ok and accepted.message == "ok"
    rejected = outcome_of(obj({"id": "a", "result": "Rejected", "message": "no"}, mine), "a")
    assert rejected is not None and not rejected.ok and rejected.state == "Rejected"
    replaced = outcome_of(obj(None, json.dumps({"id": "b", "verb": "abort"})), "a")
    assert replaced is not None and replaced.state == "Superseded"


# ---------------------------------------------------------------------------------------------
# plan: the simulation of each example
# ---------------------------------------------------------------------------------------------
def assert_capacity_kept(sim: Simulation) -> None:
    assert sim.healthy, sim.outcome
    replicas = sim.spec.replicas
    for row in sim.rows[1:]:
        assert row.min_serving >= sim.floor, row
        assert row.serving >= sim.floor, row
        assert row.total == row.old_pods + row.new_pods
    last = sim.rows[-1]
    assert (last.old_pods, last.new_pods, last.serving) == (0, replicas, replicas)
    assert last.action.startswith("done: ")


def shifting_rows(sim: Simulation) -> list[Any]:
    """Rows until the new revision first has every replica (where maxSurge applies)."""
    rows = []
    for row in sim.rows:
        rows.append(row)
        if row.new_pods == sim.spec.replicas:
            break
    return rows


def test_plan_rolling_example_replaces_one_pod_at_a_time() -> None:
    sim = offline_simulation(example("rolling.yaml"))
    assert_capacity_kept(sim)
    assert sim.floor == 4
    assert sim.rows[0].action == "now: rev 1: 4/4 pods ready"
    assert sim.rows[1].action == "create rev 2 with 1 pod"
    rows = shifting_rows(sim)
    assert max(r.total for r in rows) == 5  # maxSurge 1
    assert [r.new_pods for r in rows] == sorted(r.new_pods for r in rows)
    assert {r.new_pods for r in rows} == {0, 1, 2, 3, 4}


def test_plan_canary_example_walks_the_steps() -> None:
    sim = offline_simulation(example("canary.yaml"))
    assert_capacity_kept(sim)
    actions = [r.action for r in sim.rows]
    assert "step 2/4 pause 5s" in actions
    assert "step 4/4 pause: waits for `kubectl zdr promote`" in actions
    assert actions.index("step 2/4 pause 5s") < actions.index(
        "step 4/4 pause: waits for `kubectl zdr promote`"
    )
    at_weight = {r.action.split(":")[0]: r.new_pods for r in sim.rows if r.action.startswith("step ")}
    assert at_weight["step 1/4 setWeight 25"] == 1 and at_weight["step 3/4 setWeight 50"] == 2
    assert max(r.total for r in shifting_rows(sim)) <= 5  # replicas 4 + maxSurge 1
    assert any("switch canary Service → rev 2" in a for a in actions)
    assert any("switch stable Service → rev 2" in a for a in actions)


def test_plan_blue_green_example_switches_after_the_preview() -> None:
    sim = offline_simulation(example("bluegreen.yaml"))
    assert_capacity_kept(sim)
    actions = [r.action for r in sim.rows]
    create = actions.index("create rev 2 with 4 pods")
    preview = actions.index("switch preview Service → rev 2")
    active = actions.index("switch active Service → rev 2")
    assert create < preview < active
    assert sim.rows[active].min_serving == 4 and sim.rows[active].total == 8
    assert any(a.startswith("wait 10s: scaleDownDelaySeconds keeps rev 1 warm") for a in actions)
    assert sim.peak_pods == 8


def test_plan_blue_green_manual_promotion_is_shown() -> None:
    doc = example("bluegreen.yaml")
    doc["spec"]["strategy"]["blueGreen"]["autoPromotion"] = False
    sim = offline_simulation(doc)
    assert_capacity_kept(sim)
    actions = [r.action for r in sim.rows]
    waits = actions.index("preview serves: waits for `kubectl zdr promote`")
    assert (
        actions.index("switch preview Service → rev 2")
        < waits
        < actions.index("switch active Service → rev 2")
    )


def test_plan_stops_at_spec_paused() -> None:
    doc = example("rolling.yaml")
    doc["spec"]["paused"] = True
    sim = offline_simulation(doc)
    assert not sim.healthy and sim.outcome.startswith("Paused")
    assert "spec.paused is true" in sim.rows[-1].action


def test_plan_first_deployment_creates_every_pod() -> None:
    doc = example("canary.yaml")
    spec = parse_spec(doc["spec"])
    status, observed = first_deployment()
    sim = simulate("api", spec, status, observed, start="new", now=NOW)
    assert sim.healthy
    assert sim.rows[1].action.startswith("create rev 1 with 4 pods; create Service → every revision")
    assert sim.rows[0].serving == 0 and sim.rows[-1].serving == 4


def test_plan_of_the_running_spec_changes_nothing() -> None:
    spec = parse_spec(example("rolling.yaml")["spec"])
    current = revision_hash(spec)
    observed = Observed(
        generation=1,
        revisions={
            current: ObservedRevision(
                name=current,
                spec_replicas=4,
                replicas=4,
                ready_replicas=4,
                available_replicas=4,
                ready_endpoints={ServiceRole.MAIN: 4},
            )
        },
        services={ServiceRole.MAIN: ObservedService(name="web", target=ServiceTarget())},
    )
    sim = simulate(
        "web", spec, {"stableRevision": current, "updateRevision": current}, observed, start="x", now=NOW
    )
    assert sim.healthy
    assert [r.action.split(":")[0] for r in sim.rows] == ["now", "done"]


@pytest.mark.parametrize("name", ["rolling.yaml", "canary.yaml", "bluegreen.yaml"])
def test_plan_command_prints_the_table(name: str) -> None:
    result = runner.invoke(app, ["plan", "-f", str(EXAMPLES / name), "--offline"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    for column in ("step", "action", "old pods", "new pods", "total", "serving", "min serving"):
        assert column in out
    assert "result: Healthy" in out
    assert "serving never below 4 pods (the strategy keeps at least 4)" in out
    assert "from offline: a previous revision serving 4 pods (assumed)" in out


def test_plan_json_output() -> None:
    result = runner.invoke(app, ["plan", "-f", str(EXAMPLES / "canary.yaml"), "--offline", "-o", "json"])
    assert result.exit_code == 0, result.output
    [plan] = json.loads(result.stdout)
    assert plan["name"] == "api" and plan["strategy"] == "Canary" and plan["healthy"] is True
    assert plan["steps"][0]["step"] == 0
    assert all(step["minServing"] >= 4 for step in plan["steps"])


def test_plan_reads_several_documents_and_stdin() -> None:
    text = "\n---\n".join((EXAMPLES / n).read_text() for n in ("rolling.yaml", "bluegreen.yaml"))
    text += "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\n"
    result = runner.invoke(app, ["plan", "-f", "-", "--offline", "-o", "json"], input=text)
    assert result.exit_code == 0, result.output
    assert [p["name"] for p in json.loads(result.stdout)] == ["web", "shop"]


def test_plan_falls_back_to_offline_when_the_cluster_is_unreachable(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, "https://127.0.0.1:1")
    result = runner.invoke(app, ["plan", "-f", str(EXAMPLES / "rolling.yaml"), "--kubeconfig", str(config)])
    assert result.exit_code == 0, result.output
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:1" in result.stderr
    assert "planning offline" in result.stderr
    assert "result: Healthy" in result.stdout


# ---------------------------------------------------------------------------------------------
# plan: invalid files
# ---------------------------------------------------------------------------------------------
def test_plan_lists_every_field_error(tmp_path: Path) -> None:
    doc = example("rolling.yaml")
    doc["spec"]["replicas"] = -1
    doc["spec"]["strategy"]["rollingUpdate"]["maxSurg"] = 2
    del doc["spec"]["template"]["spec"]["containers"][0]["image"]
    result = runner.invoke(app, ["plan", "-f", str(write(tmp_path, doc)), "--offline"])
    assert result.exit_code == 1
    assert 'zerodowntimerollout "web" is not valid' in result.stderr
    assert "spec.replicas: must be at least 0 (got -1)" in result.stderr
    assert (
        "spec.strategy.rollingUpdate.maxSurg: unknown field; remove it (did you mean maxSurge?)"
        in result.stderr
    )
    assert "Traceback" not in result.output


def test_plan_refuses_a_missing_readiness_probe(tmp_path: Path) -> None:
    doc = example("canary.yaml")
    del doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    result = runner.invoke(app, ["plan", "-f", str(write(tmp_path, doc)), "--offline"])
    assert result.exit_code == 1
    assert "spec.template.spec.containers[0] (app): exposes ports but has no readinessProbe" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("spec: [unclosed", "not valid YAML at line 1"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "no ZeroDowntimeRollout in it (found: ConfigMap)",
        ),
        (
            "apiVersion: zdr.io/v1\nkind: ZeroDowntimeRollout\nspec: {}\n",
            "apiVersion: must be zdr.io/v1alpha1",
        ),
        ("apiVersion: zdr.io/v1alpha1\nkind: ZeroDowntimeRollout\nspec: {}\n", "metadata.name: required"),
    ],
)
def test_plan_reports_bad_files(tmp_path: Path, content: str, message: str) -> None:
    result = runner.invoke(app, ["plan", "-f", str(write(tmp_path, content)), "--offline"])
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_plan_missing_file() -> None:
    result = runner.invoke(app, ["plan", "-f", "/nonexistent/rollout.yaml"])
    assert result.exit_code == 1
    assert "error: /nonexistent/rollout.yaml: cannot read: No such file or directory" in result.stderr


def test_plan_namespace_conflict(tmp_path: Path) -> None:
    doc = example("rolling.yaml")
    doc["metadata"]["namespace"] = "shop"
    result = runner.invoke(app, ["plan", "-f", str(write(tmp_path, doc)), "-n", "other", "--offline"])
    assert result.exit_code == 2
    assert 'does not match --namespace "other"' in result.stderr


# ---------------------------------------------------------------------------------------------
# Usage errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["promote", "web", "--to-revision", "2"],
        ["undo", "web", "--to-revision", "0"],
        ["abort", "web", "--full"],
        ["frobnicate", "web"],
        ["get"],
        ["plan"],
    ],
)
def test_invalid_flags_exit_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("45", 45), ("0", 0)]
)
def test_parse_timeout(text: str, seconds: float) -> None:
    assert parse_timeout(text) == seconds


def test_bad_timeout_is_a_usage_error() -> None:
    result = runner.invoke(app, ["status", "web", "--timeout", "soon"])
    assert result.exit_code == 2
    assert "error: --timeout 'soon': not a duration; use e.g. 90s, 5m or 1h30m" in result.stderr


# ---------------------------------------------------------------------------------------------
# Kubeconfig and connection errors
# ---------------------------------------------------------------------------------------------
def test_unreachable_cluster_names_server_and_kubeconfig(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, "https://127.0.0.1:1")
    for args in (["get", "web"], ["promote", "web"], ["status", "web", "--timeout", "5s"]):
        result = runner.invoke(app, [*args, "--kubeconfig", str(config)])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(
            f"error: cannot reach the Kubernetes API server at https://127.0.0.1:1 (connection refused); "
            f"kubeconfig {config}, context 'ctx'"
        )
        assert "Traceback" not in result.output


def test_kubeconfig_env_is_honoured(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, "https://127.0.0.1:1")
    result = runner.invoke(app, ["get", "web"], env={"KUBECONFIG": f"{tmp_path}/missing:{config}"})
    assert result.exit_code == 1
    assert f"kubeconfig {config}" in result.stderr


def test_missing_kubeconfig(tmp_path: Path) -> None:
    result = runner.invoke(app, ["get", "web"], env={"KUBECONFIG": str(tmp_path / "none")})
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: no kubeconfig found: {tmp_path / 'none'} does not exist; set KUBECONFIG or pass --kubeconfig FILE\n"
    )


def test_unknown_context(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path, "https://127.0.0.1:1")
    result = runner.invoke(app, ["get", "web", "--kubeconfig", str(config), "--context", "prod"])
    assert result.exit_code == 1
    assert f"error: context 'prod' not found in kubeconfig {config} (contexts: ctx, other)" in result.stderr


def test_namespace_comes_from_flag_then_context_then_default(tmp_path: Path) -> None:
    config = str(kubeconfig(tmp_path, "https://127.0.0.1:1", namespace="shop"))
    assert connect(KubeOptions(kubeconfig=config)).namespace == "shop"
    assert connect(KubeOptions(kubeconfig=config, namespace="x")).namespace == "x"
    assert connect(KubeOptions(kubeconfig=config, context="other")).namespace == "default"
    assert connect(KubeOptions(kubeconfig=config, context="other")).context == "other"


# ---------------------------------------------------------------------------------------------
# A fake API server on loopback
# ---------------------------------------------------------------------------------------------
class FakeApi:
    """Just enough of kube-apiserver for the plugin: one rollout type, children lists, watches."""

    def __init__(self) -> None:
        self.rollouts: dict[tuple[str, str], dict[str, Any]] = {}
        self.namespaces = {"default", "shop"}
        self.children: dict[str, list[dict[str, Any]]] = {}
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.answer: tuple[str, str] | None = ("Accepted", "done")
        self.crd_installed = True
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        meta.setdefault("resourceVersion", "1")
        meta.setdefault("generation", 1)
        self.rollouts[(meta["namespace"], meta["name"])] = obj

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def send(self, code: int, body: Any) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def not_found(self, kind: str, name: str, group: str = "zdr.io") -> None:
                self.send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "message": f'{kind}.{group} "{name}" not found',
                        "reason": "NotFound",
                        "details": {"name": name, "group": group, "kind": kind},
                        "code": 404,
                    },
                )

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                parts = url.path.strip("/").split("/")
                if parts[:3] == ["apis", "zdr.io", "v1alpha1"] and not fake.crd_installed:
                    self.send(404, "404 page not found\n")
                    return
                if url.path == "/apis/zdr.io/v1alpha1/zerodowntimerollouts":
                    name = query.get("fieldSelector", [""])[0].removeprefix("metadata.name=")
                    items = [o for (_, n), o in fake.rollouts.items() if n == name]
                    self.send(200, {"kind": "List", "items": items, "metadata": {}})
                    return
                if parts[:2] == ["api", "v1"] and len(parts) == 4 and parts[2] == "namespaces":
                    if parts[3] in fake.namespaces:
                        self.send(200, {"kind": "Namespace", "metadata": {"name": parts[3]}})
                    else:
                        self.not_found("namespaces", parts[3], group="")
                    return
                if parts[:3] == ["apis", "zdr.io", "v1alpha1"] and len(parts) >= 6:
                    namespace = parts[4]
                    if len(parts) == 7:
                        obj = fake.rollouts.get((namespace, parts[6]))
                        if obj is None:
                            self.not_found("zerodowntimerollouts", parts[6])
                        else:
                            self.send(200, obj)
                        return
                    if query.get("watch") in (["true"], ["True"]):
                        name = query.get("fieldSelector", [""])[0].removeprefix("metadata.name=")
                        time.sleep(0.2)
                        obj = fake.rollouts.get((namespace, name))
                        line = json.dumps({"type": "MODIFIED", "object": obj}) + "\n" if obj else ""
                        self.send(200, line)
                        return
                kind = parts[-1]
                items = fake.children.get(kind, [])
                self.send(200, {"kind": "List", "items": items, "metadata": {"resourceVersion": "1"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                self.send(201, {"kind": "SelfSubjectReview", "status": {"userInfo": {"username": "jane"}}})

            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                parts = urlparse(self.path).path.strip("/").split("/")
                key = (parts[4], parts[6])
                obj = fake.rollouts.get(key)
                if obj is None:
                    self.not_found("zerodowntimerollouts", parts[6])
                    return
                with fake.lock:
                    fake.patches.append((self.headers.get("Content-Type", ""), self.path, body))
                    annotations = obj["metadata"].setdefault("annotations", {})
                    annotations.update(body["metadata"]["annotations"])
                    command = json.loads(annotations[COMMAND_ANNOTATION])
                    if fake.answer is not None:
                        result, message = fake.answer
                        obj.setdefault("status", {})["lastCommand"] = {
                            "id": command["id"],
                            "verb": command["verb"],
                            "result": result,
                            "message": message,
                            "handledAt": "2026-01-01T12:00:00Z",
                        }
                self.send(200, obj)

        return Handler

    def __enter__(self) -> FakeApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def rollout_object(name: str = "web", namespace: str = "shop", **status: Any) -> dict[str, Any]:
    doc = example("rolling.yaml")
    doc["metadata"] = {
        "name": name,
        "namespace": namespace,
        "uid": "u-1",
        "creationTimestamp": "2026-01-01T11:00:00Z",
    }
    doc["status"] = status
    return doc


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    with FakeApi() as api:
        yield api, kubeconfig(tmp_path, api.url, namespace="shop")


def test_unknown_name(fake: tuple[FakeApi, Path]) -> None:
    api, config = fake
    result = runner.invoke(app, ["get", "nope", "--kubeconfig", str(config)])
    assert result.exit_code == 1
    assert (
        result.stderr
        == 'error: zerodowntimerollout "nope" not found in namespace "shop"; list with kubectl get zdr -n shop\n'
    )


def test_wrong_namespace_points_at_the_right_one(fake: tuple[FakeApi, Path]) -> None:
    api, config = fake
    api.add(rollout_object("web", "shop"))
    result = runner.invoke(app, ["promote", "web", "-n", "default", "--kubeconfig", str(config)])
    assert result.exit_code == 1
    assert result.stderr == (
        'error: zerodowntimerollout "web" not found in namespace "default"; list with kubectl get zdr -n default '
        "(it exists in namespace shop: add -n shop)\n"
    )
    assert api.patches == []


def test_missing_namespace(fake: tuple[FakeApi, Path]) -> None:
    _, config = fake
    result = runner.invoke(app, ["status", "web", "-n", "nowhere", "--kubeconfig", str(config)])
    assert result.exit_code == 1
    assert result.stderr == 'error: zerodowntimerollout "web" not found: namespace "nowhere" does not exist\n'


def test_crd_not_installed(fake: tuple[FakeApi, Path]) -> None:
    api, config = fake
    api.crd_installed = False
    result = runner.invoke(app, ["get", "web", "--kubeconfig", str(config)])
    assert result.exit_code == 1
    assert "the zerodowntimerollouts.zdr.io CRD is not installed on" in result.stderr


def test_global_flags_before_the_verb(fake: tuple[FakeApi, Path]) -> None:
    api, config = fake
    api.add(rollout_object("web", "default", phase="Healthy", observedGeneration=1, message="fine"))
    result = runner.invoke(app, ["--kubeconfig", str(config), "-n", "default", "status", "web"])
    assert result.exit_code == 0, result.output
    assert 'zerodowntimerollout "web" in namespace "default" is Healthy' in result.stdout


def test_promote_writes_only_the_annotation_and_reports_acceptance(fake: tuple[FakeApi, Path]) -> None:
    api, config = fake
    api.add(rollout_object())
    result = runner.invoke(app, ["promote", "web", "--full", "--kubeconfig", str(config)])
    assert result.exit_code == 0, result.output
    assert (
        result.stdout == 'promote --full of zerodowntimerollout "web" in namespace "shop": Accepted: done\n'
    )
    [(content_type, path, body)] = api.patches
    assert content_type == "application/merge-patch+json"
    assert path.startswith("/apis/zdr.io/v1alpha1/namespaces/shop/zerodowntimerollouts/web")
    assert list(body) == ["metadata"] and list(body["metadata"]) == ["annotations"]
    command = parse_command(body["metadata"]["annotations"][COMMAND_ANNOTATION])
    assert command.verb == "promote" and command.full and command.requested_by == "jane"
    assert command.requested_at is not None


def test_rejected_command_exits_1(fake: tuple[FakeApi, Path]) -> None:
    api, config = fake
    api.add(rollout_object())
    api.answer = ("Rejected", "nothing to undo")
    result = runner.invoke(app, ["undo", "web", "--to-revision", "2", "--kubeconfig", str(config)])
    assert result.exit_code == 1
    assert result.stderr == (
        'error: undo --to-revision 2 of zerodowntimerollout "web" in namespace "shop": Rejected: nothing to undo\n'
    )
    command = parse_command(api.patches[0][2]["metadata"]["annotations"][COMMAND_ANNOTATION])
    assert command.to_revision == 2


def test_no_answer_within_the_timeout(fake: tuple[FakeApi, Path]) -> None:
    api, config = fake
    api.add(rollout_object())
    api.answer = None
    started = time.monotonic()
    result = runner.invoke(app, ["restart", "web", "--timeout", "1s", "--kubeconfig", str(config)])
    assert result.exit_code == 3
    assert time.monotonic() - started < 5
    assert "the operator did not answer within 1s" in result.stderr


def test_no_wait_returns_after_writing(fake: tuple[FakeApi, Path]) -> None:
    api, config = fake
    api.add(rollout_object())
    api.answer = None
    result = runner.invoke(app, ["pause", "web", "--no-wait", "--kubeconfig", str(config)])
    assert result.exit_code == 0
    assert re.fullmatch(
        r'requested pause of zerodowntimerollout "web" in namespace "shop" \(command id \S+\)\n',
        result.stdout,
    )
    assert len(api.patches) == 1


@pytest.mark.parametrize(
    ("status", "code", "text"),
    [
        ({"phase": "Healthy", "observedGeneration": 1, "message": "all good"}, 0, "Healthy: all good"),
        (
            {"phase": "Degraded", "observedGeneration": 1, "message": "spec refused: x"},
            1,
            "failed: Degraded: spec refused: x",
        ),
        (
            {"phase": "Aborted", "observedGeneration": 1, "message": "rolled back"},
            1,
            "failed: Aborted: rolled back",
        ),
        ({"phase": "Progressing", "observedGeneration": 1, "message": "1/4"}, 3, "timed out after 1s"),
        (
            {"phase": "Healthy", "observedGeneration": 0, "message": "old"},
            3,
            "waiting for the operator to observe generation 1",
        ),
    ],
)
def test_status_exit_codes(fake: tuple[FakeApi, Path], status: dict[str, Any], code: int, text: str) -> None:
    api, config = fake
    api.add(rollout_object(**status))
    result = runner.invoke(app, ["status", "web", "--timeout", "1s", "--kubeconfig", str(config)])
    assert result.exit_code == code, result.output
    assert text in result.output


def test_get_prints_the_tree(fake: tuple[FakeApi, Path]) -> None:
    api, config = fake
    snapshot = sample_snapshot()
    api.add(snapshot.rollout)
    api.children = {
        "deployments": snapshot.deployments,
        "pods": snapshot.pods,
        "services": snapshot.services,
        "endpointslices": snapshot.endpoint_slices,
    }
    result = runner.invoke(
        app, ["get", "api", "-n", "shop", "--kubeconfig", str(config)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "revision 2  bbbbbbbbbb  update  Deployment api-bbbbbbbbbb 1/2 ready" in result.stdout
    assert "api-bbbbbbbbbb-x-2  0/1  CrashLoopBackOff  restarts 4" in result.stdout


def test_plan_starts_from_the_cluster_state(fake: tuple[FakeApi, Path], tmp_path: Path) -> None:
    api, config = fake
    doc = example("rolling.yaml")
    running = parse_spec(doc["spec"])
    current = revision_hash(running)
    obj = rollout_object("web", "shop", stableRevision=current, updateRevision=current, phase="Healthy")
    obj["status"]["revisions"] = [{"name": current, "revision": 7, "createdAt": "2026-01-01T11:00:00Z"}]
    api.add(obj)
    labels = {"app.kubernetes.io/managed-by": "zdr", "zdr.io/rollout": "web"}
    owner = [
        {
            "uid": "u-1",
            "controller": True,
            "kind": "ZeroDowntimeRollout",
            "name": "web",
            "apiVersion": "zdr.io/v1alpha1",
        }
    ]
    api.children = {
        "deployments": [
            {
                "metadata": {
                    "name": f"web-{current}",
                    "labels": {**labels, "zdr.io/revision": current},
                    "ownerReferences": owner,
                    "generation": 1,
                    "creationTimestamp": "2026-01-01T11:00:00Z",
                },
                "spec": {"replicas": 4},
                "status": {
                    "replicas": 4,
                    "readyReplicas": 4,
                    "availableReplicas": 4,
                    "observedGeneration": 1,
                },
            }
        ],
    }
    doc["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "v2"
    result = runner.invoke(
        app, ["plan", "-f", str(write(tmp_path, doc)), "--kubeconfig", str(config)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert 'from the cluster\'s current state (namespace "shop", context ctx)' in result.stdout
    assert "now: rev 7: 4/4 pods ready" in result.stdout
    assert "create rev 8 with 1 pod" in result.stdout


def test_plan_of_a_rollout_not_yet_in_the_cluster(fake: tuple[FakeApi, Path]) -> None:
    _, config = fake
    result = runner.invoke(
        app,
        ["plan", "-f", str(EXAMPLES / "bluegreen.yaml"), "--kubeconfig", str(config)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert 'from first deployment: not in the cluster yet (namespace "shop", context ctx)' in result.stdout
    assert "create rev 1 with 4 pods" in result.stdout
    assert "first deployment: nothing serves before it" in result.stdout


# ---------------------------------------------------------------------------------------------
# The tree and the status verdict, on fixed objects
# ---------------------------------------------------------------------------------------------
def _pod(
    name: str, revision: str, *, ready: bool = True, restarts: int = 0, waiting: str | None = None
) -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {
            "name": name,
            "labels": {"zdr.io/revision": revision},
            "creationTimestamp": (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "spec": {"containers": [{"name": "app"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "app", "ready": ready, "restartCount": restarts, "state": state}],
        },
    }


def _deployment(name: str, revision: str, replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {"zdr.io/revision": revision},
            "creationTimestamp": "2026-01-01T11:00:00Z",
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


def _service(name: str, role: str, revision: str | None) -> dict[str, Any]:
    selector = {"app": "api", "zdr.io/rollout": "api"}
    if revision:
        selector["zdr.io/revision"] = revision
    return {
        "metadata": {"name": name, "labels": {"zdr.io/service-role": role}},
        "spec": {"selector": selector},
    }


def _slice(service: str, ready: int, not_ready: int = 0) -> dict[str, Any]:
    endpoints = [{"conditions": {"ready": True}}] * ready + [{"conditions": {"ready": False}}] * not_ready
    return {"metadata": {"labels": {"kubernetes.io/service-name": service}}, "endpoints": endpoints}


def sample_snapshot() -> Snapshot:
    old, new = "aaaaaaaaaa", "bbbbbbbbbb"
    rollout = {
        "metadata": {
            "name": "api",
            "namespace": "shop",
            "generation": 3,
            "creationTimestamp": "2026-01-01T10:00:00Z",
        },
        "spec": {
            "replicas": 4,
            "strategy": {"type": "Canary", "canary": {"steps": [{"setWeight": 25}, {"pause": {}}]}},
        },
        "status": {
            "observedGeneration": 3,
            "phase": "Paused",
            "message": "step 2/2: paused at weight 25% until `kubectl zdr promote`",
            "stableRevision": old,
            "updateRevision": new,
            "currentStepIndex": 1,
            "canaryWeight": 25,
            "readyReplicas": 4,
            "updatedReplicas": 2,
            "revisions": [
                {"name": old, "revision": 1, "createdAt": "2026-01-01T10:00:00Z"},
                {"name": new, "revision": 2, "createdAt": "2026-01-01T11:55:00Z"},
            ],
            "lastCommand": {
                "id": "x",
                "verb": "pause",
                "result": "Accepted",
                "message": "paused",
                "handledAt": "2026-01-01T11:59:30Z",
            },
        },
    }
    return Snapshot(
        rollout=rollout,
        deployments=[_deployment(f"api-{old}", old, 3, 3), _deployment(f"api-{new}", new, 2, 1)],
        pods=[
            _pod(f"api-{old}-x-1", old),
            _pod(f"api-{old}-x-2", old),
            _pod(f"api-{old}-x-3", old),
            _pod(f"api-{new}-x-1", new),
            _pod(f"api-{new}-x-2", new, ready=False, restarts=4, waiting="CrashLoopBackOff"),
        ],
        services=[
            _service("api-stable", "stable", old),
            _service("api", "main", None),
            _service("api-canary", "canary", new),
        ],
        endpoint_slices=[_slice("api", 4, 1), _slice("api-canary", 1, 1), _slice("api-stable", 3)],
    )


def rendered(snapshot: Snapshot) -> str:
    console = Console(width=200, record=True, color_system=None)
    with console.capture() as capture:
        console.print(render(snapshot, NOW))
    return capture.get()


def test_tree_shows_the_warm_standby_apart_from_the_serving_pods() -> None:
    new = "bbbbbbbbbb"
    snapshot = sample_snapshot()
    status = snapshot.rollout["status"]
    status.update(
        phase="Healthy",
        stableRevision=new,
        currentStepIndex=None,
        canaryWeight=None,
        readyReplicas=4,
        updatedReplicas=4,
        standbyReplicas=4,
    )
    status["revisions"][0].update(retiredAt="2026-01-01T11:59:00Z", drainedAt="2026-01-01T11:59:10Z")
    snapshot.deployments[0]["spec"]["replicas"] = 4
    lines = rendered(snapshot).splitlines()
    assert "ready 4/4  up-to-date 4  standby 4" in lines[0]
    standby = next(line for line in lines if "revision 1" in line)
    assert "retired 60s ago  warm standby (fresh pods, out of traffic)" in standby
    serving = next(line for line in lines if "revision 2" in line)
    assert "standby" not in serving


def test_tree_shows_rollout_revisions_pods_and_services() -> None:
    text = rendered(sample_snapshot())
    lines = text.splitlines()
    assert lines[0] == (
        "shop/api  Canary  Paused  step 2/2  weight 25%  ready 4/4  up-to-date 2  standby 0  age 120m"
    )
    assert lines[1] == "step 2/2: paused at weight 25% until `kubectl zdr promote`"
    assert lines[2] == "last command: pause Accepted 30s ago: paused"
    # Newest revision first, each with its role, Deployment counts and pods.
    new = next(i for i, line in enumerate(lines) if "revision 2" in line)
    old = next(i for i, line in enumerate(lines) if "revision 1" in line)
    assert new < old
    assert "revision 2  bbbbbbbbbb  update  Deployment api-bbbbbbbbbb 1/2 ready  age 60m" in lines[new]
    assert "revision 1  aaaaaaaaaa  stable  Deployment api-aaaaaaaaaa 3/3 ready" in lines[old]
    assert "api-bbbbbbbbbb-x-2  0/1  CrashLoopBackOff  restarts 4  age 5m" in lines[new + 2]
    assert "api-aaaaaaaaaa-x-1  1/1  Running  restarts 0  age 5m" in lines[old + 1]
    services = text[text.index("Services") :]
    assert (
        services.index("api (main)")
        < services.index("api-canary (canary)")
        < services.index("api-stable (stable)")
    )
    assert "api (main)  selects every revision  endpoints 4 ready, 1 not ready" in services
    assert "api-canary (canary)  selects revision 2 (bbbbbbbbbb)  endpoints 1 ready, 1 not ready" in services
    assert "api-stable (stable)  selects revision 1 (aaaaaaaaaa)  endpoints 3 ready" in services


def test_tree_flags_a_status_behind_the_spec_and_blue_green_names() -> None:
    snapshot = sample_snapshot()
    snapshot.rollout["metadata"]["generation"] = 4
    snapshot.rollout["spec"]["strategy"] = {"type": "BlueGreen"}
    snapshot.services[1]["spec"]["selector"]["zdr.io/revision"] = "aaaaaaaaaa"
    text = rendered(snapshot)
    assert "status is for generation 3; the spec is at generation 4" in text
    assert "api (active)  selects revision 1 (aaaaaaaaaa)" in text


def test_tree_of_a_new_rollout_without_status() -> None:
    text = rendered(Snapshot(rollout={"metadata": {"name": "x", "namespace": "y"}, "spec": {}}))
    assert text.splitlines()[0].startswith("y/x  RollingUpdate  Unknown")
    assert "no Services yet" in text


def test_pod_state_like_kubectl() -> None:
    assert pod_state(_pod("a", "r")) == (1, 1, 0, "Running")
    assert pod_state(_pod("a", "r", ready=False)) == (0, 1, 0, "Running (not ready)")
    terminating = _pod("a", "r")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    assert pod_state(terminating)[3] == "Terminating"
    pending = {"metadata": {"name": "p"}, "spec": {"containers": [{}]}, "status": {"phase": "Pending"}}
    assert pod_state(pending) == (0, 1, 0, "Pending")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (200, "3m20s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (9 * 86400, "9d"),
    ],
)
def test_age(seconds: int, text: str) -> None:
    assert age(NOW - timedelta(seconds=seconds), NOW) == text


def test_verdict() -> None:
    def obj(generation: int, **status: Any) -> dict[str, Any]:
        return {"metadata": {"generation": generation}, "status": status}

    assert verdict(obj(1)).state == "waiting"
    assert verdict(obj(2, observedGeneration=1, phase="Healthy")).state == "waiting"
    assert verdict(obj(2, observedGeneration=2, phase="Healthy", message="m")).line == "Healthy: m"
    assert verdict(obj(2, observedGeneration=2, phase="Healthy")).state == "healthy"
    assert verdict(obj(2, observedGeneration=2, phase="Degraded")).state == "failed"
    assert verdict(obj(2, observedGeneration=2, phase="Aborted")).state == "failed"
    assert verdict(obj(2, observedGeneration=2, phase="Paused")).state == "waiting"


def test_plan_assumes_analysis_checks_pass() -> None:
    doc = example("canary.yaml")
    doc["spec"]["strategy"]["canary"]["steps"] = [
        {"setWeight": 25},
        {
            "analysis": {
                "checks": [{"name": "errors", "interval": "5s", "count": 3, "http": {"path": "/healthz"}}]
            }
        },
        {"setWeight": 50},
    ]
    doc["spec"]["analysis"] = {
        "checks": [{"name": "latency", "interval": "10s", "http": {"path": "/metrics"}}]
    }
    sim = offline_simulation(doc)
    assert_capacity_kept(sim)
    actions = [r.action for r in sim.rows]
    assert "step 2/3 analysis: measures errors 3x every 5s (assumed to pass)" in actions
    assert sim.notes == [
        "analysis checks are assumed to pass every measurement: latency (background), errors (step 2)"
    ]


def test_plan_shows_a_pending_restart() -> None:
    spec = parse_spec(example("rolling.yaml")["spec"])
    current = revision_hash(spec)
    observed = Observed(
        generation=1,
        revisions={
            current: ObservedRevision(
                name=current,
                spec_replicas=4,
                replicas=4,
                ready_replicas=4,
                available_replicas=4,
                updated_replicas=4,
                ready_endpoints={ServiceRole.MAIN: 4},
            )
        },
        services={ServiceRole.MAIN: ObservedService(name="web", target=ServiceTarget())},
        command=build_command("restart", now=NOW),
    )
    status = {
        "stableRevision": current,
        "updateRevision": current,
        "phase": "Healthy",
        "revisions": [{"name": current, "revision": 3, "createdAt": "2026-01-01T10:00:00Z"}],
    }
    sim = simulate("web", spec, status, observed, start="x", now=NOW)
    assert sim.healthy, sim.outcome
    actions = [r.action for r in sim.rows]
    assert "restart rev 3: its Deployment replaces one pod at a time" in actions
    assert all(r.min_serving == 4 for r in sim.rows)
