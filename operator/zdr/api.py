"""The ZeroDowntimeRollout API (zdr.io/v1alpha1): spec and status models, every default, validation.

This module owns the contract users write and the operator reports:

- ``ZeroDowntimeRolloutSpec`` and its parts, with camelCase aliases so they round-trip
  Kubernetes JSON (``model_validate(body["spec"])`` / ``to_k8s()``);
- ``ZeroDowntimeRolloutStatus`` (what the operator writes into ``status``; Kopf's own
  ``status.kopf`` is ignored when parsing);
- ``Command``: the request object the kubectl plugin writes into the ``zdr.io/command``
  annotation (commands never write into ``spec``);
- ``parse_spec``: structural validation plus the cross-field rules, raising ``SpecError`` whose
  messages each name the field path and the fix;
- all defaults: the numbers are the ``DEFAULT_*`` constants below, used by the field
  declarations; defaults that depend on other fields (selector from the template labels, Service
  ports from the container ports, Service names from the rollout name, the strategy block of the
  chosen type) are resolved in ``_complete`` and in ``service_names``, nowhere else.

The CRD schema in crds/ is generated from these models by ``zdr.crd``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    ValidationError,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

GROUP = "zdr.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ZeroDowntimeRollout"
PLURAL = "zerodowntimerollouts"
SINGULAR = "zerodowntimerollout"
SHORT_NAMES = ("zdr", "rollout", "rollouts")

COMMAND_ANNOTATION = "zdr.io/command"
"""Annotation on the rollout through which the kubectl plugin requests a command (JSON of ``Command``)."""
RESTARTED_AT_ANNOTATION = "zdr.io/restartedAt"
"""Pod template annotation of a revision's Deployment set by ``restart``: its pods are replaced one by one."""

# Label keys the operator owns; users may not set them in the template or the selector.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ROLLOUT = "zdr.io/rollout"
LABEL_REVISION = "zdr.io/revision"
LABEL_SERVICE_ROLE = "zdr.io/service-role"
LABEL_SERVING = "zdr.io/serving"
"""On every pod: "true", or "false" once the pod is chosen to go (zdr's Services select "true")."""
RESERVED_LABELS = (LABEL_ROLLOUT, LABEL_REVISION, LABEL_SERVING)
RETIRING_ANNOTATION = "zdr.io/retiring-since"
"""On a pod chosen to go: when it was taken out of the Services."""
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"

# ---------------------------------------------------------------------------------------------
# Defaults: the only place their values are written down.
# ---------------------------------------------------------------------------------------------
DEFAULT_REPLICAS = 1
DEFAULT_PRE_STOP_SECONDS = 5
DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
DEFAULT_SHUTDOWN_ALLOWANCE_SECONDS = 10
"""Time after SIGTERM granted to an app whose template does not set terminationGracePeriodSeconds."""
DEFAULT_MIN_READY_SECONDS = 0
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_REVISION_HISTORY_LIMIT = 3
DEFAULT_STRATEGY: Final = "RollingUpdate"
DEFAULT_ROLLING_MAX_SURGE = "25%"
DEFAULT_ROLLING_MAX_UNAVAILABLE = 0
DEFAULT_CANARY_MAX_SURGE = "25%"
DEFAULT_AUTO_PROMOTION = True
DEFAULT_AUTO_PROMOTION_SECONDS = 0
DEFAULT_SCALE_DOWN_DELAY_SECONDS = 30
"""The warm window: the previous revision stays at full size, out of traffic, this long after a rollout."""
DEFAULT_MAX_RESTARTS = 3
DEFAULT_ABORT_ON_CRASH_LOOP = True
DEFAULT_CHECK_INTERVAL = "10s"
DEFAULT_CHECK_FAILURE_LIMIT = 0
DEFAULT_CHECK_COUNT = 1
DEFAULT_HTTP_PATH = "/"
DEFAULT_HTTP_TIMEOUT_SECONDS = 2
DEFAULT_PROMETHEUS_TIMEOUT_SECONDS = 5
MAX_CHECKS = 16
DEFAULT_SERVICE_TYPE: Final = "ClusterIP"
DEFAULT_SESSION_AFFINITY: Final = "None"
DEFAULT_PROTOCOL: Final = "TCP"
PREVIEW_SUFFIX = "-preview"
CANARY_SUFFIX = "-canary"
STABLE_SUFFIX = "-stable"

MAX_STEPS = 64
MAX_PORTS = 32
MAX_NAME_LENGTH = 63  # a Service name is a DNS-1035 label


class SpecError(ValueError):
    """The spec cannot be accepted. ``messages`` are ``"<field path>: <problem>; <fix>"`` lines."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = list(messages)
        super().__init__("; ".join(self.messages))


# ---------------------------------------------------------------------------------------------
# Scalar types with Kubernetes semantics
# ---------------------------------------------------------------------------------------------
_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?(ms|s|m|h))+$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_HTTP_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")

INT_OR_STRING_MAX_LENGTH = 16
"""Longest string accepted where an int-or-string is (bounds the cost of the CRD's CEL rules)."""

INT_OR_STRING_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
    "maxLength": INT_OR_STRING_MAX_LENGTH,
}


def _int_or_percent(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "int_or_percent",
            "must be an integer >= 0 or a percentage like '25%' (got {got})",
            {"got": repr(value)},
        )
    if isinstance(value, int):
        if value < 0:
            raise PydanticCustomError("int_or_percent", "must not be negative (got {got})", {"got": value})
        return value
    if not _PERCENT.match(value):
        raise PydanticCustomError(
            "int_or_percent",
            "must be an integer >= 0 or a percentage from '0%' to '100%' (got {got})",
            {"got": repr(value)},
        )
    return value


def _duration(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "duration",
            "must be seconds (an integer) or a duration like '30s', '5m', '1h30m' (got {got})",
            {"got": repr(value)},
        )
    if isinstance(value, int):
        if value < 0:
            raise PydanticCustomError("duration", "must not be negative (got {got})", {"got": value})
        return value
    if len(value) > INT_OR_STRING_MAX_LENGTH or not _DURATION.match(value):
        raise PydanticCustomError(
            "duration",
            "must be a duration like '30s', '5m' or '1h30m', or seconds as an integer (got {got})",
            {"got": repr(value)},
        )
    return value


