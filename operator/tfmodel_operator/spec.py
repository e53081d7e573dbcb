"""TFModel spec -> typed, defaulted dataclasses (same defaults as the CRD schema).

The API server applies the CRD defaults; repeating them here keeps the builders correct
for any input (tests, dry runs) and gives one typed view of the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .server_flags import extra_arg_problems


class SpecError(ValueError):
    """A TFModel spec the CRD schema should have rejected."""


@dataclass(frozen=True)
class VersionPolicy:
    kind: str  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()


@dataclass(frozen=True)
class RolloutStep:
    traffic_percent: int  # 0 in a shadow step
    pause_seconds: int = 60
    shadow_percent: int = 0  # > 0: a shadow step (no real traffic moves)

    @property
    def shadow(self) -> bool:
        return self.shadow_percent > 0


ROLL_BACK, PROMOTE = "RollBack", "Promote"


@dataclass(frozen=True)
class ShadowAnalysis:
    """A shadow step's agreement checks (None: off); faults and latency as Analysis's."""

    min_top1_agreement: float | None = None
    max_abs_diff: float | None = None
    max_abs_diff_ratio: float = 0.0


@dataclass(frozen=True)
class Analysis:
    """How a rollout step is judged (analysis.py); defaults as the CRD's."""

    min_requests: int = 100
    # Relative to stable over the same window (None: that check is off).
    max_fault_ratio_increase: float | None = 0.01
    max_latency_p99_factor: float | None = 2.0
    latency_tolerance_ms: float = 5.0  # p99 differences below this never fail a step
    # Absolute, optional.
    max_error_ratio: float | None = None
    max_latency_p99_ms: float | None = None
    # A step not judged (too few requests, pods not answering) this long after its pause.
    progress_deadline_seconds: int = 600
    on_progress_deadline: str = ROLL_BACK  # ROLL_BACK | PROMOTE
    shadow: ShadowAnalysis = field(default_factory=ShadowAnalysis)


@dataclass(frozen=True)
class Rollout:
    """Automated canary rollout: a change of the stable label walks these steps."""

    steps: tuple[RolloutStep, ...]
    analysis: Analysis = field(default_factory=Analysis)


@dataclass(frozen=True)
class SecretRef:
    """A Secret holding S3 credentials; its keys become the pod's AWS_* env vars."""

    name: str
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class ObjectStore:
    """Where the s3:// models live. One per TFModel: the server reads it from the
    standard AWS SDK environment variables, which are per process."""

    endpoint: str | None = None  # None: AWS S3 itself
    region: str | None = None
    secret_ref: SecretRef | None = None  # None: the pod's own identity (IRSA, node role)
    addressing_style: str = "auto"  # path for stores without virtual-hosted buckets


@dataclass(frozen=True)
class RequestLogging:
    """models[].requestLogging: TF Serving's ModelConfig.logging_config for this model."""

    sampling_rate: float
    filename_prefix: str  # relative to the pod's log directory


@dataclass(frozen=True)
class RequestLogVolume:
    """spec.requestLogging: the volume the logs go to (a directory per pod on it)."""

    volume: dict[str, Any]  # exactly one volume source: persistentVolumeClaim, emptyDir, ...
    max_file_bytes: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    base_path: str  # a directory under /models, or s3://bucket/prefix
    policy: VersionPolicy
    labels: tuple[tuple[str, int], ...]  # sorted by label
    canary_traffic_percent: int | None = None  # None: no split file entry
    shadow_traffic_percent: int | None = None  # None: no shadowPercent in the split file
    rollout: Rollout | None = None
    object_store: ObjectStore | None = None  # storage.s3 of this model
    request_logging: RequestLogging | None = None

    @property
    def on_object_store(self) -> bool:
        return self.base_path.startswith("s3://")


@dataclass(frozen=True)
class Batching:
    max_batch_size: int | None = None
    batch_timeout_micros: int | None = None
    max_enqueued_batches: int | None = None
    num_batch_threads: int | None = None
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool | None = None


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    target_cpu_percent: int


