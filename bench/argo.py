"""Argo Rollouts, the peer zdr is measured beside: its controller as a host process and its
``Rollout`` as a bench target.

The controller is built from the Go module proxy (``hack/gomod/argo-rollouts``, cached under
``~/.cache/zdr`` like the Kubernetes binaries) and runs against the local cluster only while a
benchmark or its e2e test needs it. Its CRDs come from the same module's ``manifests/crds``.

A ``Rollout`` gets what a careful Argo user writes by hand, since Argo injects nothing: the same
readiness probe, preStop sleep and termination grace period as zdr's pods (``pre_stop=None``
leaves the preStop out: what a user who forgets it gets). Promotion and undo make the changes
Argo's kubectl plugin makes: promote clears ``status.pauseConditions`` (and ``spec.paused``);
undo writes the previous revision's pod template into ``spec.template`` (a canary then also gets
``promote --full``, see ``ArgoTarget.undo``).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.rest import ApiException

from bench.scenarios import (
    KUBECONFIG,
    LOGS,
    ROOT,
    App,
    Json,
    Kube,
    Target,
    container,
    raw_json,
    stop_process,
    wait_for,
    with_version,
)

ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "rollouts"
CONTROLLER = ROOT / ".cluster" / "bin" / "rollouts-controller"
ARGO_CRDS = ROOT / ".cluster" / "argo-rollouts" / "crds"
"""Copied there from the module's manifests/crds by hack/build-binaries.sh."""
CONTROLLER_NAMESPACE = "argo-rollouts"
"""Where the controller looks for its notification settings (none here)."""
ArgoStrategy = Literal["BlueGreen", "Canary"]
CRD_NAMES = tuple(
    f"{plural}.{ARGO_GROUP}"
    for plural in ("rollouts", "analysisruns", "analysistemplates", "clusteranalysistemplates", "experiments")
)
HEALTHZ = "http://127.0.0.1:18080/healthz"


def available() -> bool:
    return CONTROLLER.exists() and ARGO_CRDS.is_dir()


def install_crds(kube: Kube) -> None:
    """Applies Argo's CRDs (Rollout, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate,
    Experiment: the controller watches them all) and waits until they are served."""
    files = sorted(str(p) for p in ARGO_CRDS.glob("*-crd.yaml"))
    if not files:
        raise RuntimeError(f"no Argo Rollouts CRDs in {ARGO_CRDS}: run `make binaries`")
    kube.kubectl("apply", "--server-side", "--force-conflicts", *[a for f in files for a in ("-f", f)])

    def established() -> bool:
        """Every one of them: the controller's informers for a CRD not yet served never sync
        (``kubectl wait`` fails at once on a CRD created a moment ago, before it has conditions)."""
        api = client.ApiextensionsV1Api(kube.api)
        for name in CRD_NAMES:
            conditions = api.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_for("the Argo Rollouts CRDs to be established", established, timeout=60, interval=0.3)
    if not kube.namespace_exists(CONTROLLER_NAMESPACE):
        kube.create_namespace(CONTROLLER_NAMESPACE)


def uninstall_crds(kube: Kube) -> None:
    """Deletes Argo's CRDs (and so any Argo object left) and waits until they are gone."""
    kube.kubectl(
        "delete", "--ignore-not-found", "--timeout=120s", *[f"crd/{name}" for name in CRD_NAMES], timeout=150
    )


def rollout_body(
    name: str,
    version: str,
    strategy: ArgoStrategy,
    app: App,
    *,
    pre_stop: int | None,
    scale_down_delay: int = 10,
    canary_steps: Sequence[Json] = (),
    max_surge: int = 1,
) -> Json:
    labels = {"app": name}
    strat: Json
    if strategy == "BlueGreen":
        strat = {
            "blueGreen": {
                "activeService": name,
                "previewService": f"{name}-preview",
                "autoPromotionEnabled": True,
                "scaleDownDelaySeconds": scale_down_delay,
            }
        }
    else:
        strat = {"canary": {"maxSurge": max_surge, "maxUnavailable": 0, "steps": list(canary_steps)}}
    return {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": app.replicas,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": labels},
            "strategy": strat,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [container(version, app, pre_stop=pre_stop)],
                    "terminationGracePeriodSeconds": app.grace_seconds,
                },
            },
        },
    }


def service_body(name: str, app_name: str) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": app_name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


