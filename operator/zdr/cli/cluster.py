"""Talking to the cluster the way kubectl does: kubeconfig, context, namespace, and clear errors.

- The kubeconfig is ``--kubeconfig``, else every file in ``KUBECONFIG`` (merged, as kubectl
  merges them), else ``~/.kube/config``; inside a pod without one, the in-cluster account.
- The namespace is ``-n``, else the context's namespace, else ``default``.
- Every API failure that a user can cause or fix (unknown name, wrong namespace, missing CRD,
  no permission, unreachable server, bad kubeconfig) becomes a ``CliError`` with one line that
  names what was tried (server, kubeconfig file, namespace) and what to do.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from zdr.api import GROUP, LABEL_MANAGED_BY, LABEL_ROLLOUT, PLURAL, SINGULAR, VERSION
from zdr.revision import MANAGED_BY

Json = dict[str, Any]

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP/TLS connection to the API server."""
READ_TIMEOUT = 30.0
"""Seconds to wait for an answer to one request."""

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3


class CliError(Exception):
    """An expected failure: printed as ``error: <message>`` without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class KubeOptions:
    """The kubectl-style flags every command accepts."""

    namespace: str | None = None
    context: str | None = None
    kubeconfig: str | None = None

    def merged(self, outer: KubeOptions | None) -> KubeOptions:
        """Flags given to the command win over flags given before it."""
        if outer is None:
            return self
        return KubeOptions(
            namespace=self.namespace or outer.namespace,
            context=self.context or outer.context,
            kubeconfig=self.kubeconfig or outer.kubeconfig,
        )


@dataclass(frozen=True)
class Connection:
    """An API client plus what it was made from (for messages)."""

    api: client.ApiClient
    namespace: str
    server: str
    source: str
    """The kubeconfig file(s), or "in-cluster service account"."""
    context: str | None
    user: str | None
    """The kubeconfig user entry of the context, if any."""

    def where(self) -> str:
        context = f", context {self.context!r}" if self.context else ""
        return f"{self.server} (kubeconfig {self.source}{context})"


def kubeconfig_paths(explicit: str | None) -> list[Path]:
    """The kubeconfig files kubectl would read, in order."""
    if explicit:
        return [Path(explicit).expanduser()]
    env = os.environ.get("KUBECONFIG", "")
    paths = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return paths or [Path("~/.kube/config").expanduser()]


def _quiet_http_logs() -> None:
    # urllib3 logs every retry as a warning; errors are reported once, by ``CliError``.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    logging.getLogger("kubernetes").setLevel(logging.ERROR)


def load_config(options: KubeOptions) -> tuple[client.Configuration, str, str | None, str | None, str | None]:
    """The client configuration, its source, context, user and the context's namespace."""
    _quiet_http_logs()
    cfg = client.Configuration()
    paths = kubeconfig_paths(options.kubeconfig)
    existing = [p for p in paths if p.is_file()]
    names = os.pathsep.join(str(p) for p in paths)
    if not existing:
        if options.kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ and not options.context:
            try:
                config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            except config.ConfigException as exc:
                raise CliError(f"no kubeconfig at {names} and the in-cluster config failed: {exc}") from None
            return cfg, "in-cluster service account", None, None, _incluster_namespace()
        hint = "pass --kubeconfig FILE" if options.kubeconfig else "set KUBECONFIG or pass --kubeconfig FILE"
        raise CliError(f"no kubeconfig found: {names} does not exist; {hint}")
    source = os.pathsep.join(str(p) for p in existing)
    try:
        contexts, current = config.list_kube_config_contexts(config_file=source)  # type: ignore[no-untyped-call]
    except (config.ConfigException, ValueError, OSError) as exc:
        raise CliError(f"kubeconfig {source}: {exc}") from None
    if options.context:
        chosen = next((c for c in contexts if c.get("name") == options.context), None)
        if chosen is None:
            known = ", ".join(sorted(str(c.get("name")) for c in contexts)) or "none"
            raise CliError(
                f"context {options.context!r} not found in kubeconfig {source} (contexts: {known})"
            )
    else:
        chosen = current
        if not chosen:
            raise CliError(f"kubeconfig {source} has no current-context; pass --context NAME")
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=source, context=options.context, client_configuration=cfg, persist_config=False
        )
    except (config.ConfigException, ValueError, OSError) as exc:
        raise CliError(f"kubeconfig {source}: {exc}") from None
    details = chosen.get("context") or {}
    return cfg, source, chosen.get("name"), details.get("user"), details.get("namespace")