def _int_or_name(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PydanticCustomError(
            "int_or_name", "must be a port number or a port name (got {got})", {"got": repr(value)}
        )
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise PydanticCustomError(
                "int_or_name", "must be between 1 and 65535 (got {got})", {"got": value}
            )
        return value
    if not (_IANA_SVC_NAME.match(value) and len(value) <= 15 and re.search("[a-z]", value)):
        raise PydanticCustomError(
            "int_or_name",
            "must be a port number or a container port name (lowercase, at most 15 characters) (got {got})",
            {"got": repr(value)},
        )
    return value


IntOrPercent = Annotated[int | str, PlainValidator(_int_or_percent), WithJsonSchema(INT_OR_STRING_SCHEMA)]
"""An absolute number of pods or a percentage of ``spec.replicas`` (Kubernetes' IntOrString)."""

Duration = Annotated[int | str, PlainValidator(_duration), WithJsonSchema(INT_OR_STRING_SCHEMA)]
"""Seconds as an integer, or a Go-style duration string such as ``30s``, ``5m``, ``1h30m``."""

PortRef = Annotated[int | str, PlainValidator(_int_or_name), WithJsonSchema(INT_OR_STRING_SCHEMA)]
"""A port number or the name of a container port."""


def _utc_seconds(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time serializes."""
    return _utc_seconds(value).strftime("%Y-%m-%dT%H:%M:%SZ")


Time = Annotated[
    datetime,
    AfterValidator(_utc_seconds),
    PlainSerializer(format_time, return_type=str, when_used="json"),
]
"""A timestamp stored in status: UTC, whole seconds (what the API server keeps)."""


def duration_seconds(value: int | str) -> float:
    """Seconds of a ``Duration`` value (already validated)."""
    if isinstance(value, int):
        return float(value)
    return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(value))


def resolve_int_or_percent(value: int | str, total: int, *, round_up: bool) -> int:
    """Kubernetes' GetScaledValueFromIntOrPercent: a percentage of ``total``, rounded as asked."""
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    scaled, remainder = divmod(percent * total, 100)
    return scaled + (1 if round_up and remainder else 0)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """Kubernetes JSON: camelCase keys, unset (None) fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class LabelSelectorRequirement(_Model):
    """One set-based requirement of a label selector."""

    key: str = Field(description="The label key the requirement applies to.", min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[str] | None = Field(
        default=None, description="Values for In and NotIn (non-empty); empty for Exists and DoesNotExist."
    )


class LabelSelector(_Model):
    """A metav1.LabelSelector: matchLabels and matchExpressions are ANDed."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels a pod must carry, key: value."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Set-based requirements a pod's labels must meet."
    )


class ServicePort(_Model):
    """A port of the Services the operator creates."""

    name: str | None = Field(
        default=None, description="Port name (required when there is more than one port).", max_length=15
    )
    port: StrictInt = Field(description="Port the Service listens on.", ge=1, le=65535)
    target_port: PortRef | None = Field(
        default=None, description="Container port number or name traffic goes to. Defaults to port."
    )
    protocol: Literal["TCP", "UDP", "SCTP"] = Field(default=DEFAULT_PROTOCOL, description="TCP, UDP or SCTP.")
    node_port: StrictInt | None = Field(
        default=None, description="Fixed node port (type NodePort or LoadBalancer only).", ge=1, le=65535
    )
    app_protocol: str | None = Field(
        default=None, description="Application protocol hint, e.g. http or kubernetes.io/h2c."
    )


class ServiceSpec(_Model):
    """The Service that carries the application's traffic, and the extra Services a strategy adds.

    RollingUpdate and Canary: the Service selects every pod of the rollout, so traffic follows
    ready pods. Canary adds <name>-canary (update revision only) and <name>-stable (stable
    revision only) for direct tests. BlueGreen: the Service is the active one and selects one
    revision; the preview Service selects the revision waiting for promotion.
    """

    name: str | None = Field(
        default=None, description="Service name. Defaults to the rollout's name.", max_length=MAX_NAME_LENGTH
    )
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default=DEFAULT_SERVICE_TYPE, description="ClusterIP, NodePort or LoadBalancer."
    )
    ports: list[ServicePort] | None = Field(
        default=None,
        description="Service ports. Defaults to one port per container port of the template.",
        min_length=1,
        max_length=MAX_PORTS,
    )
    session_affinity: Literal["None", "ClientIP"] = Field(
        default=DEFAULT_SESSION_AFFINITY,
        description="ClientIP keeps a client on the same pod (sticky sessions) while that pod serves.",
    )
    session_affinity_timeout_seconds: StrictInt | None = Field(
        default=None,
        description="How long ClientIP affinity lasts (Kubernetes default 10800).",
        ge=1,
        le=86400,
    )
    annotations: dict[str, str] | None = Field(
        default=None, description="Annotations for the Services, e.g. load balancer settings."
    )