class ArgoTarget(Target):
    label = "Argo Rollout"

    def __init__(
        self,
        kube: Kube,
        ns: str,
        name: str,
        app: App,
        strategy: ArgoStrategy,
        *,
        pre_stop: int | None,
        **params: Any,
    ) -> None:
        super().__init__(kube, ns, name, app)
        self.strategy = strategy
        self.pre_stop = pre_stop
        self.params = params

    @property
    def pre_stop_seconds(self) -> int:
        return self.pre_stop or 0

    def create(self, version: str) -> None:
        self.kube.create(self.ns, service_body(self.name, self.name))
        if self.strategy == "BlueGreen":
            self.kube.create(self.ns, service_body(f"{self.name}-preview", self.name))
        body = rollout_body(
            self.name, version, self.strategy, self.app, pre_stop=self.pre_stop, **self.params
        )
        self.kube.custom.create_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, self.ns, ARGO_PLURAL, body)

    def rollout(self) -> Json:
        return raw_json(
            self.kube.custom.get_namespaced_custom_object,
            ARGO_GROUP,
            ARGO_VERSION,
            self.ns,
            ARGO_PLURAL,
            self.name,
        )

    def set_version(self, version: str) -> None:
        containers = self.rollout()["spec"]["template"]["spec"]["containers"]
        patch = {"spec": {"template": {"spec": {"containers": with_version(containers, version)}}}}
        self.kube.custom.patch_namespaced_custom_object(
            ARGO_GROUP, ARGO_VERSION, self.ns, ARGO_PLURAL, self.name, patch
        )

    def undo(self, version: str) -> None:
        """``kubectl argo rollouts undo``: the previous revision's template back into spec. A canary
        would then walk its steps again and stop at the indefinite pause (its rollbackWindow skips
        steps only while the old ReplicaSet is still scaled up, which a canary without a traffic
        router does not keep), so it also gets what a user types next, ``promote --full``: once the
        controller has seen the new template, ``status.promoteFull``."""
        before = (self.rollout().get("status") or {}).get("currentPodHash")
        self.set_version(version)
        if self.strategy != "Canary":
            return

        def seen() -> bool:
            st = self.rollout().get("status") or {}
            return st.get("currentPodHash") not in (None, before) and st.get("currentPodHash") != st.get(
                "stableRS"
            )

        wait_for(f"{self.ns}/{self.name} (Argo) to see the undone template", seen, timeout=30, interval=0.05)
        self.kube.custom.patch_namespaced_custom_object_status(
            ARGO_GROUP, ARGO_VERSION, self.ns, ARGO_PLURAL, self.name, {"status": {"promoteFull": True}}
        )

    def complete(self) -> bool:
        obj = self.rollout()
        st = obj.get("status") or {}
        return (
            st.get("phase") == "Healthy"
            and str(st.get("observedGeneration")) == str(obj["metadata"].get("generation"))
            and st.get("stableRS") is not None
            and st.get("stableRS") == st.get("currentPodHash")
            and st.get("updatedReplicas") == self.app.replicas
            and st.get("availableReplicas", 0) >= self.app.replicas
        )

    def promote(self) -> None:
        """``kubectl argo rollouts promote``: clear the pause conditions (and ``spec.paused``)."""
        obj = self.rollout()
        if obj["spec"].get("paused"):
            self.kube.custom.patch_namespaced_custom_object(
                ARGO_GROUP, ARGO_VERSION, self.ns, ARGO_PLURAL, self.name, {"spec": {"paused": False}}
            )
        self.kube.custom.patch_namespaced_custom_object_status(
            ARGO_GROUP, ARGO_VERSION, self.ns, ARGO_PLURAL, self.name, {"status": {"pauseConditions": None}}
        )

    def wait_phase(self, phase: str, timeout: float = 90, step: int | None = None) -> Json:
        def check() -> Json | None:
            st: Json = self.rollout().get("status") or {}
            if st.get("phase") != phase:
                return None
            if step is not None and st.get("currentStepIndex") != step:
                return None
            return st

        return wait_for(
            f"{self.ns}/{self.name} (Argo) to be {phase} ({self.progress()})", check, timeout, interval=0.1
        )

    def progress(self) -> str:
        try:
            st = self.rollout().get("status") or {}
        except ApiException as exc:
            return f"unreadable: {exc.reason}"
        return (
            f"phase={st.get('phase')} step={st.get('currentStepIndex')} ready={st.get('readyReplicas')}/"
            f"{st.get('replicas')} updated={st.get('updatedReplicas')} message={st.get('message')!r}"
        )


class ArgoController:
    """The Argo Rollouts controller as a child process against the local cluster, its output
    appended to ``log``. Cluster-wide (it acts on ``Rollout`` objects only, which nothing else
    here creates), no leader election, its health and metrics ports off the usual 8080/8090."""

    def __init__(self, log: Path = LOGS / "argo-rollouts.log", kubeconfig: Path = KUBECONFIG) -> None:
        self.log = log
        self.kubeconfig = kubeconfig
        self.proc: subprocess.Popen[bytes] | None = None
        self._kube: Kube | None = None

    def start(self, kube: Kube) -> None:
        if not available():
            raise RuntimeError(f"{CONTROLLER} is missing: run `make binaries`")
        install_crds(kube)
        self._kube = kube
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "POD_NAMESPACE": CONTROLLER_NAMESPACE}
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(CONTROLLER),
                    f"--kubeconfig={self.kubeconfig}",
                    "--leader-elect=false",
                    f"--healthzPort={urllib.parse.urlsplit(HEALTHZ).port}",
                    "--metricsport=18090",
                    "--loglevel=info",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def working() -> bool:
            """Healthy, and its informer caches synced: the rollout workers run."""
            if proc.poll() is not None:
                raise RuntimeError(f"the Argo Rollouts controller exited ({proc.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(HEALTHZ, timeout=1) as resp:
                    if resp.status != 200:
                        return False
            except OSError:
                return False
            with self.log.open("rb") as f:
                f.seek(offset)
                return b"Started rollout workers" in f.read()

        wait_for(f"the Argo Rollouts controller to work (log: {self.log})", working, timeout=60, interval=0.2)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def stop(self) -> None:
        """Stops the controller and removes Argo's CRDs again: nothing of Argo stays in the cluster
        (its ``rollouts`` resource would otherwise take ``kubectl get rollouts`` from zdr's short
        name)."""
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None
        if self._kube is not None:
            uninstall_crds(self._kube)
            self._kube = None


def main() -> int:
    """``make argo``: the controller in the foreground against the local cluster, until Ctrl-C."""
    kube = Kube()
    controller = ArgoController()
    controller.start(kube)
    print(f"Argo Rollouts controller running (pid {controller.pid}, log {controller.log}); Ctrl-C stops it")
    try:
        while controller.pid is not None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "ARGO_CRDS",
    "ARGO_GROUP",
    "ARGO_PLURAL",
    "ARGO_VERSION",
    "ArgoController",
    "ArgoStrategy",
    "ArgoTarget",
    "available",
    "install_crds",
    "uninstall_crds",
    "rollout_body",
]