def _incluster_namespace() -> str | None:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def connect(options: KubeOptions) -> Connection:
    """A connection as kubectl would make it (no request is sent yet)."""
    cfg, source, context, user, context_namespace = load_config(options)
    cfg.retries = 0  # a refused connection is reported at once, not after silent retries
    namespace = options.namespace or context_namespace or "default"
    return Connection(
        api=client.ApiClient(cfg),
        namespace=namespace,
        server=str(cfg.host),
        source=source,
        context=context,
        user=user,
    )


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
def _status_body(exc: ApiException) -> Json | None:
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return None
    return body if isinstance(body, dict) and body.get("kind") == "Status" else None


def not_found_message(conn: Connection, name: str, namespace: str) -> str:
    """The error for a rollout that is not there, with the likeliest fix."""
    message = (
        f'{SINGULAR} "{name}" not found in namespace "{namespace}"; list with kubectl get zdr -n {namespace}'
    )
    try:
        client.CoreV1Api(conn.api).read_namespace(namespace, _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except ApiException as exc:
        if exc.status == 404:
            return f'{SINGULAR} "{name}" not found: namespace "{namespace}" does not exist'
    except urllib3.exceptions.HTTPError:
        return message
    try:
        found = custom_api(conn).list_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            field_selector=f"metadata.name={name}",
            _request_timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
    except (ApiException, urllib3.exceptions.HTTPError):
        return message
    elsewhere = sorted({item["metadata"]["namespace"] for item in found.get("items", [])})
    if elsewhere:
        return message + f" (it exists in namespace {', '.join(elsewhere)}: add -n {elsewhere[0]})"
    return message


def translate(exc: ApiException, conn: Connection, *, name: str | None = None) -> CliError:
    """A one-line error for an API failure."""
    body = _status_body(exc)
    server_message = (body or {}).get("message") or exc.reason or ""
    if exc.status == 404:
        if body is None:  # not a Status object: the resource type itself is unknown to the server
            return CliError(
                f"the {PLURAL}.{GROUP} CRD is not installed on {conn.where()}; "
                "install it with kubectl apply --server-side -k crds/"
            )
        details = body.get("details") or {}
        if name is not None and details.get("kind") == PLURAL and details.get("name") == name:
            return CliError(not_found_message(conn, name, conn.namespace))
        return CliError(f"not found: {server_message}")
    if exc.status == 401:
        return CliError(
            f"unauthorized by {conn.where()}: the credentials were not accepted ({server_message})"
        )
    if exc.status == 403:
        return CliError(f"forbidden by {conn.where()}: {server_message}")
    if exc.status == 409:
        return CliError(f"conflict: {server_message}; try again")
    if exc.status == 422:
        return CliError(f"rejected by the API server: {server_message}")
    return CliError(f"the API server {conn.server} answered {exc.status} {exc.reason}: {server_message}")


def unreachable(conn: Connection, exc: BaseException) -> CliError:
    reason = exc
    while isinstance(reason, urllib3.exceptions.MaxRetryError) and reason.reason is not None:
        reason = reason.reason
    text = str(reason)
    if "Connection refused" in text:
        why = "connection refused"
    elif isinstance(reason, urllib3.exceptions.SSLError):
        why = f"TLS error: {text}"
    elif isinstance(reason, urllib3.exceptions.TimeoutError):
        why = "timed out"
    elif isinstance(reason, urllib3.exceptions.NameResolutionError):
        why = "host name not resolved"
    else:
        why = text.split(": ", 1)[-1] if ": " in text else text
    return CliError(
        f"cannot reach the Kubernetes API server at {conn.server} ({why}); kubeconfig {conn.source}"
        + (f", context {conn.context!r}" if conn.context else "")
        + "; is the cluster running?"
    )


@contextmanager
def api_errors(conn: Connection, *, name: str | None = None) -> Iterator[None]:
    """Turn API and connection failures inside the block into ``CliError``."""
    try:
        yield
    except ApiException as exc:
        raise translate(exc, conn, name=name) from None
    except (urllib3.exceptions.HTTPError, ConnectionError) as exc:
        raise unreachable(conn, exc) from None


# ---------------------------------------------------------------------------------------------
# Reads and writes
# ---------------------------------------------------------------------------------------------
TIMEOUTS = (CONNECT_TIMEOUT, READ_TIMEOUT)


def custom_api(conn: Connection) -> Any:
    """The custom objects API; its calls return plain JSON (the library types them as ``object``)."""
    return client.CustomObjectsApi(conn.api)


def get_rollout(conn: Connection, name: str) -> Json:
    with api_errors(conn, name=name):
        obj: Json = custom_api(conn).get_namespaced_custom_object(
            GROUP, VERSION, conn.namespace, PLURAL, name, _request_timeout=TIMEOUTS
        )
    return obj


def find_rollout(conn: Connection, name: str) -> Json | None:
    """The rollout, or None when it does not exist (the CRD missing counts as not existing)."""
    with api_errors(conn):
        try:
            obj: Json = custom_api(conn).get_namespaced_custom_object(
                GROUP, VERSION, conn.namespace, PLURAL, name, _request_timeout=TIMEOUTS
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
    return obj


def merge_patch_annotations(conn: Connection, name: str, annotations: Mapping[str, str]) -> Json:
    """A JSON merge patch of ``metadata.annotations`` only: nothing else of the object is touched."""
    body = {"metadata": {"annotations": dict(annotations)}}
    with api_errors(conn, name=name):
        obj: Json = custom_api(conn).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            conn.namespace,
            PLURAL,
            name,
            body,
            _content_type="application/merge-patch+json",
            _request_timeout=TIMEOUTS,
        )
    return obj


def children_selector(name: str) -> str:
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ROLLOUT}={name}"