StopSignal = Literal["SIGTERM", "SIGQUIT", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH"]


class DrainSpec(_Model):
    """How pods leave service: preStop sleep, then SIGTERM, within a grace period.

    Every container without its own preStop hook gets a native sleep preStop of preStopSeconds,
    so a retiring pod keeps serving while its removal reaches every proxy.
    """

    pre_stop_seconds: StrictInt = Field(
        default=DEFAULT_PRE_STOP_SECONDS,
        description="Seconds of the injected preStop sleep (native sleep action); 0 disables the injection.",
        ge=0,
        le=3600,
    )
    termination_grace_period_seconds: StrictInt = Field(
        default=DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS,
        description=(
            "Pod termination grace period. Raised when smaller than the preStop sleep plus the app's own "
            f"shutdown time (the template's terminationGracePeriodSeconds, or "
            f"{DEFAULT_SHUTDOWN_ALLOWANCE_SECONDS} seconds)."
        ),
        ge=1,
        le=86400,
    )
    max_request_seconds: StrictInt = Field(
        default=0,
        description=(
            "Longest request the app may be serving when it is told to stop (long polls, slow uploads, "
            "server streams): the grace period then covers preStopSeconds plus this, so no such request is "
            "cut. A terminationGracePeriodSeconds (here or in the template) shorter than that is refused. "
            "0: not declared."
        ),
        ge=0,
        le=86400,
    )
    stop_signal: StopSignal | None = Field(
        default=None,
        description=(
            "Signal the app is stopped with after the preStop sleep, instead of the image's (SIGTERM unless "
            "the image says otherwise); for apps whose SIGTERM is a fast shutdown, e.g. SIGQUIT for nginx "
            "(graceful: finish requests, then exit). Set as each container's lifecycle.stopSignal, which "
            "needs Kubernetes 1.33 or later with the ContainerStopSignals feature gate; the rollout stops "
            "with a clear condition where the API server drops the field."
        ),
    )


WARM_STANDBY = (
    "Seconds the replaced revision is kept warm after the rollout completes: its pods that took traffic "
    "drain at once (their connections and WebSockets move to the new revision), then fresh pods that never "
    "take traffic stand by at full size, so an undo moves all traffic back without waiting for pods. Costs a "
    "second set of pods for that long; 0 turns the warm standby off. An abort or undo keeps no standby."
)


class RollingUpdateStrategy(_Model):
    """Replace pods a few at a time; an old pod goes only after its replacement serves."""

    max_surge: IntOrPercent = Field(
        default=DEFAULT_ROLLING_MAX_SURGE,
        description="Pods allowed above replicas during the update: a number or a percentage (rounded up).",
    )
    max_unavailable: IntOrPercent = Field(
        default=DEFAULT_ROLLING_MAX_UNAVAILABLE,
        description=(
            "Serving pods allowed below replicas during the update: a number or a percentage (rounded down). "
            "0 keeps full serving capacity."
        ),
    )
    scale_down_delay_seconds: StrictInt = Field(
        default=DEFAULT_SCALE_DOWN_DELAY_SECONDS,
        description=WARM_STANDBY,
        ge=0,
    )


class BlueGreenStrategy(_Model):
    """Run the new revision at full size behind a preview Service, then switch the active Service at once."""

    preview_service: str | None = Field(
        default=None,
        description="Name of the preview Service. Defaults to <service name>-preview.",
        max_length=MAX_NAME_LENGTH,
    )
    auto_promotion: StrictBool = Field(
        default=DEFAULT_AUTO_PROMOTION,
        description=(
            "Switch traffic automatically once every preview pod serves; "
            "false waits for `kubectl zdr promote`."
        ),
    )
    auto_promotion_seconds: StrictInt = Field(
        default=DEFAULT_AUTO_PROMOTION_SECONDS,
        description="Seconds every preview pod must have served before the automatic switch.",
        ge=0,
    )
    scale_down_delay_seconds: StrictInt = Field(
        default=DEFAULT_SCALE_DOWN_DELAY_SECONDS,
        description=WARM_STANDBY,
        ge=0,
    )


# ---------------------------------------------------------------------------------------------
# Analysis: health gates and measurements that abort a rollout
# ---------------------------------------------------------------------------------------------
class ValueRange(_Model):
    """Bounds a measured number must lie within (both inclusive); at least one is set."""

    min: float | None = Field(default=None, description="Lowest passing value.")
    max: float | None = Field(default=None, description="Highest passing value.")

    def contains(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"[{self.min:g}, {self.max:g}]"
        if self.min is not None:
            return f">= {self.min:g}"
        return f"<= {self.max:g}"


HttpTarget = Literal["Pods", "Service"]


class HttpCheck(_Model):
    """An HTTP GET; it passes on an expected status code and, with jsonPath, a number in the JSON body
    within range.

    Target Pods (the default) sends the GET to every ready pod of the revision under test by pod IP
    (one failing pod fails the measurement); Service sends it to the Service that selects that
    revision alone (Canary: <service>-canary, BlueGreen: the preview Service) by its ClusterIP;
    url sends it to any address instead.
    """

    url: str | None = Field(
        default=None,
        description="Absolute http:// or https:// URL to GET instead of a target.",
        max_length=2048,
    )
    target: HttpTarget | None = Field(
        default=None, description="Pods (default) or Service: what the GET reaches when url is absent."
    )
    path: str = Field(default=DEFAULT_HTTP_PATH, description="Path (and query) of the GET.", max_length=1024)
    port: PortRef | None = Field(
        default=None,
        description=(
            "Pods: container port number or name (default: the first container port). Service: Service "
            "port number or name (default: the first port)."
        ),
    )
    timeout_seconds: StrictInt = Field(
        default=DEFAULT_HTTP_TIMEOUT_SECONDS, description="Seconds to wait for each answer.", ge=1, le=30
    )
    status_codes: list[StrictInt] | None = Field(
        default=None, description="Status codes that pass. Default: any 2xx.", max_length=16
    )
    json_path: str | None = Field(
        default=None,
        description="Dotted path to a number in the JSON body, e.g. stats.errorRate or items.0.value.",
        max_length=256,
    )
    range: ValueRange | None = Field(
        default=None, description="With jsonPath: the bounds the number must lie within."
    )


class PrometheusCheck(_Model):
    """A Prometheus instant query; it passes when every returned sample lies within range.

    An empty result (or NaN) is no data: it neither passes nor fails.
    """

    address: str = Field(
        description="Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.",
        max_length=2048,
    )
    query: str = Field(
        description=(
            "PromQL. {{revision}}, {{rollout}} and {{namespace}} are replaced by the revision under test, "
            "the rollout's name and namespace."
        ),
        min_length=1,
        max_length=4096,
    )
    range: ValueRange = Field(description="The bounds every sample must lie within.")
    timeout_seconds: StrictInt = Field(
        default=DEFAULT_PROMETHEUS_TIMEOUT_SECONDS, description="Seconds to wait for the answer.", ge=1, le=60
    )


class AnalysisCheck(_Model):
    """One measurement taken every interval; more than failureLimit failures abort the rollout.

    A measurement that cannot be taken (no answer, unreadable result) fails: a check that cannot
    tell is not a pass. Results are kept in status.analysis.
    """

    name: str = Field(description="Name of the check, unique in its list.", min_length=1, max_length=63)
    interval: Duration = Field(
        default=DEFAULT_CHECK_INTERVAL, description="Time between measurements (at least 1s)."
    )
    initial_delay: Duration | None = Field(
        default=None, description="Wait this long after the check starts before the first measurement."
    )
    failure_limit: StrictInt = Field(
        default=DEFAULT_CHECK_FAILURE_LIMIT,
        description="Failed measurements tolerated; one more aborts the rollout.",
        ge=0,
    )
    count: StrictInt = Field(
        default=DEFAULT_CHECK_COUNT,
        description=(
            "Analysis steps: the step passes once this many measurements passed. Background checks measure "
            "for as long as the rollout runs."
        ),
        ge=1,
        le=1000,
    )
    http: HttpCheck | None = Field(default=None, description="An HTTP GET (exactly one of http, prometheus).")
    prometheus: PrometheusCheck | None = Field(
        default=None, description="A Prometheus query (exactly one of http, prometheus)."
    )


class AnalysisSpec(_Model):
    """Health gates and checks that abort a running rollout whose new revision misbehaves.

    They apply while a rollout runs (a first deployment has nothing to go back to). An abort sends
    all traffic back to the stable revision: it is scaled back up first, Services switch only to it
    once every one of its pods serves, and only then is the new revision scaled to 0.
    """

    max_restarts: StrictInt | None = Field(
        default=DEFAULT_MAX_RESTARTS,
        description="A pod of the new revision whose containers restarted more often than this aborts the rollout.",
        ge=0,
    )
    abort_on_crash_loop: StrictBool = Field(
        default=DEFAULT_ABORT_ON_CRASH_LOOP,
        description="A pod of the new revision waiting in CrashLoopBackOff aborts the rollout.",
    )
    max_unready_seconds: StrictInt | None = Field(
        default=None,
        description=(
            "A pod of the new revision not ready for this many seconds aborts the rollout. Absent: only "
            "progressDeadlineSeconds limits the wait."
        ),
        ge=1,
    )
    checks: list[AnalysisCheck] | None = Field(
        default=None,
        description="Checks measured in the background for as long as a rollout runs (every strategy).",
        max_length=MAX_CHECKS,
    )


class StepAnalysis(_Model):
    """A canary step that measures the new revision at the current weight; it passes once every check
    took its count of passing measurements."""

    checks: list[AnalysisCheck] = Field(
        description="The checks of this step.", min_length=1, max_length=MAX_CHECKS
    )


class PauseStep(_Model):
    """Hold the current weight."""

    duration: Duration | None = Field(
        default=None,
        description=(
            "How long to pause: seconds or a duration like 30s, 5m. Absent: until `kubectl zdr promote`."
        ),
    )


class CanaryStep(_Model):
    """One canary step: exactly one of setWeight, pause or analysis."""

    set_weight: StrictInt | None = Field(
        default=None,
        description="Percent of the serving pods that run the new revision; pods are added within maxSurge.",
        ge=0,
        le=100,
    )
    pause: PauseStep | None = Field(default=None, description="Pause at the current weight.")
    analysis: StepAnalysis | None = Field(
        default=None, description="Measure the new revision at the current weight before the next step."
    )


class CanaryStrategy(_Model):
    """Shift the share of serving pods to the new revision step by step.

    The weight is the ratio of serving pods behind the Service, which selects both revisions.
    Pods are added gradually (never more than replicas + maxSurge in total) and an old pod is
    removed only after a new one serves. After the last step the new revision takes all traffic.
    """

    max_surge: IntOrPercent = Field(
        default=DEFAULT_CANARY_MAX_SURGE,
        description="Pods allowed above replicas while shifting: a number or a percentage (rounded up).",
    )
    steps: list[CanaryStep] | None = Field(
        default=None,
        description="The steps, in order. Absent or empty: go straight to 100% (still within maxSurge).",
        max_length=MAX_STEPS,
    )
    scale_down_delay_seconds: StrictInt = Field(
        default=DEFAULT_SCALE_DOWN_DELAY_SECONDS,
        description=WARM_STANDBY,
        ge=0,
    )


StrategyType = Literal["RollingUpdate", "BlueGreen", "Canary"]


class Strategy(_Model):
    """How a new revision replaces the current one."""

    type: StrategyType = Field(default=DEFAULT_STRATEGY, description="RollingUpdate, BlueGreen or Canary.")
    rolling_update: RollingUpdateStrategy | None = Field(
        default=None, description="Parameters of RollingUpdate (only with type RollingUpdate)."
    )
    blue_green: BlueGreenStrategy | None = Field(
        default=None, description="Parameters of BlueGreen (only with type BlueGreen)."
    )
    canary: CanaryStrategy | None = Field(
        default=None, description="Parameters of Canary (only with type Canary)."
    )

    @property
    def effective_rolling_update(self) -> RollingUpdateStrategy:
        return self.rolling_update or RollingUpdateStrategy()

    @property
    def effective_blue_green(self) -> BlueGreenStrategy:
        return self.blue_green or BlueGreenStrategy()

    @property
    def effective_canary(self) -> CanaryStrategy:
        return self.canary or CanaryStrategy()


class ServiceRole(StrEnum):
    """The Services of a rollout, by what they are for.

    MAIN: the Service named by spec.service.name, carrying the application's traffic (the active
    Service of BlueGreen). PREVIEW: BlueGreen's preview. CANARY and STABLE: Canary's direct-test
    Services selecting only the update or only the stable revision.
    """

    MAIN = "main"
    PREVIEW = "preview"
    CANARY = "canary"
    STABLE = "stable"


@dataclass(frozen=True, order=True)
class ServiceTarget:
    """What a Service selects: every pod of the rollout (``revision is None``) or one revision.

    Turned into a label selector by ``zdr.revision.service_selector`` and back by
    ``zdr.revision.selector_target``, so the planner never handles label maps.
    """

    revision: str | None = None

    @property
    def is_all(self) -> bool:
        return self.revision is None

    @classmethod
    def pinned(cls, revision: str) -> ServiceTarget:
        return cls(revision)

    def __str__(self) -> str:
        return "all revisions" if self.revision is None else f"revision {self.revision}"


ALL_REVISIONS = ServiceTarget()


STRATEGY_SERVICE_ROLES: dict[str, tuple[ServiceRole, ...]] = {
    "RollingUpdate": (ServiceRole.MAIN,),
    "BlueGreen": (ServiceRole.MAIN, ServiceRole.PREVIEW),
    "Canary": (ServiceRole.MAIN, ServiceRole.CANARY, ServiceRole.STABLE),
}


class ZeroDowntimeRolloutSpec(_Model):
    """The desired application: its pods, its Service, and how new versions roll out."""

    replicas: StrictInt = Field(default=DEFAULT_REPLICAS, description="Number of serving pods.", ge=0)
    selector: LabelSelector | None = Field(
        default=None,
        description="Which pods belong to the rollout. Defaults to the template's labels. Immutable.",
    )
    template: dict[str, Any] = Field(
        description=(
            "The pod template (a PodTemplateSpec, as in a Deployment): metadata.labels and spec.containers."
        )
    )
    service: ServiceSpec = Field(
        default_factory=ServiceSpec, description="The Service(s) in front of the pods."
    )
    drain: DrainSpec = Field(default_factory=DrainSpec, description="Graceful shutdown of retiring pods.")
    min_ready_seconds: StrictInt = Field(
        default=DEFAULT_MIN_READY_SECONDS,
        description="Seconds a new pod must be ready before it counts as available.",
        ge=0,
    )
    progress_deadline_seconds: StrictInt = Field(
        default=DEFAULT_PROGRESS_DEADLINE_SECONDS,
        description=(
            "Seconds without progress after which a running rollout is aborted: all traffic goes back to "
            "the stable revision (a first deployment is reported Stalled)."
        ),
        ge=1,
    )
    revision_history_limit: StrictInt = Field(
        default=DEFAULT_REVISION_HISTORY_LIMIT,
        description="Old revisions kept (scaled to 0) for rollback.",
        ge=0,
    )
    paused: StrictBool = Field(
        default=False,
        description="Hold the rollout where it is (the GitOps way to pause); scaling still applies.",
    )
    allow_missing_readiness_probe: StrictBool = Field(
        default=False,
        description=(
            "Accept containers without a readinessProbe. Without one a pod counts as serving as soon as it "
            "starts, so traffic may reach it before the app is up."
        ),
    )
    strategy: Strategy = Field(default_factory=Strategy, description="RollingUpdate, BlueGreen or Canary.")
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec, description="Health gates and background checks while a rollout runs."
    )

    def to_k8s(self) -> dict[str, Any]:
        return super().to_k8s()

    @property
    def template_labels(self) -> dict[str, str]:
        metadata = self.template.get("metadata") or {}
        labels = metadata.get("labels") or {}
        return {str(k): str(v) for k, v in labels.items()}

    @property
    def effective_selector(self) -> LabelSelector:
        return self.selector or LabelSelector(match_labels=self.template_labels)

    @property
    def service_roles(self) -> tuple[ServiceRole, ...]:
        """The Services this strategy uses; others that the rollout owns are removed."""
        return STRATEGY_SERVICE_ROLES[self.strategy.type]

    def service_names(self, rollout_name: str) -> dict[ServiceRole, str]:
        """Names of every Service role (the naming defaults live here)."""
        main = self.service.name or rollout_name
        preview = self.strategy.effective_blue_green.preview_service or main + PREVIEW_SUFFIX
        return {
            ServiceRole.MAIN: main,
            ServiceRole.PREVIEW: preview,
            ServiceRole.CANARY: main + CANARY_SUFFIX,
            ServiceRole.STABLE: main + STABLE_SUFFIX,
        }


Spec = ZeroDowntimeRolloutSpec

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
CommandVerb = Literal["promote", "abort", "retry", "pause", "resume", "undo", "restart"]


class Command(_Model):
    """A request written by ``kubectl zdr VERB`` into the ``zdr.io/command`` annotation.

    The operator handles a command once: it records the command's ``id`` in
    ``status.lastCommand`` and ignores the annotation while the ids match. A newer command
    replaces an older one that was not handled yet (the annotation holds one request).
    """

    id: str = Field(
        description="Unique id of the request (the plugin uses a timestamp plus random suffix).", min_length=1
    )
    verb: CommandVerb = Field(description="promote, abort, retry, pause, resume, undo or restart.")
    full: StrictBool = Field(default=False, description="promote: skip every remaining step.")
    to_revision: StrictInt | None = Field(
        default=None, description="undo: the revision number to go back to.", ge=1
    )
    requested_at: Time | None = Field(default=None, description="When the request was made.")
    requested_by: str | None = Field(default=None, description="Who asked, for the record.")


def parse_command(text: str) -> Command:
    """Read the ``zdr.io/command`` annotation; ``ValueError`` when it is not a valid command."""
    try:
        return Command.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"annotation {COMMAND_ANNOTATION}: not a valid command: {exc}") from exc


