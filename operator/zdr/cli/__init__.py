"""``kubectl zdr``: the kubectl plugin for ZeroDowntimeRollouts (console script ``kubectl-zdr``).

Verbs, with kubectl's habits (``kubectl zdr VERB NAME [-n NS] [--context C] [--kubeconfig F]``,
``KUBECONFIG`` honoured, the context's namespace as default):

- ``promote [--full]``, ``abort``, ``retry``, ``pause``, ``resume``, ``undo [--to-revision N]``,
  ``restart``: write a command into the ``zdr.io/command`` annotation (never into ``spec``) and
  wait for the operator's answer in ``status.lastCommand``;
- ``get NAME [--watch]``: the rollout, its revisions, pods and Services as a tree;
- ``status NAME --timeout D``: wait for Healthy (exit 0) or failure (non-zero), for CI;
- ``plan -f FILE``: the steps a spec will take, with pod counts and serving capacity, simulated
  with the operator's own planner before anything is applied.

Exit codes: 0 success; 1 failure (command rejected, rollout failed, error); 2 invalid usage;
3 timed out waiting.

Libraries: typer (already a dependency) gives the verbs, typed options and help from the
function signatures, and its ``CliRunner`` tests the commands in process; rich (typer's own
dependency for its help output) draws the ``get`` tree, its live refresh and the ``plan`` table,
and drops colours by itself when the output is not a terminal (CI logs). The kubernetes client
talks to the API server, as the operator does.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
import urllib3
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from zdr.api import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SINGULAR,
    VERSION,
    CommandVerb,
    SpecError,
    ZeroDowntimeRolloutSpec,
    check_rollout_name,
    parse_spec,
    parse_status,
)
from zdr.cli.cluster import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliError,
    Connection,
    KubeOptions,
    api_errors,
    children_selector,
    connect,
    current_user,
    find_rollout,
    get_rollout,
    merge_patch_annotations,
    new_watch,
)
from zdr.cli.commands import (
    annotation_patch,
    build_command,
    describe_request,
    pending_error,
    wait_for_outcome,
)
from zdr.cli.progress import parse_timeout, wait_until_healthy
from zdr.cli.simulate import Simulation, assumed_previous, first_deployment, simulate
from zdr.cli.tree import fetch, render
from zdr.observe import observe
from zdr.revision import readiness_problems

__all__ = ["app", "main"]

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="kubectl zdr",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        metavar="NAMESPACE",
        help="Namespace (default: the kubeconfig context's, else default).",
    ),
]
ContextOpt = Annotated[
    str | None, typer.Option("--context", metavar="CONTEXT", help="Kubeconfig context to use.")
]
KubeconfigOpt = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig", metavar="FILE", help="Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)."
    ),
]
NameArg = Annotated[
    str, typer.Argument(metavar="NAME", help="Name of the ZeroDowntimeRollout.", show_default=False)
]
NoWaitOpt = Annotated[
    bool, typer.Option("--no-wait", help="Write the command and return without waiting for the operator.")
]
WaitTimeoutOpt = Annotated[
    str,
    typer.Option(
        "--timeout", metavar="DURATION", help="How long to wait for the operator's answer (e.g. 10s, 1m)."
    ),
]


# ---------------------------------------------------------------------------------------------
# Output and errors
# ---------------------------------------------------------------------------------------------
def _console() -> Console:
    """A console on the current stdout, wide enough for a tree or table in CI logs."""
    width = None
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        width = 160
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _note(message: str) -> None:
    typer.echo(f"note: {message}", err=True)


def _handled(func: Callable[P, R]) -> Callable[P, R]:
    """Expected failures end with one ``error:`` line and their exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CliError as exc:
            _error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def _options(
    ctx: typer.Context, namespace: str | None, context: str | None, kubeconfig: str | None
) -> KubeOptions:
    outer = ctx.obj if isinstance(ctx.obj, KubeOptions) else None
    return KubeOptions(namespace=namespace, context=context, kubeconfig=kubeconfig).merged(outer)


