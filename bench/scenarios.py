"""Rollout scenarios on the local cluster, shared by the e2e tests, the benchmark and the demo.

- ``Kube``: API clients from the cluster's kubeconfig and the few reads and writes scenarios use;
- manifests of the test app as a plain Deployment (with or without readiness probe and preStop)
  and as a ``ZeroDowntimeRollout`` of each strategy;
- ``Target``: one rollout target (``ZdrTarget`` or ``DeploymentTarget``) with the same verbs:
  create at a version, change the version, tell whether the rollout is complete, undo;
- ``OperatorProcess``: the operator as a child process, as ``make run`` starts it;
- ``EventRecorder``: watches EndpointSlices, Deployments and Services of a namespace and
  derives the operator's reaction latency: from a gate becoming true (one more pod of the update
  revision listed as a ready endpoint) to the operator's next write (a Deployment created,
  scaled or deleted, or a Service selector changed).
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.client
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from zdr.api import (
    COMMAND_ANNOTATION,
    DEFAULT_PRE_STOP_SECONDS,
    GROUP,
    LABEL_REVISION,
    LABEL_ROLLOUT,
    PLURAL,
    VERSION,
    Command,
    command_annotation,
)

from bench.flows import FlowLog, forget, programmed
from bench.prober import SERVICE_RANGE, Record, check_target, failed, is_failure

ROOT = Path(__file__).resolve().parents[1]
KUBECONFIG = Path(
    os.environ.get("ZDR_KUBECONFIG")
    or os.environ.get("ZDR_E2E_KUBECONFIG")
    or ROOT / ".cluster" / "kubeconfig"
)
KUBECTL = ROOT / ".cluster" / "bin" / "kubectl"
LOGS = ROOT / ".cluster" / "logs"
TESTAPP_IMAGE = os.environ.get("ZDR_TESTAPP_IMAGE", "zdr.local/testapp:dev")
"""The test app image (hack/images.sh); another name when the images were pushed to a registry
(hack/load-images.sh registry)."""

Strategy = Literal["RollingUpdate", "BlueGreen", "Canary"]
T = TypeVar("T")
Json = dict[str, Any]


def raw_json(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Json:
    """Calls a kubernetes client method without model deserialization and returns the JSON body."""
    resp: Any = call(*args, _preload_content=False, **kwargs)
    body: Json = json.loads(resp.data)
    return body


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """Polls ``check`` until it returns a truthy value; raises ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# ---------------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class App:
    """The test app as every scenario runs it."""

    replicas: int = 4
    drain: str = "2s"
    """DRAIN: after SIGTERM the app serves this long (answering ``Connection: close``)."""
    shutdown: str = "graceful"
    """SHUTDOWN: ``abrupt`` closes the listener and resets every connection and WebSocket at SIGTERM,
    so only the controller's drain (preStop, endpoint removal) stands between it and a failure."""
    pre_stop_seconds: int = 3
    grace_seconds: int = 30
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment, e.g. (("REDIS_ADDR", "10.88.0.1:6390"),)."""


def container(version: str, app: App, *, readiness: bool = True, pre_stop: int | None = None) -> Json:
    c: Json = {
        "name": "app",
        "image": TESTAPP_IMAGE,
        "imagePullPolicy": "Never",
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "VERSION", "value": version},
            {"name": "DRAIN", "value": app.drain},
            {"name": "SHUTDOWN", "value": app.shutdown},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            *({"name": k, "value": v} for k, v in app.env),
        ],
    }
    if readiness:
        c["readinessProbe"] = {
            "httpGet": {"path": "/readyz", "port": 8080},
            "periodSeconds": 1,
            "failureThreshold": 1,
            "successThreshold": 1,
        }
    if pre_stop:
        c["lifecycle"] = {"preStop": {"sleep": {"seconds": pre_stop}}}
    return c


def rollout_body(
    name: str,
    version: str,
    strategy: Strategy,
    app: App,
    *,
    auto_promotion: bool = True,
    scale_down_delay: int = 3,
    canary_steps: Sequence[Json] | None = None,
    max_surge: int = 1,
    session_affinity: str = "None",
    default_drain: bool = False,
) -> Json:
    strat: Json = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {
            "maxSurge": max_surge,
            "maxUnavailable": 0,
            "scaleDownDelaySeconds": scale_down_delay,
        }
    elif strategy == "BlueGreen":
        strat["blueGreen"] = {"autoPromotion": auto_promotion, "scaleDownDelaySeconds": scale_down_delay}
    else:
        steps = list(
            canary_steps
            or [
                {"setWeight": 25},
                {"pause": {"duration": "3s"}},
                {"setWeight": 50},
                {"pause": {"duration": "3s"}},
            ]
        )
        strat["canary"] = {"maxSurge": max_surge, "scaleDownDelaySeconds": scale_down_delay, "steps": steps}
    body: Json = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ZeroDowntimeRollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": app.replicas,
            "service": {
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                "sessionAffinity": session_affinity,
            },
            "drain": {
                "preStopSeconds": app.pre_stop_seconds,
                "terminationGracePeriodSeconds": app.grace_seconds,
            },
            "strategy": strat,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container(version, app)]},
            },
        },
    }
    if default_drain:  # what a user who writes no drain settings gets
        del body["spec"]["drain"]
    return body


def deployment_body(name: str, version: str, app: App, *, readiness: bool, pre_stop: int | None) -> Json:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": app.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container(version, app, readiness=readiness, pre_stop=pre_stop)],
                    "terminationGracePeriodSeconds": app.grace_seconds,
                },
            },
        },
    }


def service_body(name: str) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def with_version(containers: Sequence[Json], version: str) -> list[Json]:
    """The containers with env VERSION set to ``version``."""
    out = []
    for c in containers:
        env = [dict(e) for e in c.get("env") or []]
        for e in env:
            if e.get("name") == "VERSION":
                e["value"] = version
        out.append({**c, "env": env})
    return out


# ---------------------------------------------------------------------------------------------
# Cluster access
# ---------------------------------------------------------------------------------------------
class Kube:
    def __init__(self, kubeconfig: Path = KUBECONFIG) -> None:
        self.kubeconfig = kubeconfig
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)

    def new_api(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def ensure_crd(self) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(ROOT / "crds"))
        self.kubectl(
            "wait", "--for=condition=Established", "crd/zerodowntimerollouts.zdr.io", "--timeout=60s"
        )

    # namespaces -----------------------------------------------------------------------------
    def create_namespace(self, name: str, *, replace: bool = False, timeout: float = 120) -> str:
        if replace:
            self.delete_namespace(name, wait=timeout)
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

        def has_sa() -> bool:
            try:
                self.core.read_namespaced_service_account("default", name)
                return True
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise

        wait_for(f"the default ServiceAccount of {name}", has_sa, timeout=60)
        return name

    def delete_namespace(self, name: str, *, wait: float = 0) -> None:
        try:
            self.core.delete_namespace(name, body=client.V1DeleteOptions(grace_period_seconds=0))
        except ApiException as exc:
            if exc.status != 404:
                raise
        if wait:
            wait_for(
                f"namespace {name} to go", lambda: not self.namespace_exists(name), timeout=wait, interval=0.5
            )

    def namespace_exists(self, name: str) -> bool:
        try:
            self.core.read_namespace(name)
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    # rollouts --------------------------------------------------------------------------------
    def rollout(self, ns: str, name: str) -> Json:
        obj: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        return dict(obj)

    def create_rollout(self, ns: str, body: Json) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

    def set_rollout_version(self, ns: str, name: str, version: str) -> None:
        containers = self.rollout(ns, name)["spec"]["template"]["spec"]["containers"]
        patch = {"spec": {"template": {"spec": {"containers": with_version(containers, version)}}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)

    def command(self, ns: str, name: str, verb: str) -> str:
        """Writes a command (e.g. promote) into the rollout's annotation; returns its id."""
        cid = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"
        value = command_annotation(Command.model_validate({"id": cid, "verb": verb}))
        patch = {"metadata": {"annotations": {COMMAND_ANNOTATION: value}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)
        return cid

    def pods(self, ns: str, selector: str) -> list[Json]:
        items: list[Json] = raw_json(self.core.list_namespaced_pod, ns, label_selector=selector)["items"]
        return items

    def ready_endpoints(self, ns: str, service: str) -> dict[str, str]:
        """Pod name -> IP of every endpoint listed as ready in the Service's EndpointSlices."""
        slices = self.discovery.list_namespaced_endpoint_slice(
            ns, label_selector=f"kubernetes.io/service-name={service}"
        )
        ready: dict[str, str] = {}
        for s in slices.items:
            for ep in s.endpoints or []:
                if ep.conditions and ep.conditions.ready and ep.target_ref is not None and ep.target_ref.name:
                    ready[ep.target_ref.name] = ep.addresses[0]
        return ready

    def cluster_ip(self, ns: str, service: str) -> str:
        spec = self.core.read_namespaced_service(service, ns).spec
        return check_target(str(spec.cluster_ip if spec else ""))

    # deployments -----------------------------------------------------------------------------
    def create(self, ns: str, body: Json) -> None:
        obj: Any = body
        if body["kind"] == "Deployment":
            self.apps.create_namespaced_deployment(ns, obj)
        elif body["kind"] == "Service":
            self.core.create_namespaced_service(ns, obj)
        else:
            raise ValueError(body["kind"])

    def set_deployment_version(self, ns: str, name: str, version: str) -> None:
        containers = raw_json(self.apps.read_namespaced_deployment, name, ns)["spec"]["template"]["spec"][
            "containers"
        ]
        patch = {"spec": {"template": {"spec": {"containers": with_version(containers, version)}}}}
        self.apps.patch_namespaced_deployment(name, ns, patch)


def get_once(host: str, port: int = 80, timeout: float = 1.0) -> tuple[int, str]:
    """One GET on a new connection: (status, X-Version); raises OSError on connection failures."""
    conn = http.client.HTTPConnection(check_target(host), port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("X-Version", "")
    finally:
        conn.close()


def wait_serving(host: str, version: str | None = None, timeout: float = 30) -> None:
    """Waits until the address answers (with ``version``, when given) on 10 new connections in a row:
    first, for a Service IP, until kube-proxy has a rule for it (a probe sent earlier would leave a
    conntrack entry without translation, bench.flows.programmed); then the conntrack entries these
    probes left are deleted, so no connection measured afterwards can meet one."""
    if ipaddress.ip_address(check_target(host)) in SERVICE_RANGE:
        wait_for(f"kube-proxy to program {host}", lambda: programmed(host), timeout=timeout, interval=0.2)

    def ok() -> bool:
        for _ in range(10):
            try:
                status, v = get_once(host)
            except OSError:
                return False
            if status != 200 or (version is not None and v != version):
                return False
        return True

    wait_for(f"{host} to serve" + (f" {version}" if version else ""), ok, timeout=timeout, interval=0.3)
    forget(host)


# ---------------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------------
class Target:
    """Something that rolls out the test app: a ``ZeroDowntimeRollout`` or a plain Deployment."""

    label = "target"

    def __init__(self, kube: Kube, ns: str, name: str, app: App) -> None:
        self.kube, self.ns, self.name, self.app = kube, ns, name, app

    @property
    def service(self) -> str:
        return self.name

    @property
    def pre_stop_seconds(self) -> int:
        """The preStop sleep its pods get before SIGTERM."""
        return self.app.pre_stop_seconds

    def create(self, version: str) -> None:
        raise NotImplementedError

    def set_version(self, version: str) -> None:
        raise NotImplementedError

    def undo(self, version: str) -> None:
        """Go back to the previous template (``version`` is that template's VERSION)."""
        raise NotImplementedError

    def complete(self) -> bool:
        """The controller reports the rollout done (the new pods serve at full size)."""
        raise NotImplementedError

    def pod_versions(self) -> dict[str, int]:
        """VERSION -> number of pods that exist (terminating included), from the pod specs."""
        counts: dict[str, int] = {}
        for p in self.kube.pods(self.ns, self.pod_selector()):
            for c in p["spec"]["containers"]:
                for e in c.get("env") or []:
                    if e.get("name") == "VERSION":
                        counts[e["value"]] = counts.get(e["value"], 0) + 1
        return counts

    def pod_selector(self) -> str:
        return f"app={self.name}"

    def only(self, version: str) -> bool:
        """Every pod that exists runs ``version``, and all replicas are ready endpoints."""
        versions = self.pod_versions()
        ready = len(self.kube.ready_endpoints(self.ns, self.service))
        return (
            set(versions) == {version}
            and versions[version] == self.app.replicas
            and ready == self.app.replicas
        )

    def progress(self) -> str:
        raise NotImplementedError

    def wait_reported(self, timeout: float = 120) -> float:
        """Waits until the controller reports the rollout complete; returns that monotonic time."""
        wait_for(
            f"{self.label} {self.ns}/{self.name} to report completion ({self.progress()})",
            self.complete,
            timeout=timeout,
            interval=0.1,
        )
        return time.monotonic()

    def wait_complete(self, version: str, timeout: float = 120) -> float:
        """Waits until the rollout is complete and only ``version`` pods remain; returns the monotonic time
        at which the controller first reported completion."""
        done_at: list[float] = []

        def check() -> bool:
            if not done_at and self.complete():
                done_at.append(time.monotonic())
            return bool(done_at) and self.only(version)

        wait_for(
            f"{self.label} {self.ns}/{self.name} to complete on {version} ({self.progress()})",
            check,
            timeout=timeout,
            interval=0.1,
        )
        return done_at[0]


class ZdrTarget(Target):
    label = "ZeroDowntimeRollout"

    def __init__(self, kube: Kube, ns: str, name: str, app: App, strategy: Strategy, **params: Any) -> None:
        super().__init__(kube, ns, name, app)
        self.strategy = strategy
        self.params = params

    @property
    def pre_stop_seconds(self) -> int:
        return DEFAULT_PRE_STOP_SECONDS if self.params.get("default_drain") else self.app.pre_stop_seconds

    def create(self, version: str) -> None:
        self.kube.create_rollout(
            self.ns, rollout_body(self.name, version, self.strategy, self.app, **self.params)
        )

    def set_version(self, version: str) -> None:
        self.kube.set_rollout_version(self.ns, self.name, version)

    def undo(self, version: str) -> None:
        self.set_version(version)

    def status(self) -> Json:
        obj = self.kube.rollout(self.ns, self.name)
        st: Json = obj.get("status") or {}
        st["_generation"] = obj["metadata"].get("generation")
        return st

    def complete(self) -> bool:
        st = self.status()
        return (
            st.get("phase") == "Healthy"
            and st.get("observedGeneration") == st["_generation"]
            and st.get("stableRevision") is not None
            and st.get("stableRevision") == st.get("updateRevision")
        )

    def pod_selector(self) -> str:
        return f"{LABEL_ROLLOUT}={self.name}"

    def promote(self) -> str:
        return self.kube.command(self.ns, self.name, "promote")

    def wait_phase(self, phase: str, timeout: float = 90, step: int | None = None) -> Json:
        def check() -> Json | None:
            st = self.status()
            if st.get("phase") != phase or st.get("observedGeneration") != st["_generation"]:
                return None
            if step is not None and st.get("currentStepIndex") != step:
                return None
            return st

        return wait_for(
            f"{self.ns}/{self.name} to be {phase}"
            + (f" at step {step}" if step is not None else "")
            + f" ({self.progress()})",
            check,
            timeout=timeout,
            interval=0.1,
        )

    def progress(self) -> str:
        try:
            st = self.status()
        except ApiException as exc:
            return f"unreadable: {exc.reason}"
        step = st.get("currentStepIndex")
        return (
            f"phase={st.get('phase')} step={'-' if step is None else step} weight={st.get('canaryWeight')} "
            f"ready={st.get('readyReplicas')}/{st.get('replicas')} updated={st.get('updatedReplicas')} "
            f"message={st.get('message')!r}"
        )

    def revisions(self) -> dict[str, int]:
        """Revision hash -> pods that exist."""
        out: dict[str, int] = {}
        for p in self.kube.pods(self.ns, self.pod_selector()):
            rev = p["metadata"].get("labels", {}).get(LABEL_REVISION, "?")
            out[rev] = out.get(rev, 0) + 1
        return out


class DeploymentTarget(Target):
    label = "Deployment"

    def __init__(
        self, kube: Kube, ns: str, name: str, app: App, *, readiness: bool, pre_stop: int | None
    ) -> None:
        super().__init__(kube, ns, name, app)
        self.readiness = readiness
        self.pre_stop = pre_stop

    @property
    def pre_stop_seconds(self) -> int:
        return self.pre_stop or 0

    def create(self, version: str) -> None:
        self.kube.create(
            self.ns,
            deployment_body(self.name, version, self.app, readiness=self.readiness, pre_stop=self.pre_stop),
        )
        self.kube.create(self.ns, service_body(self.name))

    def set_version(self, version: str) -> None:
        self.kube.set_deployment_version(self.ns, self.name, version)

    def undo(self, version: str) -> None:
        self.kube.kubectl("-n", self.ns, "rollout", "undo", f"deployment/{self.name}")

    def _deployment(self) -> Json:
        return raw_json(self.kube.apps.read_namespaced_deployment, self.name, self.ns)

    def complete(self) -> bool:
        """What ``kubectl rollout status`` waits for."""
        d = self._deployment()
        st, want = d.get("status") or {}, d["spec"]["replicas"]
        return bool(
            st.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want
            and st.get("replicas", 0) == want
            and st.get("availableReplicas", 0) == want
        )

    def progress(self) -> str:
        st = self._deployment().get("status") or {}
        return (
            f"updated={st.get('updatedReplicas', 0)} ready={st.get('readyReplicas', 0)} "
            f"available={st.get('availableReplicas', 0)} replicas={st.get('replicas', 0)}"
        )


# ---------------------------------------------------------------------------------------------
# The operator as a process
# ---------------------------------------------------------------------------------------------
def stop_process(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM, then SIGKILL if it is still there after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class OperatorProcess:
    """``kopf run --standalone`` of zdr.handlers as a child process, its output appended to ``log``."""

    def __init__(self, log: Path, kubeconfig: Path = KUBECONFIG, namespaces: Sequence[str] = ()) -> None:
        self.log = log
        self.kubeconfig = kubeconfig
        self.namespaces = list(namespaces)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        scope = [f"--namespace={n}" for n in self.namespaces] or ["--all-namespaces"]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "ZDR_LOG_FORMAT": "json",
            "ZDR_METRICS_ADDR": "off",
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kopf", "run", "--standalone", *scope, "-m", "zdr.handlers"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError(f"the operator exited at once ({self.proc.returncode}); see {self.log}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def other_operators(namespace: str) -> list[str]:
    """Command lines of zdr operators not started by this process that watch ``namespace`` too."""
    mine = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == mine or not any(a.endswith("kopf") or a == "kopf" for a in argv):
                continue
            if "zdr.handlers" not in argv:
                continue
            patterns = [a.split("=", 1)[1] for a in argv if a.startswith("--namespace=")]
            patterns += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--namespace", "-n")]
            if (
                "--all-namespaces" in argv
                or "-A" in argv
                or any(fnmatch.fnmatch(namespace, p) for p in patterns)
            ):
                found.append(f"{entry.name}: {' '.join(a for a in argv if a)}")
    return found


# ---------------------------------------------------------------------------------------------
# Watching the namespace: gates and writes
# ---------------------------------------------------------------------------------------------
@dataclass
class Observation:
    t: float
    kind: str
    """gate | write"""
    what: str


def watch_namespace(
    kube: Kube,
    ns: str,
    lister: Callable[[client.ApiClient], Callable[..., Any]],
    handler: Callable[[str, Json], None],
    stop: threading.Event,
    primed: threading.Event | None = None,
) -> None:
    """Lists then watches one kind in ``ns`` (relisting after a 410), calling ``handler(type, obj)``
    for every object listed (type ``INITIAL``) and every event, until ``stop`` (at most an hour)."""
    api = kube.new_api()
    list_fn = lister(api)
    version: str | None = None
    deadline = time.monotonic() + 3600
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if version is None:
                listed = raw_json(list_fn, ns)
                for obj in listed.get("items") or []:
                    handler("INITIAL", obj)
                version = listed["metadata"]["resourceVersion"]
                if primed is not None:
                    primed.set()
            w = watch.Watch()
            try:
                for ev in w.stream(
                    list_fn, ns, resource_version=version, timeout_seconds=2, _request_timeout=10
                ):
                    obj = api.sanitize_for_serialization(ev["object"])
                    if ev["type"] == "ERROR":
                        version = None
                        break
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    handler(ev["type"], obj)
                    if stop.is_set():
                        break
            finally:
                w.stop()
        except ApiException as exc:
            if exc.status == 410:
                version = None
            else:
                time.sleep(0.5)
        except Exception:
            time.sleep(0.5)


@dataclass
class EventRecorder:
    """Watches EndpointSlices, Deployments and Services of ``ns`` in background threads.

    A *gate* is an EndpointSlice event after which more pods of ``revision_prefix`` are listed as
    ready endpoints than before. A *write* is a Deployment created, deleted or rescaled, or a
    Service whose selector changed. Times are seconds after ``epoch`` (``time.monotonic()``).
    """

    kube: Kube
    ns: str
    epoch: float
    rollout: str
    observations: list[Observation] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ready: dict[str, set[str]] = field(default_factory=dict)
    _replicas: dict[str, int] = field(default_factory=dict)
    _selectors: dict[str, str] = field(default_factory=dict)
    _primed: threading.Event = field(default_factory=threading.Event)
    replicasets: bool = False
    """Also record ReplicaSet scale writes: the controller's own writes when it manages ReplicaSets
    itself (Argo Rollouts), never for Deployments (their ReplicaSets follow the Deployment)."""

    def now(self) -> float:
        return time.monotonic() - self.epoch

    def start(self) -> None:
        kinds: list[tuple[str, Callable[..., Any], Callable[[str, Json], None]]] = [
            (
                "endpointslices",
                lambda api: client.DiscoveryV1Api(api).list_namespaced_endpoint_slice,
                self._slice,
            ),
            ("deployments", lambda api: client.AppsV1Api(api).list_namespaced_deployment, self._deployment),
            ("services", lambda api: client.CoreV1Api(api).list_namespaced_service, self._service),
        ]
        if self.replicasets:
            kinds.append(
                (
                    "replicasets",
                    lambda api: client.AppsV1Api(api).list_namespaced_replica_set,
                    self._replicaset,
                )
            )
        for name, lister, handler in kinds:
            t = threading.Thread(target=self._run, args=(lister, handler), name=f"watch-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def wait_primed(self, timeout: float = 10) -> None:
        self._primed.wait(timeout)

    def _run(
        self, lister: Callable[[client.ApiClient], Callable[..., Any]], handler: Callable[[str, Json], None]
    ) -> None:
        watch_namespace(self.kube, self.ns, lister, handler, self._stop, self._primed)

    def _note(self, kind: str, what: str) -> None:
        with self._lock:
            self.observations.append(Observation(round(self.now(), 4), kind, what))

    def _slice(self, type_: str, obj: Json) -> None:
        name = obj["metadata"]["name"]
        ready = set()
        if type_ != "DELETED":
            for ep in obj.get("endpoints") or []:
                ref = ep.get("targetRef") or {}
                if (ep.get("conditions") or {}).get("ready") and ref.get("name"):
                    ready.add(ref["name"])
        with self._lock:
            before = set().union(*self._ready.values()) if self._ready else set()
            self._ready[name] = ready
            after = set().union(*self._ready.values())
        grown = after - before
        if grown and type_ != "INITIAL":
            self._note("gate", "ready endpoints + " + ",".join(sorted(grown)))

    def _deployment(self, type_: str, obj: Json) -> None:
        self._scaled("deployment", type_, obj)

    def _replicaset(self, type_: str, obj: Json) -> None:
        self._scaled("replicaset", type_, obj)

    def _scaled(self, kind: str, type_: str, obj: Json) -> None:
        name = obj["metadata"]["name"]
        replicas = int((obj.get("spec") or {}).get("replicas") or 0)
        with self._lock:
            before = self._replicas.get(f"{kind}/{name}")
            self._replicas[f"{kind}/{name}"] = replicas
        if type_ == "DELETED":
            self._note("write", f"delete {kind} {name}")
        elif before is None:
            if type_ == "ADDED":
                self._note("write", f"create {kind} {name} replicas={replicas}")
        elif before != replicas:
            self._note("write", f"scale {kind} {name} {before}->{replicas}")

    def _service(self, type_: str, obj: Json) -> None:
        name = obj["metadata"]["name"]
        selector = json.dumps((obj.get("spec") or {}).get("selector") or {}, sort_keys=True)
        with self._lock:
            before = self._selectors.get(name)
            self._selectors[name] = selector
        if before is not None and before != selector:
            self._note("write", f"switch service {name} -> {selector}")

    def reactions(
        self, since: float = 0.0, until: float = float("inf"), cap: float = 5.0, same_pass: float = 0.02
    ) -> tuple[list[tuple[float, str, str]], dict[str, int]]:
        """Reaction samples ``(seconds, gate, write)``, and the counts of candidates left out.

        A gate's candidate is the first write after it, unless another gate comes first (the later
        gate is the one the write answers). Watches of different kinds are not ordered with each
        other, so a Service write seen up to ``same_pass`` seconds after a gate is taken as the
        write that caused the gate (its selector brought ready pods into the Service), not as a
        reaction. Left out: ``timer``, a write more than ``cap`` seconds after the gate (a pause, a
        scale-down delay: the operator waited on a clock); ``same_pass``, a write within
        ``same_pass`` seconds of the operator's own write that caused the gate (one reconcile pass).
        """
        with self._lock:
            obs = sorted((o for o in self.observations if since <= o.t <= until), key=lambda o: o.t)
        writes = [o for o in obs if o.kind == "write"]
        out: list[tuple[float, str, str]] = []
        skipped = {"timer": 0, "same_pass": 0}
        for i, gate in enumerate(obs):
            if gate.kind != "gate":
                continue
            answer: Observation | None = None
            for o in obs[i + 1 :]:
                if o.kind == "gate":
                    break
                if o.what.startswith("switch service") and o.t - gate.t <= same_pass:
                    continue
                answer = o
                break
            if answer is None:
                continue
            causes = [w.t for w in writes if abs(w.t - gate.t) <= same_pass and w is not answer]
            dt = answer.t - gate.t
            if dt > cap:
                skipped["timer"] += 1
            elif causes and answer.t - max(causes) <= same_pass:
                skipped["same_pass"] += 1
            else:
                out.append((round(dt, 4), gate.what, answer.what))
        return out, skipped


class PodTerminations:
    """Watches a namespace and records, in seconds after ``epoch``, when each pod was first seen
    terminating (``deletionTimestamp`` set) and, for ``service``, when a pod that was a ready endpoint
    stopped being one (it left service: terminating, not ready, or no longer selected). Watches, not
    polls: on a busy node a LIST takes long enough to blur these times by tenths of a second."""

    def __init__(self, kube: Kube, ns: str, epoch: float, service: str | None = None) -> None:
        self.kube, self.ns, self.epoch, self.service = kube, ns, epoch, service
        self.terminating: dict[str, float] = {}
        self.left_service: dict[str, float] = {}
        self.pod_ips: dict[str, str] = {}
        """Pod IP -> pod name, of every pod seen with an IP."""
        self.last_left: dict[str, float] = {}
        """When each pod last stopped being a ready endpoint (a pod can come back, e.g. on undo)."""
        self._ready: dict[str, set[str]] = {}
        self.deleted_rv: dict[str, int] = {}
        """resourceVersion of the change that made each pod terminating."""
        self.listed_rv: dict[str, list[tuple[int, bool]]] = {}
        """Per pod: (resourceVersion, ready endpoint of the Service from then on) at each change."""
        self.alive: set[str] = set()
        self.counts: list[tuple[float, int]] = []
        """(when, pods that existed then, terminating ones included) at every change."""
        self.created: dict[str, float] = {}
        """Pods created while watched (not listed at the start), by when they were first seen."""
        self.first_ready: dict[str, float] = {}
        """When each pod first became a ready endpoint of ``service``."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._primed = [threading.Event(), threading.Event()]
        self._threads = [
            threading.Thread(
                target=watch_namespace,
                args=(
                    kube,
                    ns,
                    lambda api: client.CoreV1Api(api).list_namespaced_pod,
                    self._pod,
                    self._stop,
                    self._primed[0],
                ),
                name="watch-pods",
                daemon=True,
            ),
            threading.Thread(
                target=watch_namespace,
                args=(
                    kube,
                    ns,
                    lambda api: client.DiscoveryV1Api(api).list_namespaced_endpoint_slice,
                    self._slice,
                    self._stop,
                    self._primed[1],
                ),
                name="watch-slices",
                daemon=True,
            ),
        ]

    def _now(self) -> float:
        return time.monotonic() - self.epoch

    def _pod(self, type_: str, p: Json) -> None:
        name = p["metadata"]["name"]
        with self._lock:
            if type_ == "DELETED":
                self.alive.discard(name)
            else:
                self.alive.add(name)
                if type_ == "ADDED" and name not in self.created:
                    self.created[name] = self._now()
            if not self.counts or self.counts[-1][1] != len(self.alive):
                self.counts.append((self._now(), len(self.alive)))
            if (p.get("status") or {}).get("podIP"):
                self.pod_ips[p["status"]["podIP"]] = name
            if p["metadata"].get("deletionTimestamp") and name not in self.terminating:
                self.terminating[name] = self._now()
                self.deleted_rv[name] = int(p["metadata"]["resourceVersion"])

    def _slice(self, type_: str, sl: Json) -> None:
        if (sl["metadata"].get("labels") or {}).get("kubernetes.io/service-name") != self.service:
            return
        ready = set()
        if type_ != "DELETED":
            ready = {
                (ep.get("targetRef") or {}).get("name", "")
                for ep in sl.get("endpoints") or []
                if (ep.get("conditions") or {}).get("ready")
            }
        with self._lock:
            before = set().union(*self._ready.values()) if self._ready else set()
            self._ready[sl["metadata"]["name"]] = ready
            after = set().union(*self._ready.values())
            for name in before - after:
                self.left_service.setdefault(name, self._now())
                self.last_left[name] = self._now()
            version = int(sl["metadata"]["resourceVersion"])
            for name in after - before:
                self.listed_rv.setdefault(name, []).append((version, True))
                self.first_ready.setdefault(name, self._now())
            for name in before - after:
                self.listed_rv.setdefault(name, []).append((version, False))

    def peak_pods(self, since: float, until: float) -> int:
        """The most pods that existed at once between ``since`` and ``until``."""
        with self._lock:
            before = [n for t, n in self.counts if t <= since]
            during = [n for t, n in self.counts if since < t <= until]
        return max([*before[-1:], *during], default=0)

    def start_seconds(self, since: float, until: float) -> float:
        """How long, between ``since`` and ``until``, at least one pod created then was on its way
        from creation to ready endpoint: the time no controller could have saved (the union of the
        pods' intervals, so pods started together count once)."""
        with self._lock:
            spans = sorted(
                (t, min(self.first_ready[n], until))
                for n, t in self.created.items()
                if since <= t <= until and n in self.first_ready
            )
        total, end = 0.0, since
        for start, stop in spans:
            start = max(start, end)
            if stop > start:
                total += stop - start
                end = stop
        return round(total, 2)

    def deleted_while_listed(self) -> list[str]:
        """Pods deleted while still a ready endpoint of the Service: the change that made them
        terminating came before the EndpointSlice change that took them out. Ordered by
        resourceVersion, which one etcd hands out from a single counter for every kind, so the
        order is the API server's, not the order in which two watches delivered their events."""
        with self._lock:
            out = []
            for name, deleted in self.deleted_rv.items():
                before = [
                    listed for version, listed in sorted(self.listed_rv.get(name, [])) if version < deleted
                ]
                if before and before[-1]:
                    out.append(name)
            return sorted(out)

    def start(self) -> None:
        for t in self._threads[: 2 if self.service else 1]:
            t.start()
        for e in self._primed[: 2 if self.service else 1]:
            e.wait(10)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=10)


# ---------------------------------------------------------------------------------------------
# Reading traffic records against a rollout
# ---------------------------------------------------------------------------------------------
def versions_after(records: Sequence[Record], t: float) -> dict[str, int]:
    """Responses per version (errors as ``error:<kind>``) for HTTP requests sent at or after ``t``."""
    out: dict[str, int] = {}
    for r in records:
        if r.get("kind") == "http" and float(r["t_send"]) >= t:
            key = f"error:{r.get('outcome')}" if is_failure(r) else str(r.get("version"))
            out[key] = out.get(key, 0) + 1
    return out


CUT_TOLERANCE = 0.5
"""Seconds: pod deletions are seen by polling (0.1 s) through the API, a little after they happen."""


def cut_by_app(r: Record, terms: PodTerminations, pre_stop_seconds: float) -> bool:
    """A failure the app caused itself when it got SIGTERM after the controller drained it: a
    request in flight on a kept-alive connection, or a WebSocket, cut at that pod's SIGTERM (the
    abrupt app resets them), on a pod that had already left the Service's endpoints. No controller
    can save those; what it must save (a connection sent to a pod that is gone) is never this."""
    if not is_failure(r):
        return False
    pod = r.get("pod")
    if r.get("kind") == "http":
        t = float(r["t_send"])
        if r.get("outcome") != "keepalive_reset":
            return False
    elif r.get("kind") == "ws":
        t = float(r.get("t", 0.0))
        if r.get("end_kind") != "lost":
            return False
    else:
        return False
    if not pod or pod not in terms.terminating:
        return False
    sigterm = terms.terminating[pod] + pre_stop_seconds
    left = terms.left_service.get(pod)
    return t >= sigterm - CUT_TOLERANCE and left is not None and left <= t


CONNTRACK_CLOSE_SECONDS = 10.0
"""``nf_conntrack_tcp_timeout_close``: how long the kernel keeps the entry of a reset connection."""
CONNTRACK_SYN_SENT_SECONDS = 120.0
"""``nf_conntrack_tcp_timeout_syn_sent``: how long an unanswered SYN keeps the entry (and its target)."""


def app_reset_failures(
    records: Sequence[Record], flows: FlowLog, terms: PodTerminations, pre_stop_seconds: float
) -> list[Record]:
    """The failures the abrupt app caused by resetting connections at its SIGTERM after the
    controller had drained its pod (left the Service, full preStop): no controller can prevent them.

    - a request in flight on a kept-alive connection, or a WebSocket held open, cut at that pod's
      SIGTERM (``cut_by_app``);
    - a new connection the kernel sent where an earlier connection from the same client port had
      gone, to that pod. When a server resets a connection, conntrack keeps its entry in state
      CLOSE for 10 s, and a SYN from the same client port in that time does not start a new entry
      (Linux reopens only entries closed by a FIN, or reset by the client): it reuses the old
      translation, to a pod that is gone; the unanswered SYN then keeps it for 120 s more, so a
      later reuse of the port fails the same way. ``connect()`` hands a port out again within
      seconds at a high connection rate, so a client that also held WebSockets or kept-alive
      connections to the old pod meets this. Told apart by conntrack: no new entry (no translation
      by kube-proxy's rules) appeared for the failed connection, and its port's last translated
      flow went to a pod whose app had reset its connections.
    """
    out: list[Record] = []
    stale: dict[int, float] = {}  # client port -> last failure through a stale entry
    for r in sorted(failed(records), key=lambda r: float(r.get("t_send", r.get("t", 0.0)) or 0.0)):
        if cut_by_app(r, terms, pre_stop_seconds):
            out.append(r)
            continue
        if r.get("kind") == "http":
            kind, t = r.get("outcome"), float(r["t_send"])
            if r.get("reused"):
                continue
        elif r.get("end_kind") == "connect":  # a WebSocket client's new connection
            kind, t = r.get("detail"), float(r["t_open"])
        else:
            continue
        if kind not in ("connect_timeout", "unreachable", "refused"):
            continue
        sport = r.get("sport")
        if sport is None or flows.began(sport, t):
            continue
        if t - stale.get(int(sport), -1e9) <= CONNTRACK_SYN_SENT_SECONDS:
            stale[int(sport)] = t
            out.append(r)
            continue
        prev = flows.previous(sport, t)
        pod = terms.pod_ips.get(prev[1]) if prev else None
        if pod is None or pod not in terms.terminating:
            continue
        sigterm = terms.terminating[pod] + pre_stop_seconds
        if sigterm - CUT_TOLERANCE <= t <= sigterm + CONNTRACK_CLOSE_SECONDS + CUT_TOLERANCE:
            stale[int(sport)] = t
            out.append(r)
    return out


def propagation_lags(flows: FlowLog, terms: PodTerminations) -> dict[str, float]:
    """Per retired pod: seconds from the moment it last left the Service's endpoints to the last new
    connection kube-proxy's rules still sent to it (a fresh conntrack translation). This is the
    endpoint propagation the preStop sleep must cover; negative when nothing came after it left."""
    last_flow: dict[str, float] = {}
    for events in flows.flows.values():
        for t, ip in events:
            last_flow[ip] = max(last_flow.get(ip, t), t)
    out = {}
    for ip, pod in terms.pod_ips.items():
        if pod in terms.terminating and pod in terms.last_left and ip in last_flow:
            out[pod] = round(last_flow[ip] - terms.last_left[pod], 3)
    return out


def describe_failures(records: Sequence[Record], limit: int = 15) -> str:
    """A readable list of failed requests and abnormal WebSocket ends."""
    bad = failed(records)
    lines = []
    for r in sorted(bad, key=lambda r: float(r.get("t_send", r.get("t")) or 0.0))[:limit]:
        if r["kind"] == "http":
            lines.append(
                f"  t={r['t_send']:.3f}s {r['mode']} {r.get('outcome')} latency={r.get('latency_ms')}ms "
                f"pod={r.get('pod')} {r.get('detail', '')}"
            )
        else:
            lines.append(
                f"  ws client {r['client']} conn {r['conn']} opened t={r['t_open']:.3f}s ended "
                f"t={r['t']:.3f}s {r['end_kind']} code={r['code']} pod={r.get('pod')} "
                f"{r.get('detail', '')}"
            )
    more = f"\n  ... and {len(bad) - limit} more" if len(bad) > limit else ""
    return "\n".join(lines) + more


def operator_log_tail(log: Path, since_bytes: int = 0, lines: int = 60) -> str:
    if not log.exists():
        return "(no operator log)"
    with log.open("rb") as f:
        f.seek(since_bytes)
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def summarize_events(observations: Sequence[Observation], since: float, until: float) -> str:
    return "\n".join(f"  t={o.t:.3f}s {o.kind}: {o.what}" for o in observations if since <= o.t <= until)