def command_annotation(command: Command) -> str:
    """The annotation value for ``command`` (compact JSON)."""
    return json.dumps(command.to_k8s(), separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------
class _StatusModel(_Model):
    # status is read back from the API server, which may hold fields of other writers (Kopf).
    model_config = ConfigDict(extra="ignore")


ConditionStatus = Literal["True", "False", "Unknown"]
Phase = Literal["Healthy", "Progressing", "Paused", "Degraded", "Aborted"]


class Condition(_StatusModel):
    """A metav1.Condition."""

    type: str = Field(
        description="Condition type: Ready, Reconciling, Stalled, Available, Progressing, Paused."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(default="", description="Human-readable details.")
    last_transition_time: Time = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The generation the condition was set for.", ge=0
    )


class RevisionRecord(_StatusModel):
    """One revision of the rollout: a pod template hash with its Deployment <rollout>-<hash>."""

    name: str = Field(description="Revision hash (the zdr.io/revision label).")
    revision: int = Field(description="Revision number, increasing; reusing a template renumbers it.")
    created_at: Time = Field(description="When the revision was first rolled out.")
    retired_at: Time | None = Field(
        default=None, description="When it stopped being the serving revision (starts the scale-down delay)."
    )
    drained_at: Time | None = Field(
        default=None,
        description=(
            "When, after it was retired, it was first seen without a pod: every pod that took traffic had "
            "drained, so pods it has from then on are a fresh warm standby."
        ),
    )


class CommandRecord(_StatusModel):
    """The last command the operator handled."""

    id: str = Field(description="Id of the request.")
    verb: str = Field(description="The verb requested.")
    result: Literal["Accepted", "Rejected"] = Field(description="Accepted or Rejected.")
    message: str = Field(default="", description="What the operator did with it.")
    handled_at: Time = Field(description="When it was handled.")


class AbortRecord(_StatusModel):
    """Why a rollout was aborted. The rollout stays aborted for that revision until `kubectl zdr retry`
    or a new template."""

    revision: str = Field(description="Hash of the aborted revision (the template's at the time).")
    reason: str = Field(
        description=(
            "RolloutAborted (the abort command), ProgressDeadlineExceeded, CrashLoopBackOff, TooManyRestarts, "
            "ReadinessTimeout or AnalysisFailed."
        )
    )
    message: str = Field(default="", description="What happened.")
    aborted_at: Time = Field(description="When the abort began.")
    completed_at: Time | None = Field(
        default=None,
        description="When every pod served the stable revision again and the aborted revision had no pods left.",
    )


class RollbackRecord(_StatusModel):
    """An undo: the cluster serves an earlier revision although spec.template still describes another.

    It holds while spec.template stays the one it was undone from; a new template rolls out as
    usual (from the revision rolled back to), and `kubectl zdr retry` rolls the template out again.
    """

    revision: str = Field(description="Hash of the revision rolled back to.")
    from_revision: str = Field(description="Hash of spec.template's revision when the undo was requested.")
    requested_at: Time = Field(description="When the undo was handled.")
    completed_at: Time | None = Field(
        default=None, description="When every pod served the revision rolled back to."
    )


class RestartRecord(_StatusModel):
    """A restart of the stable revision's pods (one at a time, a replacement serving before a pod goes)."""

    revision: str = Field(description="Hash of the revision whose pods are replaced.")
    requested_at: Time = Field(description="When the restart was requested (the restartedAt value).")
    completed_at: Time | None = Field(default=None, description="When every pod had been replaced.")


class AnalysisResult(_StatusModel):
    """The measurements of one check against one revision."""

    name: str = Field(description="The check's name.")
    step: int | None = Field(
        default=None, description="Canary step index of a step analysis; absent: background."
    )
    revision: str = Field(description="Hash of the revision measured.")
    started_at: Time = Field(description="When the check started (initialDelay counts from here).")
    measurements: int = Field(default=0, description="Measurements taken, including those without data.")
    successes: int = Field(default=0, description="Measurements that passed.")
    failures: int = Field(default=0, description="Measurements that failed.")
    last_value: str | None = Field(default=None, description="The last measured value.")
    message: str | None = Field(default=None, description="What the last measurement found.")
    last_measured_at: Time | None = Field(default=None, description="When the last measurement was taken.")
    last_success_at: Time | None = Field(default=None, description="When a measurement last passed.")


class ZeroDowntimeRolloutStatus(_StatusModel):
    """What the operator observed and decided.

    Every rollout decision is recomputed from this plus the observed cluster."""

    observed_generation: int | None = Field(
        default=None, description="The metadata.generation this status reflects."
    )
    phase: Phase | None = Field(
        default=None, description="Healthy, Progressing, Paused, Degraded or Aborted."
    )
    message: str | None = Field(default=None, description="What the rollout is doing or waiting for.")
    stable_revision: str | None = Field(
        default=None, description="Hash of the revision that serves when no rollout runs."
    )
    update_revision: str | None = Field(
        default=None, description="Hash of the revision of the current template."
    )
    current_step_index: int | None = Field(default=None, description="Canary: index of the current step.")
    canary_weight: int | None = Field(
        default=None, description="Canary: percent of serving pods on the update revision."
    )
    replicas: int | None = Field(
        default=None,
        description="Pods that serve or are about to (not terminating), over every revision but the warm standby.",
    )
    ready_replicas: int | None = Field(
        default=None, description="Ready pods of every revision but the warm standby."
    )
    updated_replicas: int | None = Field(default=None, description="Pods of the update revision.")
    available_replicas: int | None = Field(
        default=None, description="Available pods of every revision but the warm standby."
    )
    standby_replicas: int | None = Field(
        default=None,
        description=(
            "Pods of the warm standby: fresh pods of the replaced revision, out of traffic, kept for "
            "scaleDownDelaySeconds so that an undo moves traffic at once. Not counted in replicas."
        ),
    )
    selector: str | None = Field(
        default=None, description="The pod selector as a string (scale subresource)."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Reconciling, Stalled, Available, Progressing, Paused."
    )
    revisions: list[RevisionRecord] = Field(
        default_factory=list, description="Known revisions, oldest first."
    )
    step_started_at: Time | None = Field(default=None, description="Canary: when the current step began.")
    preview_ready_at: Time | None = Field(
        default=None,
        description="BlueGreen: when every preview pod first served (starts autoPromotionSeconds).",
    )
    promote_requested: bool | None = Field(
        default=None, description="A promote request waits for the preview to serve (BlueGreen)."
    )
    paused_by_command: bool | None = Field(default=None, description="Paused by `kubectl zdr pause`.")
    progressed_at: Time | None = Field(
        default=None, description="Last time the rollout made progress (for progressDeadlineSeconds)."
    )
    last_command: CommandRecord | None = Field(default=None, description="The last command handled.")
    abort: AbortRecord | None = Field(default=None, description="Set while the rollout is aborted.")
    rollback: RollbackRecord | None = Field(
        default=None,
        description="Set while an undo holds the cluster on an earlier revision than spec.template.",
    )
    restart: RestartRecord | None = Field(
        default=None, description="The last restart of the stable revision."
    )
    analysis: list[AnalysisResult] = Field(
        default_factory=list, description="Results of the checks measuring the running rollout."
    )

    def to_patch(self) -> dict[str, Any]:
        """A JSON merge patch for ``status``: unset fields are sent as null so stale values go away, at
        the top level and in records (lists carry no nulls: a merge patch replaces them whole)."""
        patch: dict[str, Any] = {(info.alias or name): None for name, info in type(self).model_fields.items()}
        patch.update(self.to_k8s())
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, BaseModel):
                # A record replaced by another: its unset fields must go too.
                patch[info.alias or name] = value.model_dump(mode="json", by_alias=True)
        return patch

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def revision_record(self, name: str | None) -> RevisionRecord | None:
        return next((r for r in self.revisions if r.name == name), None)