def list_json(conn: Connection, call: Any, selector: str) -> list[Json]:
    """A namespaced list as plain Kubernetes JSON (camelCase, like kubectl -o json)."""
    with api_errors(conn):
        resp = call(
            conn.namespace, label_selector=selector, _preload_content=False, _request_timeout=TIMEOUTS
        )
    items: list[Json] = json.loads(resp.data)["items"]
    return items


def current_user(conn: Connection) -> str | None:
    """Who the API server says we are; else the kubeconfig's user entry; else None."""
    try:
        review = client.AuthenticationV1Api(conn.api).create_self_subject_review(
            client.V1SelfSubjectReview(), _request_timeout=(CONNECT_TIMEOUT, 5.0)
        )
        username = review.status.user_info.username if review.status and review.status.user_info else None
        if username:
            return str(username)
    except (ApiException, urllib3.exceptions.HTTPError, ConnectionError, AttributeError):
        pass
    return conn.user


def new_watch() -> Any:
    """A ``kubernetes.watch.Watch`` (the library leaves it untyped)."""
    return watch.Watch()  # type: ignore[no-untyped-call]


def follow_rollout(conn: Connection, name: str, deadline: float | None) -> Iterator[Json]:
    """The rollout now, then each time it changes (a watch), until ``deadline`` (monotonic) passes.

    Reconnects when the watch ends or expires; raises ``CliError`` if the rollout is deleted.
    """
    custom = custom_api(conn)
    while True:
        obj = get_rollout(conn, name)
        yield obj
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        server_timeout = 60 if remaining is None else max(1, min(60, int(remaining + 0.999)))
        stream = new_watch()
        try:
            for event in stream.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                conn.namespace,
                PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=obj["metadata"].get("resourceVersion"),
                timeout_seconds=server_timeout,
                _request_timeout=(CONNECT_TIMEOUT, server_timeout + 10),
            ):
                kind = event.get("type")
                raw = event.get("raw_object")
                if kind == "DELETED":
                    raise CliError(f'{SINGULAR} "{name}" was deleted in namespace "{conn.namespace}"')
                if kind in ("ADDED", "MODIFIED") and isinstance(raw, dict):
                    yield raw
                if deadline is not None and time.monotonic() >= deadline:
                    return
        except ApiException as exc:
            if exc.status != 410:  # 410 Gone: the watch expired; read afresh and watch again
                raise translate(exc, conn, name=name) from None
        except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
            pass  # the stream broke off; the next read reports a real outage
        except urllib3.exceptions.HTTPError as exc:
            raise unreachable(conn, exc) from None
        finally:
            stream.stop()
