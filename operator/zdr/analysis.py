"""Takes the measurements of analysis checks: the only code that talks to the application under test
or to Prometheus.

Called on every reconcile, before the planner: each result in ``status.analysis`` that is due
(``zdr.plan.checks.next_due``) gets one measurement, recorded in that result (counts, last value,
message, time). The planner then decides from the recorded results alone (abort, step passed)
and asks to be woken when the next measurement is due, so the schedule and every result live in
``status`` and a restarted operator picks up where the last one stopped.

A measurement is a success, a failure, or no data (nothing to measure yet: no ready pod, the
Service not on the revision yet, an empty Prometheus result); no data counts for neither. An
error (no answer, a timeout, an unreadable body) is a failure: a check that cannot tell is not a
pass. Every request is bounded by the check's timeout and due checks run in parallel, so a
reconcile waits at most about the longest timeout.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from zdr import log
from zdr.api import (
    LABEL_REVISION,
    AnalysisCheck,
    AnalysisResult,
    HttpCheck,
    PrometheusCheck,
    ServiceRole,
    ZeroDowntimeRolloutSpec,
    ZeroDowntimeRolloutStatus,
)
from zdr.observe import Children
from zdr.plan import checks
from zdr.revision import revision_hash

Json = dict[str, Any]
Kind = Literal["success", "failure", "nodata"]
MAX_BODY = 1 << 20
MAX_PARALLEL = 8


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    value: str | None
    message: str


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


Fetch = Callable[[str, float], Reply]
"""GET a URL with a timeout in seconds; raises OSError (or ValueError) when there is no answer."""


def fetch(url: str, timeout: float) -> Reply:
    request = urllib.request.Request(url, headers={"Accept": "application/json", "Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, validated
            return Reply(response.status, response.read(MAX_BODY))
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.read(MAX_BODY))


@dataclass(frozen=True)
class Target:
    """What a measurement is about."""

    namespace: str
    rollout: str
    revision: str
    strategy: str
    children: Children


def measure(
    spec: ZeroDowntimeRolloutSpec,
    status: ZeroDowntimeRolloutStatus,
    children: Children,
    *,
    namespace: str,
    rollout: str,
    now: datetime,
    get: Fetch = fetch,
) -> ZeroDowntimeRolloutStatus:
    """``status`` with one new measurement in every result that is due."""
    now = now.astimezone(UTC).replace(microsecond=0)
    revision = revision_hash(spec)
    due: list[tuple[int, AnalysisResult, AnalysisCheck]] = []
    for i, result in enumerate(status.analysis):
        check = checks.definition(spec, result.step, result.name)
        if result.revision == revision and check is not None and checks.is_due(result, check, now):
            due.append((i, result, check))
    if not due:
        return status
    target = Target(namespace, rollout, revision, spec.strategy.type, children)
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(due))) as pool:
        outcomes = list(pool.map(lambda item: _safely(item[2], target, get), due))
    results = list(status.analysis)
    for (i, result, check), outcome in zip(due, outcomes, strict=True):
        results[i] = record(result, outcome, now)
        log.get().info(
            "measured",
            rollout=f"{namespace}/{rollout}",
            revision=revision,
            check=check.name,
            step=result.step,
            outcome=outcome.kind,
            value=outcome.value,
            detail=outcome.message,
        )
    return status.model_copy(update={"analysis": results})


def record(result: AnalysisResult, outcome: Outcome, now: datetime) -> AnalysisResult:
    """``result`` with ``outcome`` counted."""
    update: dict[str, Any] = {
        "measurements": result.measurements + 1,
        "last_value": outcome.value,
        "message": outcome.message,
        "last_measured_at": now,
    }
    if outcome.kind == "success":
        update["successes"] = result.successes + 1
        update["last_success_at"] = now
    elif outcome.kind == "failure":
        update["failures"] = result.failures + 1
    return result.model_copy(update=update)


def _safely(check: AnalysisCheck, target: Target, get: Fetch) -> Outcome:
    try:
        if check.http is not None:
            return measure_http(check.http, target, get)
        if check.prometheus is not None:
            return measure_prometheus(check.prometheus, target, get)
        return Outcome("nodata", None, "the check has neither http nor prometheus")
    except Exception as exc:  # noqa: BLE001 - any surprise is a failed measurement, never a crash
        return Outcome("failure", None, f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------
def measure_http(http: HttpCheck, target: Target, get: Fetch) -> Outcome:
    urls, why = http_urls(http, target)
    if not urls:
        return Outcome("nodata", None, why)
    value: str | None = None
    for name, url in urls:
        try:
            reply = get(url, float(http.timeout_seconds))
        except (OSError, ValueError) as exc:
            return Outcome("failure", None, f"{name}: no answer from {url}: {_reason(exc)}")
        outcome = judge_http(http, reply)
        if outcome.kind != "success":
            return Outcome(outcome.kind, outcome.value, f"{name}: {outcome.message}")
        value = outcome.value
    passed = f"{len(urls)} {'answer' if len(urls) == 1 else 'answers'} passed"
    return Outcome("success", value, passed)


def judge_http(http: HttpCheck, reply: Reply) -> Outcome:
    """Whether one answer passes: its status code, then the number at jsonPath."""
    codes = http.status_codes
    ok = reply.status in codes if codes else 200 <= reply.status < 300
    if not ok:
        wanted = ", ".join(map(str, codes)) if codes else "2xx"
        return Outcome("failure", str(reply.status), f"status {reply.status}, expected {wanted}")
    if http.json_path is None or http.range is None:
        return Outcome("success", str(reply.status), f"status {reply.status}")
    try:
        number = json_number(json.loads(reply.body), http.json_path)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Outcome("failure", None, f"no number at {http.json_path}: {exc}")
    text = f"{number:g}"
    if math.isnan(number) or not http.range.contains(number):
        return Outcome("failure", text, f"{http.json_path} = {text}, outside {http.range}")
    return Outcome("success", text, f"{http.json_path} = {text}")


def json_number(document: Any, path: str) -> float:
    """The number at a dotted path (``a.b.0.c``; list items by index)."""
    node = document
    for part in path.split("."):
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, Mapping):
            node = node[part]
        else:
            raise KeyError(part)
    if isinstance(node, bool) or not isinstance(node, int | float | str):
        raise TypeError(f"{path} is {type(node).__name__}, not a number")
    return float(node)


def http_urls(http: HttpCheck, target: Target) -> tuple[list[tuple[str, str]], str]:
    """(label, URL) pairs a measurement GETs, or none and why."""
    if http.url is not None:
        return [("url", http.url)], ""
    if http.target == "Service":
        return _service_url(http, target)
    return _pod_urls(http, target)


def _pod_urls(http: HttpCheck, target: Target) -> tuple[list[tuple[str, str]], str]:
    pods = [
        p
        for p in target.children.pods.get(target.revision, [])
        if _ready(p) and p.get("status", {}).get("podIP")
    ]
    if not pods:
        return [], f"no ready pod of revision {target.revision} to measure yet"
    urls = []
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        port = _container_port(pod, http.port)
        if port is None:
            return [], f"pod {pod['metadata']['name']} has no container port {http.port or ''}".rstrip()
        urls.append(
            (f"pod {pod['metadata']['name']}", f"http://{_host(pod['status']['podIP'])}:{port}{http.path}")
        )
    return urls, ""


def _service_url(http: HttpCheck, target: Target) -> tuple[list[tuple[str, str]], str]:
    role = ServiceRole.PREVIEW if target.strategy == "BlueGreen" else ServiceRole.CANARY
    service = target.children.services.get(role)
    if service is None:
        return [], f"no {role.value} Service yet"
    spec = service.get("spec", {})
    if (spec.get("selector") or {}).get(LABEL_REVISION) != target.revision:
        return [], f"the {role.value} Service does not select revision {target.revision} yet"
    ip = spec.get("clusterIP")
    if not ip or ip == "None":
        return [], f"the {role.value} Service has no cluster IP"
    port = _service_port(spec.get("ports") or [], http.port)
    if port is None:
        return [], f"the {role.value} Service has no port {http.port}"
    name = service["metadata"]["name"]
    return [(f"Service {name}", f"http://{_host(ip)}:{port}{http.path}")], ""


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _container_port(pod: Mapping[str, Any], port: int | str | None) -> int | None:
    if isinstance(port, int):
        return port
    for container in pod.get("spec", {}).get("containers") or []:
        for item in container.get("ports") or []:
            if port is None or item.get("name") == port:
                number = item.get("containerPort")
                return int(number) if number else None
    return None


def _service_port(ports: Sequence[Mapping[str, Any]], port: int | str | None) -> int | None:
    for item in ports:
        if port is None or item.get("name") == port or item.get("port") == port:
            return int(item["port"])
    return None


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------
def measure_prometheus(prom: PrometheusCheck, target: Target, get: Fetch) -> Outcome:
    query = checks.render_query(
        prom.query, revision=target.revision, rollout=target.rollout, namespace=target.namespace
    )
    url = prom.address.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        reply = get(url, float(prom.timeout_seconds))
    except (OSError, ValueError) as exc:
        return Outcome("failure", None, f"Prometheus did not answer: {_reason(exc)}")
    if reply.status != 200:
        return Outcome("failure", None, f"Prometheus answered {reply.status}: {_snippet(reply.body)}")
    try:
        values = prometheus_values(json.loads(reply.body))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return Outcome("failure", None, f"unreadable Prometheus answer: {exc}")
    return judge_values(values, prom)


def prometheus_values(answer: Mapping[str, Any]) -> list[float]:
    """The sample values of an instant query answer (vector or scalar)."""
    if answer.get("status") != "success":
        raise ValueError(f"status {answer.get('status')!r}: {answer.get('error', '')}")
    data = answer["data"]
    kind = data["resultType"]
    if kind == "scalar":
        return [float(data["result"][1])]
    if kind == "vector":
        return [float(sample["value"][1]) for sample in data["result"]]
    raise ValueError(f"result type {kind!r}: the query must return a scalar or an instant vector")


def judge_values(values: Sequence[float], prom: PrometheusCheck) -> Outcome:
    numbers = [v for v in values if not math.isnan(v)]
    if not numbers:
        return Outcome("nodata", None, "the query returned no data")
    text = ", ".join(f"{v:g}" for v in numbers[:5]) + (" ..." if len(numbers) > 5 else "")
    outside = [v for v in numbers if not prom.range.contains(v)]
    if outside:
        return Outcome("failure", f"{outside[0]:g}", f"{outside[0]:g} outside {prom.range} (values {text})")
    return Outcome("success", f"{numbers[0]:g}", f"within {prom.range} (values {text})")


def _snippet(body: bytes) -> str:
    return body[:200].decode(errors="replace").strip()


__all__ = [
    "Fetch",
    "Outcome",
    "Reply",
    "Target",
    "fetch",
    "http_urls",
    "judge_http",
    "judge_values",
    "json_number",
    "measure",
    "measure_http",
    "measure_prometheus",
    "prometheus_values",
    "record",
]