Status = ZeroDowntimeRolloutStatus


def parse_status(raw: Mapping[str, Any] | None) -> ZeroDowntimeRolloutStatus:
    """The status the operator wrote last. Unreadable status counts as empty: the planner then
    rebuilds what it needs from the observed children."""
    if not raw:
        return ZeroDowntimeRolloutStatus()
    try:
        return ZeroDowntimeRolloutStatus.model_validate(dict(raw))
    except ValidationError:
        return ZeroDowntimeRolloutStatus()


# ---------------------------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------------------------
def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy ``selector`` (metav1.LabelSelector semantics)."""
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions or []:
        present = req.key in labels
        values = req.values or []
        if req.operator == "In" and not (present and labels[req.key] in values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def selector_string(selector: LabelSelector) -> str:
    """The selector in kubectl's string syntax (what the scale subresource's labelSelectorPath holds)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for req in selector.match_expressions or []:
        if req.operator == "In":
            parts.append(f"{req.key} in ({','.join(sorted(req.values or []))})")
        elif req.operator == "NotIn":
            parts.append(f"{req.key} notin ({','.join(sorted(req.values or []))})")
        elif req.operator == "Exists":
            parts.append(req.key)
        else:
            parts.append(f"!{req.key}")
    return ",".join(parts)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def parse_spec(raw: Any) -> ZeroDowntimeRolloutSpec:
    """Validate ``raw`` (the ``spec`` of a ZeroDowntimeRollout) and resolve the contextual defaults.

    Raises ``SpecError`` listing every problem as ``"spec.<path>: <problem>; <fix>"``.
    """
    if not isinstance(raw, Mapping):
        raise SpecError([f"spec: must be an object (got {type(raw).__name__})"])
    try:
        spec = ZeroDowntimeRolloutSpec.model_validate(dict(raw))
    except ValidationError as exc:
        messages = [_describe(err) for err in exc.errors()]
        template = raw.get("template")
        if isinstance(template, Mapping) and not any(m.startswith("spec.template") for m in messages):
            messages += _template_problems(template)
        raise SpecError(messages) from None
    problems = _semantic_problems(spec)
    if problems:
        raise SpecError(problems)
    return _complete(spec)