@dataclass(frozen=True)
class ServiceSpec:
    type: str = "ClusterIP"
    grpc_port: int = 8500
    rest_port: int = 8501
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TLS:
    """spec.security.tls: a kubernetes.io/tls Secret (tls.crt, tls.key; ca.crt for mTLS)."""

    secret_name: str
    client_verify: bool = False  # mTLS: clients need a certificate signed by ca.crt
    # The operator's own client certificate for its probes and scrapes (mTLS only).
    probe_client_secret_name: str | None = None


@dataclass(frozen=True)
class TokenSecret:
    """spec.security.tokenSecret: a Secret key holding tokens, one a line."""

    name: str
    key: str = "tokens"


@dataclass(frozen=True)
class Security:
    tls: TLS | None = None
    token: TokenSecret | None = None
    cors: bool = False


# Pod labels and annotations the operator sets: spec.podLabels/podAnnotations may not.
RESERVED_LABELS = frozenset(
    {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"}
)
RESERVED_PREFIX = "serving.tfmodel.io/"
RESERVED_ANNOTATION_PREFIXES = ("prometheus.io/", RESERVED_PREFIX)


@dataclass(frozen=True)
class PodFields:
    """Pod settings real clusters need, passed to the pod template as given."""

    service_account_name: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    affinity: dict[str, Any] | None = None
    topology_spread_constraints: tuple[dict[str, Any], ...] = ()
    priority_class_name: str | None = None
    env: tuple[dict[str, Any], ...] = ()
    extra_args: tuple[str, ...] = ()  # server flags the spec does not model (server_flags.py)


@dataclass(frozen=True)
class TFModelSpec:
    models: tuple[ModelSpec, ...]
    storage: dict[str, Any]  # the /models volume; {} when every model is on s3://
    replicas: int = 1
    image: str = "tfmodel/tfmodel-server:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    resources: dict[str, Any] = field(default_factory=dict)
    gpus: int = 0
    gpu_resource_name: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    batching: Batching | None = None
    poll_interval_seconds: int = 10
    file_system_poll_wait_seconds: int = 1
    allow_unavailable_labels: bool = True
    autoscaling: Autoscaling | None = None
    pdb: dict[str, Any] | None = None
    service: ServiceSpec = field(default_factory=ServiceSpec)
    # s3:// models: the store's settings, and the emptyDir the versions are cached on.
    object_store: ObjectStore | None = None
    model_cache_size_limit: str | None = None
    security: Security = field(default_factory=Security)
    pod: PodFields = field(default_factory=PodFields)
    request_log: RequestLogVolume | None = None

    @property
    def uses_object_store(self) -> bool:
        return any(m.on_object_store for m in self.models)


def _secret_ref(raw: dict[str, Any] | None) -> SecretRef | None:
    if raw is None:
        return None
    return SecretRef(
        name=raw["name"],
        access_key_id_key=raw.get("accessKeyIdKey") or SecretRef.access_key_id_key,
        secret_access_key_key=raw.get("secretAccessKeyKey") or SecretRef.secret_access_key_key,
    )


def _object_store(raw: dict[str, Any]) -> ObjectStore:
    endpoint = raw.get("endpoint") or None
    return ObjectStore(
        endpoint=endpoint,
        region=raw.get("region") or None,
        secret_ref=_secret_ref(raw.get("secretRef")),
        # Non-AWS stores (SeaweedFS, MinIO, Ceph) mostly need path-style requests.
        addressing_style=raw.get("addressingStyle") or ("path" if endpoint else "auto"),
    )


def _s3_base_path(model: str, raw: dict[str, Any]) -> str:
    bucket, prefix = raw.get("bucket") or "", (raw.get("prefix") or "").strip("/")
    if not bucket:
        raise SpecError(f"model {model}: storage.s3.bucket is empty")
    if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
        raise SpecError(f"model {model}: storage.s3.prefix {prefix!r} has an empty, . or .. part")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def _model_storage(raw: dict[str, Any]) -> tuple[str, ObjectStore | None]:
    """(base path, the model's own object store settings) from basePath or storage.s3."""
    name = raw["name"]
    s3 = (raw.get("storage") or {}).get("s3")
    base = raw.get("basePath")
    if (s3 is None) == (base is None):
        raise SpecError(f"model {name}: set exactly one of basePath or storage.s3")
    if s3 is not None:
        return _s3_base_path(name, s3), _object_store(s3)
    assert base is not None
    if not (base.startswith("/models/") or base.startswith("s3://")):
        raise SpecError(
            f"model {name}: basePath {base} must be under /models/ (spec.storage) or s3://"
        )
    return base, None


def _one_object_store(models: tuple[ModelSpec, ...], raw: dict[str, Any] | None) -> ObjectStore:
    """spec.objectStore, or the storage.s3 settings every s3:// model shares."""
    stores = {m.object_store for m in models if m.object_store is not None}
    if raw is not None:
        stores.add(_object_store(raw))
    if len(stores) > 1:
        raise SpecError(
            "every s3:// model of a TFModel must use the same endpoint, region, secretRef "
            "and addressingStyle (the server reads one object store from its environment)"
        )
    return stores.pop() if stores else ObjectStore()


def _policy(raw: dict[str, Any] | None) -> VersionPolicy:
    raw = raw or {"latest": {}}
    kinds = [k for k in ("latest", "all", "specific") if k in raw]
    if len(kinds) != 1:
        raise SpecError("versionPolicy must set exactly one of latest, all or specific")
    kind = kinds[0]
    if kind == "latest":
        return VersionPolicy(
            "latest", num_versions=int((raw["latest"] or {}).get("numVersions", 1))
        )
    if kind == "specific":
        versions = tuple(sorted({int(v) for v in (raw["specific"] or {}).get("versions", [])}))
        if not versions:
            raise SpecError("versionPolicy.specific.versions must list at least one version")
        return VersionPolicy("specific", versions=versions)
    return VersionPolicy("all")


def _model(raw: dict[str, Any]) -> ModelSpec:
    policy = _policy(raw.get("versionPolicy"))
    labels = tuple(sorted((str(k), int(v)) for k, v in (raw.get("versionLabels") or {}).items()))
    if policy.kind == "specific":
        for label, version in labels:
            if version not in policy.versions:
                raise SpecError(
                    f"model {raw['name']}: label {label} names version {version}, "
                    f"which is not in versionPolicy.specific.versions {list(policy.versions)}"
                )
    percent = raw.get("canaryTrafficPercent")
    if percent is not None:
        percent = int(percent)
        if not 0 <= percent <= 100:
            raise SpecError(f"model {raw['name']}: canaryTrafficPercent {percent} is not in 0..100")
        if not {"stable", "canary"} <= dict(labels).keys():
            raise SpecError(
                f"model {raw['name']}: canaryTrafficPercent needs both a stable and a canary "
                "version label"
            )
    shadow = raw.get("shadowTrafficPercent")
    if shadow is not None:
        shadow = int(shadow)
        if not 0 <= shadow <= 100:
            raise SpecError(f"model {raw['name']}: shadowTrafficPercent {shadow} is not in 0..100")
        if not {"stable", "canary"} <= dict(labels).keys() or raw.get("rollout") is not None:
            raise SpecError(
                f"model {raw['name']}: shadowTrafficPercent needs both a stable and a canary "
                "version label (a rollout sets it itself)"
            )
    rollout = _rollout(raw["name"], raw.get("rollout"), policy, dict(labels), percent)
    base_path, object_store = _model_storage(raw)
    return ModelSpec(
        name=raw["name"],
        base_path=base_path,
        policy=policy,
        labels=labels,
        canary_traffic_percent=percent,
        shadow_traffic_percent=shadow,
        rollout=rollout,
        object_store=object_store,
        request_logging=_request_logging(raw["name"], raw.get("requestLogging")),
    )


def _request_logging(model: str, raw: dict[str, Any] | None) -> RequestLogging | None:
    if raw is None:
        return None
    rate = float(raw.get("samplingRate", 0.0))
    if not 0.0 <= rate <= 1.0:
        raise SpecError(f"model {model}: requestLogging.samplingRate {rate} is not in 0..1")
    prefix = str(raw.get("filenamePrefix") or model)
    if prefix.startswith("/") or any(p in ("", ".", "..") for p in prefix.split("/")):
        raise SpecError(
            f"model {model}: requestLogging.filenamePrefix {prefix!r} must be a relative path "
            "without empty, . or .. parts (it is taken in the pod's log directory)"
        )
    return RequestLogging(sampling_rate=rate, filename_prefix=prefix)


LOG_VOLUME_SOURCES = ("persistentVolumeClaim", "emptyDir", "nfs", "csi", "hostPath")


def _request_log_volume(
    models: tuple[ModelSpec, ...], raw: dict[str, Any] | None
) -> RequestLogVolume | None:
    logged = [m.name for m in models if m.request_logging is not None]
    if raw is None:
        if logged:
            raise SpecError(
                f"models {', '.join(logged)} set requestLogging: spec.requestLogging must name "
                "the volume the logs are written to"
            )
        return None
    sources = [k for k in LOG_VOLUME_SOURCES if k in raw]
    if len(sources) != 1:
        raise SpecError(
            "spec.requestLogging must set exactly one volume source of "
            f"{', '.join(LOG_VOLUME_SOURCES)}"
        )
    max_bytes = raw.get("maxFileBytes")
    if max_bytes is not None and int(max_bytes) <= 0:
        raise SpecError(f"spec.requestLogging.maxFileBytes {max_bytes} must be > 0")
    return RequestLogVolume(
        volume={sources[0]: dict(raw[sources[0]] or {})},
        max_file_bytes=int(max_bytes) if max_bytes is not None else None,
    )


def _rollout(
    model: str,
    raw: dict[str, Any] | None,
    policy: VersionPolicy,
    labels: dict[str, int],
    percent: int | None,
) -> Rollout | None:
    if raw is None:
        return None
    steps = tuple(_step(model, s) for s in raw.get("steps") or ())
    if not steps:
        raise SpecError(f"model {model}: rollout.steps must list at least one step")
    shadows = [s.shadow for s in steps]
    if shadows != sorted(shadows, reverse=True):
        raise SpecError(
            f"model {model}: rollout shadow steps (shadowPercent) must come before the steps "
            "that move real traffic (trafficPercent)"
        )
    if "stable" not in labels or "canary" in labels or percent is not None:
        raise SpecError(
            f"model {model}: a rollout needs a stable label and sets the canary label and "
            "the traffic split itself (no canary label, no canaryTrafficPercent)"
        )
    if policy.kind == "latest" and policy.num_versions < 2:
        raise SpecError(
            f"model {model}: a rollout serves two versions at once; versionPolicy latest "
            "needs numVersions >= 2 (or use specific or all)"
        )
    return Rollout(steps=steps, analysis=_analysis(model, raw.get("analysis") or {}))


def _step(model: str, raw: dict[str, Any]) -> RolloutStep:
    traffic, shadow = raw.get("trafficPercent"), raw.get("shadowPercent")
    if (traffic is None) == (shadow is None):
        raise SpecError(
            f"model {model}: a rollout step sets exactly one of trafficPercent (real traffic) "
            "or shadowPercent (a shadow step)"
        )
    key = "trafficPercent" if traffic is not None else "shadowPercent"
    percent = int(raw[key])
    if not 0 < percent <= 100:
        raise SpecError(f"model {model}: rollout.steps {key} {percent} is not in 1..100")
    pause = int(raw.get("pauseSeconds", 60))
    if traffic is not None:
        return RolloutStep(percent, pause)
    return RolloutStep(0, pause, shadow_percent=percent)


def _shadow_analysis(model: str, raw: dict[str, Any]) -> ShadowAnalysis:
    analysis = ShadowAnalysis(
        min_top1_agreement=_number(raw, "minTop1Agreement", None),
        max_abs_diff=_number(raw, "maxAbsDiff", None),
        max_abs_diff_ratio=float(raw.get("maxAbsDiffRatio", 0.0)),
    )
    for name, value in (
        ("minTop1Agreement", analysis.min_top1_agreement),
        ("maxAbsDiffRatio", analysis.max_abs_diff_ratio),
    ):
        if value is not None and not 0.0 <= value <= 1.0:
            raise SpecError(f"model {model}: rollout.analysis.shadow.{name} {value} is not in 0..1")
    if analysis.max_abs_diff is not None and analysis.max_abs_diff < 0:
        raise SpecError(f"model {model}: rollout.analysis.shadow.maxAbsDiff must be >= 0")
    return analysis


def _number(raw: dict[str, Any], key: str, default: float | None) -> float | None:
    return float(raw[key]) if raw.get(key) is not None else default


def _analysis(model: str, raw: dict[str, Any]) -> Analysis:
    compare = bool(raw.get("compareWithStable", True))
    on_deadline = str(raw.get("onProgressDeadline", ROLL_BACK))
    if on_deadline not in (ROLL_BACK, PROMOTE):
        raise SpecError(
            f"model {model}: rollout.analysis.onProgressDeadline must be {ROLL_BACK} or "
            f"{PROMOTE}, not {on_deadline!r}"
        )
    default = Analysis()
    return Analysis(
        min_requests=int(raw.get("minRequests", default.min_requests)),
        max_fault_ratio_increase=(
            _number(raw, "maxFaultRatioIncrease", default.max_fault_ratio_increase)
            if compare
            else None
        ),
        max_latency_p99_factor=(
            _number(raw, "maxLatencyP99Factor", default.max_latency_p99_factor) if compare else None
        ),
        latency_tolerance_ms=float(raw.get("latencyToleranceMs", default.latency_tolerance_ms)),
        max_error_ratio=_number(raw, "maxErrorRatio", None),
        max_latency_p99_ms=_number(raw, "maxLatencyP99Ms", None),
        progress_deadline_seconds=int(
            raw.get("progressDeadlineSeconds", default.progress_deadline_seconds)
        ),
        on_progress_deadline=on_deadline,
        shadow=_shadow_analysis(model, raw.get("shadow") or {}),
    )


def _batching(raw: dict[str, Any] | None) -> Batching | None:
    if raw is None:
        return None
    return Batching(
        max_batch_size=raw.get("maxBatchSize"),
        batch_timeout_micros=raw.get("batchTimeoutMicros"),
        max_enqueued_batches=raw.get("maxEnqueuedBatches"),
        num_batch_threads=raw.get("numBatchThreads"),
        allowed_batch_sizes=tuple(raw.get("allowedBatchSizes") or ()),
        pad_variable_length_inputs=raw.get("padVariableLengthInputs"),
    )


def _autoscaling(raw: dict[str, Any] | None) -> Autoscaling | None:
    if raw is None:
        return None
    return Autoscaling(
        min_replicas=int(raw.get("minReplicas", 1)),
        max_replicas=int(raw["maxReplicas"]),
        target_cpu_percent=int(raw.get("targetCPUUtilizationPercentage", 80)),
    )


def _security(raw: dict[str, Any] | None) -> Security:
    raw = raw or {}
    tls = token = None
    if raw.get("tls") is not None:
        t = raw["tls"]
        if not t.get("secretName"):
            raise SpecError("security.tls.secretName is empty")
        verify = bool(t.get("clientVerify", False))
        probe = t.get("probeClientSecretName") or None
        if verify and probe is None:
            raise SpecError(
                "security.tls.clientVerify needs probeClientSecretName: the kubernetes.io/tls "
                "Secret the operator presents to the servers for its probes and scrapes"
            )
        tls = TLS(t["secretName"], verify, probe)
    if raw.get("tokenSecret") is not None:
        t = raw["tokenSecret"]
        if not t.get("name"):
            raise SpecError("security.tokenSecret.name is empty")
        token = TokenSecret(t["name"], t.get("key") or TokenSecret.key)
    return Security(tls=tls, token=token, cors=bool(raw.get("cors", False)))


def _reserved(kind: str, keys: Any, reserved: frozenset[str], prefixes: tuple[str, ...]) -> None:
    """The CRD's podLabels/podAnnotations rules (for TFModels made under an older CRD)."""
    taken = sorted(k for k in keys if k in reserved or k.startswith(prefixes))
    if taken:
        owned = [*sorted(reserved), *(f"{p}*" for p in prefixes)]
        raise SpecError(f"{kind} {', '.join(taken)}: set by the operator ({', '.join(owned)})")


# Environment variables the operator sets (spec.objectStore): env may not repeat them.
OPERATOR_ENV = frozenset(
    {"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
)


def _pod_fields(raw: dict[str, Any]) -> PodFields:
    labels = {str(k): str(v) for k, v in (raw.get("podLabels") or {}).items()}
    annotations = {str(k): str(v) for k, v in (raw.get("podAnnotations") or {}).items()}
    _reserved("podLabels", labels, RESERVED_LABELS, (RESERVED_PREFIX,))
    _reserved("podAnnotations", annotations, frozenset(), RESERVED_ANNOTATION_PREFIXES)
    env = tuple(dict(e) for e in raw.get("env") or ())
    env_names = [str(e.get("name") or "") for e in env]
    if "" in env_names or len(set(env_names)) != len(env_names):
        raise SpecError(f"env: every variable needs a name, once: {env_names}")
    clash = sorted(set(env_names) & OPERATOR_ENV)
    if clash:
        raise SpecError(f"env {', '.join(clash)}: set by the operator from spec.objectStore")
    extra = tuple(str(a) for a in raw.get("extraArgs") or ())
    problems = extra_arg_problems(extra)
    if problems:
        raise SpecError("; ".join(problems))
    return PodFields(
        service_account_name=raw.get("serviceAccountName") or None,
        annotations=annotations,
        labels=labels,
        affinity=dict(raw["affinity"]) if raw.get("affinity") else None,
        topology_spread_constraints=tuple(
            dict(c) for c in raw.get("topologySpreadConstraints") or ()
        ),
        priority_class_name=raw.get("priorityClassName") or None,
        env=env,
        extra_args=extra,
    )


def parse_spec(raw: dict[str, Any]) -> TFModelSpec:
    """Parse a TFModel `spec` mapping; raises SpecError naming the problem."""
    models = raw.get("models") or []
    if not models:
        raise SpecError("spec.models must list at least one model")
    parsed = tuple(_model(m) for m in models)
    names = [m.name for m in parsed]
    if len(set(names)) != len(names):
        raise SpecError(f"model names must be unique: {names}")
    storage = raw.get("storage") or {}
    local = [m.name for m in parsed if not m.on_object_store]
    if len(storage) > 1 or (local and len(storage) != 1):
        raise SpecError(
            "spec.storage must set exactly one volume source"
            + (f" (models {', '.join(local)} are on it)" if local else "")
        )
    if raw.get("requestLogging") is not None and any(
        e.get("name") == "POD_NAME" for e in raw.get("env") or ()
    ):
        raise SpecError("env POD_NAME: set by the operator for spec.requestLogging")
    on_s3 = any(m.on_object_store for m in parsed)
    object_store = _one_object_store(parsed, raw.get("objectStore")) if on_s3 else None
    cache = raw.get("modelCache") or {}
    svc = raw.get("service") or {}
    return TFModelSpec(
        models=parsed,
        storage=dict(storage),
        replicas=int(raw.get("replicas", 1)),
        image=raw.get("image") or TFModelSpec.image,
        image_pull_policy=raw.get("imagePullPolicy") or TFModelSpec.image_pull_policy,
        resources=dict(raw.get("resources") or {}),
        gpus=int(raw.get("gpus", 0)),
        gpu_resource_name=raw.get("gpuResourceName") or TFModelSpec.gpu_resource_name,
        node_selector=dict(raw.get("nodeSelector") or {}),
        tolerations=tuple(raw.get("tolerations") or ()),
        batching=_batching(raw.get("batching")),
        poll_interval_seconds=int(raw.get("pollIntervalSeconds", 10)),
        file_system_poll_wait_seconds=int(raw.get("fileSystemPollWaitSeconds", 1)),
        allow_unavailable_labels=bool(raw.get("allowVersionLabelsForUnavailableModels", True)),
        autoscaling=_autoscaling(raw.get("autoscaling")),
        pdb=dict(raw["podDisruptionBudget"])
        if raw.get("podDisruptionBudget") is not None
        else None,
        service=ServiceSpec(
            type=svc.get("type", "ClusterIP"),
            grpc_port=int(svc.get("grpcPort", 8500)),
            rest_port=int(svc.get("restPort", 8501)),
            annotations=dict(svc.get("annotations") or {}),
        ),
        object_store=object_store,
        model_cache_size_limit=str(cache["sizeLimit"]) if cache.get("sizeLimit") else None,
        security=_security(raw.get("security")),
        pod=_pod_fields(raw),
        request_log=_request_log_volume(parsed, raw.get("requestLogging")),
    )