@app.callback()
def _root(
    ctx: typer.Context,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Zero-downtime rollouts: inspect, plan and control ZeroDowntimeRollouts (zdr.io/v1alpha1).

    Exit codes: 0 success, 1 failure (rejected, failed, error), 2 invalid usage, 3 timed out.
    """
    ctx.obj = KubeOptions(namespace=namespace, context=context, kubeconfig=kubeconfig)


# ---------------------------------------------------------------------------------------------
# Commands that write a request
# ---------------------------------------------------------------------------------------------
def _request(
    verb: CommandVerb,
    name: str,
    options: KubeOptions,
    *,
    full: bool = False,
    to_revision: int | None = None,
    no_wait: bool = False,
    timeout: str = "10s",
) -> None:
    seconds = parse_timeout(timeout)
    conn = connect(options)
    get_rollout(conn, name)  # a clear error for a wrong name or namespace before anything is written
    command = build_command(verb, full=full, to_revision=to_revision, requested_by=current_user(conn))
    merge_patch_annotations(conn, name, annotation_patch(command))
    what = describe_request(command, name, conn.namespace)
    if no_wait:
        typer.echo(f"requested {what} (command id {command.id})")
        return
    outcome = wait_for_outcome(conn, name, command.id, seconds)
    if outcome.state == "Pending":
        raise pending_error(command, name, conn.namespace, seconds)
    line = f"{what}: {outcome.state}" + (f": {outcome.message}" if outcome.message else "")
    if not outcome.ok:
        raise CliError(line)
    typer.echo(line)


def _simple_command(verb: CommandVerb, help_text: str) -> None:
    """Registers a command that takes only the rollout's name and the common options."""

    def command(
        ctx: typer.Context,
        name: NameArg,
        no_wait: NoWaitOpt = False,
        timeout: WaitTimeoutOpt = "10s",
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
    ) -> None:
        _request(verb, name, _options(ctx, namespace, context, kubeconfig), no_wait=no_wait, timeout=timeout)

    command.__doc__ = help_text
    app.command(verb)(_handled(command))


@app.command()
@_handled
def promote(
    ctx: typer.Context,
    name: NameArg,
    full: Annotated[bool, typer.Option("--full", help="Skip every remaining step and pause.")] = False,
    no_wait: NoWaitOpt = False,
    timeout: WaitTimeoutOpt = "10s",
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Move to the next step (canary) or switch traffic (blue-green); --full skips all steps."""
    _request(
        "promote",
        name,
        _options(ctx, namespace, context, kubeconfig),
        full=full,
        no_wait=no_wait,
        timeout=timeout,
    )


_simple_command("abort", "Stop the running rollout and move all traffic back to the stable revision.")
_simple_command("retry", "Start an aborted rollout again.")
_simple_command("pause", "Hold the rollout where it is (spec.paused is the GitOps way).")
_simple_command("resume", "Continue a rollout paused by `kubectl zdr pause`.")


@app.command()
@_handled
def undo(
    ctx: typer.Context,
    name: NameArg,
    to_revision: Annotated[
        int | None,
        typer.Option(
            "--to-revision", min=1, help="Revision number to go back to (default: the previous one)."
        ),
    ] = None,
    no_wait: NoWaitOpt = False,
    timeout: WaitTimeoutOpt = "10s",
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Roll back to the previous revision, or to --to-revision N."""
    _request(
        "undo",
        name,
        _options(ctx, namespace, context, kubeconfig),
        to_revision=to_revision,
        no_wait=no_wait,
        timeout=timeout,
    )


_simple_command("restart", "Replace every pod of the stable revision without dropping serving capacity.")


# ---------------------------------------------------------------------------------------------
# get
# ---------------------------------------------------------------------------------------------
WATCH_MIN_INTERVAL = 1.0
"""At most one refresh per second, however many events arrive."""
WATCH_IDLE_REFRESH = 5.0
"""Without events, a terminal still refreshes this often (ages move on)."""


@app.command()
@_handled
def get(
    ctx: typer.Context,
    name: NameArg,
    watch_: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep the tree up to date until Ctrl-C.")
    ] = False,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Show the rollout, its revisions, their pods and its Services as a tree."""
    conn = connect(_options(ctx, namespace, context, kubeconfig))
    console = _console()
    if not watch_:
        console.print(render(fetch(conn, name)))
        return
    _watch_tree(conn, name, console)


def _watch_tree(conn: Connection, name: str, console: Console) -> None:
    snapshot = fetch(conn, name)  # errors for a wrong name come before any watch starts
    changed = threading.Event()
    stop = threading.Event()
    watchers = _start_watchers(conn, name, changed, stop)
    try:
        if console.is_terminal:
            with Live(render(snapshot), console=console, auto_refresh=False) as live:
                for view in _views(conn, name, changed, idle_refresh=True):
                    live.update(view, refresh=True)
        else:
            console.print(render(snapshot))
            shown = _plain(console, render(snapshot))
            for view in _views(conn, name, changed, idle_refresh=False):
                text = _plain(console, view)
                if text != shown:
                    shown = text
                    console.print(Text(f"--- {datetime.now(UTC):%H:%M:%S}Z", style="dim"))
                    console.print(view)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for w in watchers:
            w.stop()


def _plain(console: Console, renderable: Any) -> str:
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def _views(conn: Connection, name: str, changed: threading.Event, *, idle_refresh: bool) -> Iterator[Any]:
    """A new tree after each burst of watch events (at most one a second)."""
    last = time.monotonic()
    while True:
        fired = changed.wait(timeout=WATCH_IDLE_REFRESH if idle_refresh else None)
        if not fired and not idle_refresh:
            continue
        delay = last + WATCH_MIN_INTERVAL - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        changed.clear()
        last = time.monotonic()
        try:
            yield render(fetch(conn, name))
        except CliError as exc:
            if "not found" in exc.message:
                raise
            yield Text(f"error: {exc.message} (retrying)", style="red")


def _start_watchers(
    conn: Connection, name: str, changed: threading.Event, stop: threading.Event
) -> list[Any]:
    """One thread per watched kind; each event only marks the view as stale."""
    selector = children_selector(name)
    custom, core = client.CustomObjectsApi(conn.api), client.CoreV1Api(conn.api)
    apps, discovery = client.AppsV1Api(conn.api), client.DiscoveryV1Api(conn.api)
    sources: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
        (
            custom.list_namespaced_custom_object,
            (GROUP, VERSION, conn.namespace, PLURAL),
            {"field_selector": f"metadata.name={name}"},
        ),
        (core.list_namespaced_pod, (conn.namespace,), {"label_selector": selector}),
        (apps.list_namespaced_deployment, (conn.namespace,), {"label_selector": selector}),
        (core.list_namespaced_service, (conn.namespace,), {"label_selector": selector}),
        (discovery.list_namespaced_endpoint_slice, (conn.namespace,), {"label_selector": selector}),
    ]
    watchers = []
    for call, args, kwargs in sources:
        w = new_watch()
        watchers.append(w)
        thread = threading.Thread(
            target=_watch_loop, args=(w, call, args, kwargs, changed, stop), daemon=True
        )
        thread.start()
    return watchers


def _watch_loop(
    w: Any,
    call: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    changed: threading.Event,
    stop: threading.Event,
) -> None:
    resource_version: str | None = None
    while not stop.is_set():
        try:
            extra = {"resource_version": resource_version} if resource_version else {}
            for event in w.stream(
                call, *args, timeout_seconds=60, _request_timeout=(5, 70), **kwargs, **extra
            ):
                raw = event.get("raw_object") or {}
                resource_version = (raw.get("metadata") or {}).get("resourceVersion") or resource_version
                changed.set()
                if stop.is_set():
                    return
        except ApiException as exc:
            if exc.status == 410:
                resource_version = None
            changed.set()
            stop.wait(1.0)
        except (urllib3.exceptions.HTTPError, ConnectionError, ValueError):
            changed.set()
            stop.wait(1.0)


# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------
@app.command()
@_handled
def status(
    ctx: typer.Context,
    name: NameArg,
    timeout: Annotated[
        str,
        typer.Option(
            "--timeout", metavar="DURATION", help="Give up after this long (e.g. 90s, 5m); 0 waits forever."
        ),
    ] = "10m",
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Wait until the rollout is Healthy (exit 0); Degraded, Aborted or a timeout exit non-zero."""
    seconds = parse_timeout(timeout)
    conn = connect(_options(ctx, namespace, context, kubeconfig))
    final = wait_until_healthy(conn, name, seconds, lambda line: typer.echo(line))
    typer.echo(final)


# ---------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------
@app.command("plan")
@_handled
def plan_command(
    ctx: typer.Context,
    filename: Annotated[
        str,
        typer.Option(
            "--filename",
            "-f",
            metavar="FILE",
            help="Manifest with a ZeroDowntimeRollout ('-' reads stdin).",
            show_default=False,
        ),
    ],
    offline: Annotated[
        bool, typer.Option("--offline", help="Do not read the cluster: assume a previous revision serves.")
    ] = False,
    output: Annotated[str, typer.Option("--output", "-o", metavar="FORMAT", help="table or json.")] = "table",
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Show the steps the rollout in FILE will take, with pod counts and serving capacity at each.

    The operator's planner is run against a model cluster in which every pod becomes ready at
    once and every pause is promoted, starting from the rollout as it is in the cluster (or, with
    --offline or no reachable cluster, from a previous revision serving spec.replicas pods).
    """
    if output not in ("table", "json"):
        raise CliError(f"--output {output!r}: use table or json", exit_code=EXIT_USAGE)
    options = _options(ctx, namespace, context, kubeconfig)
    documents = load_manifests(filename)
    results = [_plan_one(doc, filename, options, offline) for doc in documents]
    if output == "json":
        typer.echo(json.dumps([simulation_json(sim) for sim in results], indent=2))
    else:
        console = _console()
        for i, sim in enumerate(results):
            if i:
                console.print()
            print_simulation(console, sim)
    if not all(sim.healthy or sim.outcome.startswith("Paused") for sim in results):
        raise typer.Exit(EXIT_FAILED)


def load_manifests(filename: str) -> list[dict[str, Any]]:
    """The ZeroDowntimeRollout documents of a manifest file (or stdin)."""
    where = "stdin" if filename == "-" else filename
    try:
        text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
    except OSError as exc:
        raise CliError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CliError(f"{where}: not valid YAML{at}: {problem}") from None
    items: list[dict[str, Any]] = []
    for doc in documents:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            items.extend(d for d in doc["items"] if isinstance(d, dict))
        elif isinstance(doc, dict):
            items.append(doc)
    rollouts = [d for d in items if d.get("kind") == KIND]
    if not rollouts:
        kinds = ", ".join(sorted({str(d.get("kind")) for d in items})) or "nothing"
        raise CliError(f"{where}: no {KIND} in it (found: {kinds})")
    return rollouts


def validate_manifest(doc: dict[str, Any], where: str) -> tuple[str, ZeroDowntimeRolloutSpec]:
    """The rollout's name and parsed spec, or ``CliError`` listing every problem by field."""
    problems: list[str] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: must be {API_VERSION} (got {doc.get('apiVersion')!r})")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        problems.append("metadata.name: required")
        name = "?"
    else:
        problems += check_rollout_name(name)
    spec: ZeroDowntimeRolloutSpec | None = None
    try:
        spec = parse_spec(doc.get("spec"))
    except SpecError as exc:
        problems += exc.messages
    if spec is not None:
        problems += readiness_problems(spec)
    if problems or spec is None:
        lines = "\n".join(f"  {p}" for p in problems)
        raise CliError(f'{where}: {SINGULAR} "{name}" is not valid:\n{lines}')
    return name, spec


def _plan_one(doc: dict[str, Any], filename: str, options: KubeOptions, offline: bool) -> Simulation:
    where = "stdin" if filename == "-" else filename
    name, spec = validate_manifest(doc, where)
    file_namespace = (doc.get("metadata") or {}).get("namespace")
    if options.namespace and file_namespace and options.namespace != file_namespace:
        raise CliError(
            f'{where}: the namespace of {SINGULAR} "{name}" ("{file_namespace}") does not match '
            f'--namespace "{options.namespace}"',
            exit_code=EXIT_USAGE,
        )
    options = KubeOptions(
        namespace=file_namespace or options.namespace, context=options.context, kubeconfig=options.kubeconfig
    )
    now = datetime.now(UTC)
    assumed = f"a previous revision serving {spec.replicas} pods (assumed)"
    if offline:
        status, observed = assumed_previous(spec, now)
        return simulate(name, spec, status, observed, start=f"offline: {assumed}", now=now)
    try:
        conn = connect(options)
        obj = find_rollout(conn, name)
    except CliError as exc:
        _note(f"{exc.message}; planning offline from {assumed}")
        status, observed = assumed_previous(spec, now)
        return simulate(name, spec, status, observed, start=f"offline: {assumed}", now=now)
    where_in = f'namespace "{conn.namespace}"' + (f", context {conn.context}" if conn.context else "")
    if obj is None:
        status, observed = first_deployment()
        return simulate(
            name,
            spec,
            status,
            observed,
            start=f"first deployment: not in the cluster yet ({where_in})",
            now=now,
        )
    try:
        with api_errors(conn, name=name):
            observed, _ = observe(conn.api, obj, spec)
    except CliError as exc:
        _note(f"cannot read the children of {name}: {exc.message}; planning from {assumed}")
        status, observed = assumed_previous(spec, now)
        return simulate(name, spec, status, observed, start=f"offline: {assumed}", now=now)
    current = parse_status(obj.get("status"))
    return simulate(name, spec, current, observed, start=f"the cluster's current state ({where_in})", now=now)


def _strategy_text(spec: ZeroDowntimeRolloutSpec) -> str:
    strategy = spec.strategy
    if strategy.type == "RollingUpdate":
        params = strategy.effective_rolling_update
        return f"RollingUpdate, maxSurge {params.max_surge}, maxUnavailable {params.max_unavailable}"
    if strategy.type == "BlueGreen":
        params_bg = strategy.effective_blue_green
        auto = "automatic" if params_bg.auto_promotion else "manual"
        return f"BlueGreen, {auto} promotion, scaleDownDelaySeconds {params_bg.scale_down_delay_seconds}"
    params_c = strategy.effective_canary
    return f"Canary, maxSurge {params_c.max_surge}, {len(params_c.steps or [])} steps"


def print_simulation(console: Console, sim: Simulation) -> None:
    console.print(
        Text(
            f"Plan for {SINGULAR} {sim.name}: {sim.spec.replicas} replicas, {_strategy_text(sim.spec)}",
            style="bold",
        )
    )
    console.print(Text(f"from {sim.start}"))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for title, justify in (
        ("step", "right"),
        ("action", "left"),
        ("old pods", "right"),
        ("new pods", "right"),
        ("total", "right"),
        ("serving", "right"),
        ("min serving", "right"),
    ):
        table.add_column(title, justify=justify, no_wrap=title != "action")  # type: ignore[arg-type]
    for row in sim.rows:
        low = row.step > 0 and row.min_serving < sim.baseline
        table.add_row(
            str(row.step),
            Text(row.action),
            str(row.old_pods),
            str(row.new_pods),
            str(row.total),
            str(row.serving),
            Text(str(row.min_serving), style="red" if low else ""),
        )
    console.print(table)
    console.print(Text(capacity_summary(sim)))
    for note in sim.notes:
        console.print(Text(f"note: {note}", style="dim"))
    style = "green" if sim.healthy else ("cyan" if sim.outcome.startswith("Paused") else "red")
    console.print(Text(f"result: {sim.outcome}", style=style))


def capacity_summary(sim: Simulation) -> str:
    peak = f"at most {sim.peak_pods} pods at once"
    if not sim.rows or sim.rows[0].serving == 0:
        return f"first deployment: nothing serves before it; {peak}"
    return f"serving never below {sim.lowest_serving} pods (the strategy keeps at least {sim.floor}); {peak}"


def simulation_json(sim: Simulation) -> dict[str, Any]:
    return {
        "name": sim.name,
        "strategy": sim.spec.strategy.type,
        "replicas": sim.spec.replicas,
        "start": sim.start,
        "outcome": sim.outcome,
        "healthy": sim.healthy,
        "notes": sim.notes,
        "floor": sim.floor,
        "steps": [
            {
                "step": r.step,
                "action": r.action,
                "oldPods": r.old_pods,
                "newPods": r.new_pods,
                "total": r.total,
                "serving": r.serving,
                "minServing": r.min_serving,
            }
            for r in sim.rows
        ],
    }


def main() -> None:
    """Console-script entry point (``kubectl-zdr``, run by kubectl as ``kubectl zdr``)."""
    app(prog_name="kubectl zdr")