def check_rollout_name(name: str) -> list[str]:
    """Problems with the rollout's own name (it becomes a label value and part of child names)."""
    if len(name) > MAX_NAME_LENGTH - 11:
        return [
            f"metadata.name: at most {MAX_NAME_LENGTH - 11} characters, so <name>-<revision hash> stays a "
            f"valid name (got {len(name)})"
        ]
    if not _DNS1123_LABEL.match(name):
        return [f"metadata.name: must be a DNS label (lowercase letters, digits, '-') (got {name!r})"]
    return []


def _complete(spec: ZeroDowntimeRolloutSpec) -> ZeroDowntimeRolloutSpec:
    """Fill in the defaults that depend on other fields."""
    update: dict[str, Any] = {}
    if spec.selector is None:
        update["selector"] = LabelSelector(match_labels=spec.template_labels)
    if spec.service.ports is None:
        update["service"] = spec.service.model_copy(update={"ports": _ports_from_containers(spec.template)})
    kind = spec.strategy.type
    if kind == "RollingUpdate" and spec.strategy.rolling_update is None:
        update["strategy"] = spec.strategy.model_copy(update={"rolling_update": RollingUpdateStrategy()})
    elif kind == "BlueGreen" and spec.strategy.blue_green is None:
        update["strategy"] = spec.strategy.model_copy(update={"blue_green": BlueGreenStrategy()})
    elif kind == "Canary" and spec.strategy.canary is None:
        update["strategy"] = spec.strategy.model_copy(update={"canary": CanaryStrategy()})
    return spec.model_copy(update=update) if update else spec


def _containers(template: Mapping[str, Any]) -> list[Any]:
    pod_spec = template.get("spec")
    if not isinstance(pod_spec, Mapping):
        return []
    containers = pod_spec.get("containers")
    return list(containers) if isinstance(containers, list) else []


def _ports_from_containers(template: Mapping[str, Any]) -> list[ServicePort]:
    ports: list[ServicePort] = []
    for container in _containers(template):
        for port in container.get("ports") or []:
            number = port["containerPort"]
            name = port.get("name") or f"port-{number}"
            ports.append(
                ServicePort(
                    name=name,
                    port=number,
                    target_port=port.get("name") or number,
                    protocol=port.get("protocol") or DEFAULT_PROTOCOL,  # validated by _template_problems
                )
            )
    return ports


def _semantic_problems(spec: ZeroDowntimeRolloutSpec) -> list[str]:
    problems: list[str] = []
    problems += _template_problems(spec.template)
    problems += _selector_problems(spec)
    problems += _service_problems(spec)
    problems += _strategy_problems(spec.strategy)
    problems += _analysis_problems(spec)
    problems += _drain_problems(spec)
    if spec.progress_deadline_seconds <= spec.min_ready_seconds:
        problems.append(
            "spec.progressDeadlineSeconds: must be greater than spec.minReadySeconds "
            f"(got {spec.progress_deadline_seconds} <= {spec.min_ready_seconds}); "
            "raise it or lower minReadySeconds"
        )
    return problems


def _drain_problems(spec: ZeroDowntimeRolloutSpec) -> list[str]:
    """A declared request bound the grace period the user fixed cannot cover."""
    drain = spec.drain
    if drain.max_request_seconds == 0:
        return []
    need = drain.pre_stop_seconds + drain.max_request_seconds
    problems = []
    if (
        "termination_grace_period_seconds" in drain.model_fields_set
        and drain.termination_grace_period_seconds < need
    ):
        problems.append(
            f"spec.drain.terminationGracePeriodSeconds: {drain.termination_grace_period_seconds} cannot cover "
            f"drain.preStopSeconds ({drain.pre_stop_seconds}) + drain.maxRequestSeconds "
            f"({drain.max_request_seconds}); raise it to at least {need}, or leave it out and zdr sizes it"
        )
    pod_spec = spec.template.get("spec")
    own = pod_spec.get("terminationGracePeriodSeconds") if isinstance(pod_spec, Mapping) else None
    if isinstance(own, int) and not isinstance(own, bool) and own < drain.max_request_seconds:
        problems.append(
            f"spec.template.spec.terminationGracePeriodSeconds: {own} (the app's time after the stop signal) "
            f"is shorter than drain.maxRequestSeconds ({drain.max_request_seconds}); raise it to at least "
            f"{drain.max_request_seconds} or remove it"
        )
    return problems


def _template_problems(template: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    path = "spec.template"
    metadata = template.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        problems.append(f"{path}.metadata: must be an object")
        metadata = {}
    labels = (metadata or {}).get("labels")
    if labels is not None:
        if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            problems.append(f"{path}.metadata.labels: must map strings to strings, e.g. {{app: web}}")
        else:
            for key in RESERVED_LABELS:
                if key in labels:
                    problems.append(f"{path}.metadata.labels.{key}: reserved for the operator; remove it")
    pod_spec = template.get("spec")
    if not isinstance(pod_spec, Mapping):
        problems.append(
            f"{path}.spec: required: the pod spec with at least one container; add spec.containers"
        )
        return problems
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        problems.append(
            f"{path}.spec.containers: required: at least one container with a name and an image; "
            "add e.g. [{name: web, image: example/web:1.0}]"
        )
        return problems
    seen: set[str] = set()
    for i, container in enumerate(containers):
        cpath = f"{path}.spec.containers[{i}]"
        if not isinstance(container, Mapping):
            problems.append(f"{cpath}: must be an object with name and image")
            continue
        name = container.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{cpath}.name: required; add a container name such as 'web'")
        elif not _DNS1123_LABEL.match(name) or len(name) > 63:
            problems.append(
                f"{cpath}.name: must be a DNS label (lowercase letters, digits, '-') (got {name!r})"
            )
        elif name in seen:
            problems.append(
                f"{cpath}.name: duplicate container name {name!r}; container names must be unique"
            )
        else:
            seen.add(name)
        image = container.get("image")
        if not isinstance(image, str) or not image.strip():
            problems.append(f"{cpath}.image: required; add the container image, e.g. example/web:1.0")
        problems += _container_port_problems(cpath, container.get("ports"))
    restart = pod_spec.get("restartPolicy")
    if restart not in (None, "Always"):
        problems.append(
            f"{path}.spec.restartPolicy: must be Always for long-running pods (got {restart!r}); remove it"
        )
    grace = pod_spec.get("terminationGracePeriodSeconds")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int) or grace < 0):
        problems.append(f"{path}.spec.terminationGracePeriodSeconds: must be an integer >= 0 (got {grace!r})")
    return problems


def _container_port_problems(cpath: str, ports: Any) -> list[str]:
    if ports is None:
        return []
    if not isinstance(ports, list):
        return [f"{cpath}.ports: must be a list"]
    problems: list[str] = []
    for j, port in enumerate(ports):
        ppath = f"{cpath}.ports[{j}]"
        if not isinstance(port, Mapping):
            problems.append(f"{ppath}: must be an object with containerPort")
            continue
        number = port.get("containerPort")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
            problems.append(
                f"{ppath}.containerPort: must be a port number between 1 and 65535 (got {number!r})"
            )
        protocol = port.get("protocol")
        if protocol not in (None, "TCP", "UDP", "SCTP"):
            problems.append(f"{ppath}.protocol: must be one of TCP, UDP, SCTP (got {protocol!r})")
        name = port.get("name")
        if name is not None and not (
            isinstance(name, str) and _IANA_SVC_NAME.match(name) and len(name) <= 15
        ):
            problems.append(f"{ppath}.name: must be a lowercase name of at most 15 characters (got {name!r})")
    return problems


def _selector_problems(spec: ZeroDowntimeRolloutSpec) -> list[str]:
    labels = spec.template_labels
    selector = spec.selector
    if selector is None:
        if not labels:
            return [
                "spec.template.metadata.labels: required when spec.selector is omitted "
                "(the selector defaults to them); add e.g. {app: web}"
            ]
        return []
    problems: list[str] = []
    if not selector.match_labels and not selector.match_expressions:
        problems.append("spec.selector: must not be empty; add matchLabels, e.g. {matchLabels: {app: web}}")
    keys = set(selector.match_labels or {}) | {r.key for r in selector.match_expressions or []}
    for key in sorted(keys & set(RESERVED_LABELS)):
        problems.append(f"spec.selector: label {key} is reserved for the operator; remove it")
    for i, req in enumerate(selector.match_expressions or []):
        if req.operator in ("In", "NotIn") and not req.values:
            problems.append(
                f"spec.selector.matchExpressions[{i}].values: required for operator {req.operator}"
            )
        if req.operator in ("Exists", "DoesNotExist") and req.values:
            problems.append(
                f"spec.selector.matchExpressions[{i}].values: must be empty for operator {req.operator}"
            )
    if not problems and not selector_matches(selector, labels):
        problems.append(
            "spec.selector: does not match spec.template.metadata.labels; the template's labels must "
            "satisfy the selector"
        )
    return problems


def _service_problems(spec: ZeroDowntimeRolloutSpec) -> list[str]:
    problems: list[str] = []
    service = spec.service
    longest_suffix = max(len(PREVIEW_SUFFIX), len(CANARY_SUFFIX), len(STABLE_SUFFIX))
    if service.name is not None:
        if not _DNS1035.match(service.name):
            problems.append(
                "spec.service.name: must start with a letter and hold only lowercase letters, digits and '-' "
                f"(got {service.name!r})"
            )
        elif len(service.name) > MAX_NAME_LENGTH - longest_suffix:
            problems.append(
                f"spec.service.name: at most {MAX_NAME_LENGTH - longest_suffix} characters so the derived "
                f"Service names (<name>{STABLE_SUFFIX} ...) stay valid (got {len(service.name)})"
            )
    preview = spec.strategy.blue_green.preview_service if spec.strategy.blue_green else None
    if preview is not None:
        if not _DNS1035.match(preview):
            problems.append(
                "spec.strategy.blueGreen.previewService: must start with a letter and hold only lowercase "
                f"letters, digits and '-' (got {preview!r})"
            )
        elif preview == service.name:
            problems.append(
                "spec.strategy.blueGreen.previewService: must differ from spec.service.name; "
                "remove it to get <service>-preview"
            )
    ports = service.ports
    if ports is None:
        if not any(c.get("ports") for c in _containers(spec.template) if isinstance(c, Mapping)):
            problems.append(
                "spec.service.ports: required when no container of spec.template declares ports; add e.g. "
                "[{name: http, port: 80, targetPort: 8080}]"
            )
        else:
            names = [p.get("name") for c in _containers(spec.template) for p in c.get("ports") or []]
            named = [n for n in names if n]
            if len(set(named)) != len(named):
                problems.append(
                    "spec.service.ports: the container ports it defaults to have duplicate names; "
                    "list the Service ports explicitly"
                )
    else:
        seen: set[str] = set()
        for i, port in enumerate(ports):
            if len(ports) > 1 and not port.name:
                problems.append(f"spec.service.ports[{i}].name: required when there is more than one port")
            if port.name:
                if not _IANA_SVC_NAME.match(port.name):
                    problems.append(
                        f"spec.service.ports[{i}].name: lowercase letters, digits and '-' only "
                        f"(got {port.name!r})"
                    )
                if port.name in seen:
                    problems.append(f"spec.service.ports[{i}].name: duplicate port name {port.name!r}")
                seen.add(port.name)
            if port.node_port is not None and service.type == "ClusterIP":
                problems.append(
                    f"spec.service.ports[{i}].nodePort: only allowed with type NodePort or LoadBalancer; "
                    "remove it or change spec.service.type"
                )
    if service.session_affinity_timeout_seconds is not None and service.session_affinity != "ClientIP":
        problems.append(
            "spec.service.sessionAffinityTimeoutSeconds: only allowed with sessionAffinity ClientIP; "
            "remove it or set sessionAffinity: ClientIP"
        )
    return problems


def _strategy_problems(strategy: Strategy) -> list[str]:
    problems: list[str] = []
    blocks = {"RollingUpdate": "rollingUpdate", "BlueGreen": "blueGreen", "Canary": "canary"}
    present = {
        "RollingUpdate": strategy.rolling_update is not None,
        "BlueGreen": strategy.blue_green is not None,
        "Canary": strategy.canary is not None,
    }
    for kind, block in blocks.items():
        if present[kind] and kind != strategy.type:
            problems.append(
                f"spec.strategy.{block}: only allowed when spec.strategy.type is {kind} (type is "
                f"{strategy.type}); remove it or set type: {kind}"
            )
    rolling = strategy.rolling_update
    if rolling is not None and _is_zero(rolling.max_surge) and _is_zero(rolling.max_unavailable):
        problems.append(
            "spec.strategy.rollingUpdate: maxSurge and maxUnavailable cannot both be 0 (no pod could ever be "
            "replaced); set maxSurge to 1 or more"
        )
    canary = strategy.canary
    if canary is not None:
        if _is_zero(canary.max_surge):
            problems.append(
                "spec.strategy.canary.maxSurge: must allow at least one extra pod (got "
                f"{canary.max_surge!r}); set it to 1 or a percentage such as 25%"
            )
        for i, step in enumerate(canary.steps or []):
            kinds = [
                name
                for name, value in (
                    ("setWeight", step.set_weight),
                    ("pause", step.pause),
                    ("analysis", step.analysis),
                )
                if value is not None
            ]
            if len(kinds) != 1:
                got = " and ".join(kinds) if kinds else "none"
                problems.append(
                    f"spec.strategy.canary.steps[{i}]: set exactly one of setWeight, pause or analysis "
                    f"(got {got}); split it into separate steps"
                )
            if step.analysis is not None:
                problems += _checks_problems(
                    f"spec.strategy.canary.steps[{i}].analysis.checks", step.analysis.checks, strategy.type
                )
    return problems


def _analysis_problems(spec: ZeroDowntimeRolloutSpec) -> list[str]:
    return _checks_problems("spec.analysis.checks", spec.analysis.checks or [], spec.strategy.type)


def _checks_problems(path: str, checks: Sequence[AnalysisCheck], strategy: str) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for i, check in enumerate(checks):
        cpath = f"{path}[{i}]"
        if not _DNS1123_LABEL.match(check.name):
            problems.append(
                f"{cpath}.name: must be a DNS label (lowercase letters, digits, '-') (got {check.name!r})"
            )
        elif check.name in seen:
            problems.append(f"{cpath}.name: duplicate check name {check.name!r}; names must be unique")
        seen.add(check.name)
        if duration_seconds(check.interval) < 1:
            problems.append(f"{cpath}.interval: must be at least 1s (got {check.interval!r})")
        kinds = [name for name, value in (("http", check.http), ("prometheus", check.prometheus)) if value]
        if len(kinds) != 1:
            got = " and ".join(kinds) if kinds else "neither"
            problems.append(f"{cpath}: set exactly one of http or prometheus (got {got})")
        if check.http is not None:
            problems += _http_check_problems(f"{cpath}.http", check.http, strategy)
        if check.prometheus is not None:
            prom = check.prometheus
            if not _HTTP_URL.match(prom.address):
                problems.append(
                    f"{cpath}.prometheus.address: must be an http:// or https:// URL (got {prom.address!r})"
                )
            problems += _range_problems(f"{cpath}.prometheus.range", prom.range)
    return problems


def _http_check_problems(path: str, http: HttpCheck, strategy: str) -> list[str]:
    problems: list[str] = []
    if http.url is not None:
        if http.target is not None:
            problems.append(f"{path}: set url or target, not both")
        if not _HTTP_URL.match(http.url):
            problems.append(f"{path}.url: must be an absolute http:// or https:// URL (got {http.url!r})")
    elif http.target == "Service" and strategy == "RollingUpdate":
        problems.append(
            f"{path}.target: RollingUpdate has no Service that selects the new revision alone; "
            "use target: Pods"
        )
    if not http.path.startswith("/"):
        problems.append(f"{path}.path: must start with '/' (got {http.path!r})")
    for code in http.status_codes or []:
        if not 100 <= code <= 599:
            problems.append(f"{path}.statusCodes: {code} is not an HTTP status code")
    if (http.json_path is None) != (http.range is None):
        problems.append(f"{path}: jsonPath and range go together; set both or neither")
    if http.range is not None:
        problems += _range_problems(f"{path}.range", http.range)
    return problems


def _range_problems(path: str, bounds: ValueRange) -> list[str]:
    if bounds.min is None and bounds.max is None:
        return [f"{path}: set min, max or both"]
    if bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
        return [f"{path}: min {bounds.min:g} is above max {bounds.max:g}"]
    return []


def _is_zero(value: int | str) -> bool:
    return value == 0 or value == "0%"


# ---------------------------------------------------------------------------------------------
# Turning pydantic's errors into "path: problem; fix"
# ---------------------------------------------------------------------------------------------
def _path(loc: Sequence[int | str]) -> str:
    out = "spec"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _describe(err: Mapping[str, Any]) -> str:
    loc = tuple(err["loc"])
    path = _path(loc)
    kind = err["type"]
    got = err.get("input")
    ctx = err.get("ctx") or {}
    field = _field_at(loc)
    if kind == "missing":
        hint = _first_sentence(field.description) if field and field.description else ""
        return f"{path}: required" + (f"; add it ({hint})" if hint else "")
    if kind == "extra_forbidden":
        siblings = _sibling_aliases(loc)
        close = difflib.get_close_matches(str(loc[-1]), siblings, n=1)
        fix = f"did you mean {close[0]}?" if close else f"known fields: {', '.join(sorted(siblings))}"
        return f"{path}: unknown field; remove it ({fix})"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _bounds(field)
        if low is not None and high is not None:
            return f"{path}: must be between {low} and {high} (got {got!r})"
        if low is not None:
            return f"{path}: must be at least {low} (got {got!r})"
        return f"{path}: must be at most {high} (got {got!r})"
    if kind == "literal_error":
        options = _literal_options(field)
        listed = ", ".join(options) if options else str(ctx.get("expected", ""))
        return f"{path}: must be one of {listed} (got {got!r})"
    simple = {
        "int_type": "must be an integer",
        "bool_type": "must be true or false",
        "string_type": "must be a string",
        "dict_type": "must be an object",
        "model_type": "must be an object",
        "model_attributes_type": "must be an object",
        "list_type": "must be a list",
        "too_short": "must not be empty",
        "string_too_long": "is too long",
        "too_long": "has too many items",
    }
    if kind in simple:
        extra = ""
        if kind == "string_too_long":
            extra = f" (at most {ctx.get('max_length')} characters)"
        elif kind == "too_long":
            extra = f" (at most {ctx.get('max_length')})"
        elif kind == "too_short":
            extra = ""
        else:
            extra = f" (got {got!r})"
        return f"{path}: {simple[kind]}{extra}"
    return f"{path}: {err['msg']}"


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (through Optional, list, Annotated), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_by_alias(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _field_at(loc: Sequence[int | str]) -> FieldInfo | None:
    model: type[BaseModel] | None = ZeroDowntimeRolloutSpec
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return None
        info = _field_by_alias(model, part)
        if info is None:
            return None
        model = _model_in(info.annotation)
    return info


def _sibling_aliases(loc: Sequence[int | str]) -> list[str]:
    parent = _field_at(loc[:-1]) if len(loc) > 1 else None
    model = _model_in(parent.annotation) if parent else ZeroDowntimeRolloutSpec
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _bounds(field: FieldInfo | None) -> tuple[Any, Any]:
    low = high = None
    for meta in field.metadata if field else []:
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    return low, high


def _literal_options(field: FieldInfo | None) -> list[str]:
    if field is None:
        return []
    stack = [field.annotation]
    while stack:
        current = stack.pop()
        if get_origin(current) is Literal:
            return [str(a) for a in get_args(current)]
        stack.extend(get_args(current))
    return []
