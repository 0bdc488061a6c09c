"""Settings: one object per process, built in ``main()``/lifespan and passed in. No env reads at import.

Environment variables use the prefix ``POSE3D_`` and ``__`` for nesting
(``POSE3D_ENGINE__MAX_BATCH_SIZE=32``); a TOML or YAML file can be given with ``--config``.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from model.joints import JointOrder


class Device(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # no setting is infinite or NaN


class DetectorSettings(_Frozen):
    """The frozen top-down HRNet 2D detector and the optional ONNX person detector."""

    arch: str = Field("w32", description="HRNet preset: w32, w48, or a tiny test preset")
    checkpoint: Path | None = Field(None, description="COCO HRNet checkpoint (official or mmpose format)")
    backbone_checkpoint: Path | None = Field(
        None, description="optional: take the backbone from this file (e.g. a CA-PF best_epoch_*.bin)"
    )
    flip_test: bool = True
    channels_last: bool | None = Field(
        None, description="NHWC HRNet; None = the measured default per device (on for CPU and CUDA)"
    )
    fold_batch_norms: bool = Field(True, description="fold the HRNet's BatchNorms into its convolutions")
    backend: Literal["torch", "onnx", "auto"] = Field(
        "torch",
        description="HRNet runtime: torch, ONNX Runtime (CPU float32), or auto = the measured faster one per device"
        " (ONNX Runtime on the CPU in float32, torch on CUDA; bench/README.md)",
    )
    onnx_path: Path | None = Field(None, description="ONNX HRNet file: read if present, else exported there")
    onnx_cache_dir: Path | None = Field(
        None,
        description="exported graphs (HRNet without onnx_path, P-STMO) cached here, keyed by weights digest, versions"
        " and input shape; None = $XDG_CACHE_HOME/pose3d/onnx (~/.cache/pose3d/onnx), resolved at start-up",
    )
    family: Literal["hrnet", "rtmpose"] = Field(
        "hrnet", description="2D keypoints: HRNet (torch; features for CA-PF) or RTMPose (ONNX; keypoints only)"
    )
    rtmpose_onnx: Path | None = Field(None, description="RTMPose ONNX (family = rtmpose): a file or catalogue name")
    rtmpose_threads: int = Field(
        0, ge=0, le=256, description="RTMPose's onnxruntime intra-op threads (not spinning); 0 = engine.torch_threads"
    )
    person_detector_onnx: Path | None = Field(None, description="YOLOX/RTMDet ONNX person detector")
    person_detector_family: Literal["yolox", "rtmdet"] = Field(
        "yolox", description="input normalisation of the ONNX person detector (YOLOX: raw 0..255; RTMDet: mean/std)"
    )
    person_score_threshold: float = Field(0.5, ge=0.0, le=1.0)
    person_nms_iou: float = Field(0.45, ge=0.0, le=1.0)
    pose_guided_boxes: bool = Field(
        False,
        description="clips/streams: next frame's boxes from this frame's keypoints (service/engine/pose_guide.py)",
    )
    detect_every: int = Field(
        10,
        ge=1,
        le=10_000,
        description="pose-guided: the person detector runs every k frames (not while all of a request's max_people "
        "are tracked)",
    )
    guide_min_score: float = Field(0.3, ge=0.0, le=1.0, description="pose-guided: a lower mean score = track lost")


class InputKind(StrEnum):
    """What a request sends, as far as the default model is concerned."""

    IMAGE = "image"
    CLIP = "clip"
    KEYPOINTS = "keypoints"


class LifterKind(StrEnum):
    PSTMO = "pstmo"
    CAPF = "capf"
    CAPF_TEMPORAL = "capf_temporal"


class ModelSpec(_Frozen):
    """One lifting model a worker serves."""

    kind: LifterKind
    arch: str = Field(description="architecture preset of the lifter (see model presets)")
    checkpoint: Path | None = None
    frames: int = Field(1, ge=1, le=729, description="window length N (1 for single-frame)")
    stride: int = Field(1, ge=1, le=16, description="temporal stride s between window frames")
    flip_test: bool = True
    lift_batch: int | None = Field(
        None, ge=1, le=4096, description="windows per lift forward; None = the measured default per arch and device"
    )
    backend: Literal["torch", "onnx", "auto"] = Field(
        "torch",
        description="P-STMO runtime: torch, ONNX Runtime (CPU float32; exported once, cached in "
        "detector.onnx_cache_dir), or auto = the measured faster one per device (ONNX Runtime on the CPU in float32)",
    )
    joint_order: JointOrder = Field(
        JointOrder.H36M,
        description="joint order the checkpoint was trained in (P-STMO's MPI-INF-3DHP checkpoint: mpi-inf-3dhp); "
        "the engine maps its Human3.6M-17 input to it and the output back. Filled from the weights catalogue "
        "when `checkpoint` names an entry",
    )
    output_unit: Literal["m", "mm"] = Field(
        "m",
        description="unit of the network's 3D output (P-STMO's MPI-INF-3DHP checkpoint: mm); served poses are "
        "always metres. Filled from the weights catalogue when `checkpoint` names an entry",
    )

    @model_validator(mode="after")
    def _pstmo_only_options(self) -> Self:
        if self.kind is not LifterKind.PSTMO and self.joint_order is not JointOrder.H36M:
            raise ValueError(f"joint_order {self.joint_order} is served for P-STMO only; CA-PF reads Human3.6M-17")
        if self.kind is not LifterKind.PSTMO and self.backend == "onnx":
            raise ValueError("backend 'onnx' is served for P-STMO only; CA-PF runs on torch")
        return self


def _default_models() -> dict[str, ModelSpec]:
    return {
        "capf": ModelSpec(kind=LifterKind.CAPF, arch="capf-w32"),
        "pstmo-243": ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-243", frames=243),
    }


MAX_TTL_S: Final = 366 * 86_400.0
"""The longest a stream or a job may live idle (a year): Redis expires a key only after a finite time it can hold in
milliseconds, and ``inf`` is no number of milliseconds."""

CPU_DETECT_BATCH: Final = 8
"""Crops per 2D detector forward on the CPU unless ``engine.detect.max_batch_size`` is set: past 8 a crop costs no
less on the CPU, and on a small network more (bench/README.md "Detector batch on the CPU", docs/overload.md)."""


class StageBatchSettings(_Frozen):
    """One stage's batch limits; ``None`` takes the engine-wide value."""

    max_batch_size: int | None = Field(None, ge=1, le=4096)
    max_delay_ms: float | None = Field(None, ge=0.0, le=1000.0)


class EngineSettings(_Frozen):
    """Dynamic batching knobs (the batcher itself knows nothing of transports)."""

    max_batch_size: int = Field(32, ge=1, le=4096, description="units per batch of every stage without its own")
    max_delay_ms: float = Field(5.0, ge=0.0, le=1000.0)
    decode: StageBatchSettings = Field(StageBatchSettings(), description="decode stage: images per batch")
    detect: StageBatchSettings = Field(
        StageBatchSettings(),
        description="2D detector: people (crops) per forward; unset: at most CPU_DETECT_BATCH (8) on the CPU",
    )
    lift: StageBatchSettings = Field(StageBatchSettings(), description="lifters: windows per forward")
    max_queue: int = Field(
        1024, ge=1, description="units (images, people, windows) a stage queues at most: a memory bound (503 past it)"
    )
    admission: Literal["time", "count"] = Field(
        "time",
        description="time: refuse at once (503 + Retry-After) a request whose expected wait, from the stages' "
        "measured rates, exceeds admission_wait_fraction of its deadline; count: only the max_queue bound",
    )
    admission_wait_fraction: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="share of a request's deadline its expected wait may fill (the rest absorbs estimate error)",
    )
    rate_window_s: float = Field(
        2.0, gt=0.0, le=600.0, description="seconds of batches the measured service rate of a stage averages over"
    )
    request_timeout_s: float = Field(30.0, gt=0.0)
    stream_ttl_s: float = Field(300.0, gt=0.0, le=MAX_TTL_S, description="idle streams expire after this")
    max_streams: int = Field(10_000, ge=1, description="in-memory buffer bound")
    torch_threads: int = Field(
        0, ge=0, le=256, description="intra-op threads of the inference thread; 0 = torch default"
    )

    def stage_batch(self, stage: Literal["decode", "detect", "lift"], device: Device) -> tuple[int, float]:
        """``(max_batch_size, max_delay_ms)`` of ``stage`` on ``device``: its own limits, else the engine-wide
        ones (the detector's on the CPU: at most :data:`CPU_DETECT_BATCH`)."""
        own: StageBatchSettings = getattr(self, stage)
        size = own.max_batch_size if own.max_batch_size is not None else self.max_batch_size
        if stage == "detect" and own.max_batch_size is None and device is Device.CPU:
            size = min(size, CPU_DETECT_BATCH)
        delay = own.max_delay_ms if own.max_delay_ms is not None else self.max_delay_ms
        return size, delay


WORKER_MESSAGE_HEADROOM_BYTES: Final = 1024 * 1024
"""Room in a gateway ↔ worker message beyond the encoded media it carries (options, ids, limits, framing)."""
GRPC_MAX_MESSAGE_BYTES: Final = 2**31 - 1
"""The largest gRPC message limit: gRPC's channel arguments are C ints (one past it cannot even be set)."""


class LimitSettings(_Frozen):
    max_body_bytes: int = Field(
        64 * 1024 * 1024,
        le=GRPC_MAX_MESSAGE_BYTES - WORKER_MESSAGE_HEADROOM_BYTES,
        description="REST body and public gRPC message limit, bytes (413 / RESOURCE_EXHAUSTED past it)",
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * 1024 * 1024, description="REST request line + headers, bytes (431 past it)"
    )
    max_headers: int = Field(100, ge=8, le=10_000, description="REST header fields per request (431 past it)")
    max_image_pixels: int = 40_000_000
    max_frame_side: int = 8192
    max_clip_frames: int = 20_000
    max_clip_seconds: float = 1200.0
    max_people: int = 32
    max_every_nth: int = Field(1000, ge=1, description="largest accepted clip subsampling step")
    max_inflight_requests: int = Field(256, ge=1, description="gateway-wide bound on /v1/ requests in progress")
    max_job_follows: int = Field(
        1024, ge=1, description="gateway-wide bound on open NDJSON job results (apart: they wait, not work)"
    )
    retry_after_s: float = Field(
        1.0, gt=0.0, le=3600.0, description="Retry-After sent with 429/503 from the gateway (at most an hour)"
    )
    render_workers: int = Field(2, ge=1, description="threads rendering PNG/MP4 and exports, off the event loop")
    render_queue: int = Field(8, ge=0, description="renders/exports waiting for a thread before 503s are sent")


DEFAULT_WORKER_MESSAGE_BYTES: Final = LimitSettings().max_body_bytes + WORKER_MESSAGE_HEADROOM_BYTES
"""The gateway ↔ worker message limit with default limits: the largest encoded upload plus headroom (65 MiB)."""


class JobSettings(_Frozen):
    """Long work as jobs (``POST /v1/jobs``): state and results live in the frame buffer's store."""

    max_running: int = Field(2, ge=1, le=256, description="jobs this process runs at once; more wait queued")
    chunk_frames: int = Field(
        8, ge=1, le=1024, description="frames a job hands the engine per call (small: interactive requests interleave)"
    )
    keypoint_chunk_frames: int = Field(256, ge=1, le=20_000, description="the same for keypoint sequences")
    ttl_s: float = Field(
        86_400.0, gt=0.0, le=MAX_TTL_S, description="a job, its staged input and its results expire after this"
    )
    lease_s: float = Field(
        10.0, gt=0.0, le=3600.0, description="a running job unrenewed for this long is taken over by any gateway"
    )
    poll_interval_s: float = Field(0.25, gt=0.0, le=60.0, description="how often queued jobs and progress are polled")
    max_listed: int = Field(100, ge=1, le=10_000, description="most jobs GET /v1/jobs lists")


MAX_BUCKET_REFILL_S: Final = 1e15
"""The longest a key's token bucket may take to refill from empty (``burst / rate_per_s``), seconds: Redis keeps the
bucket for that long plus a minute, and EXPIRE refuses past ~9.2e15 s (milliseconds in a signed 64-bit integer), so
every request of every key was a 503. 1e15 s (31 million years) leaves room and limits nothing real."""


class QuotaSettings(_Frozen):
    """Per-API-key limits (shared by all gateways through Redis when ``redis_url`` is set)."""

    rate_per_s: float = Field(50.0, ge=0.0, description="sustained /v1/ requests (and gRPC calls) per second; 0 = off")
    burst: int = Field(
        100, ge=1, le=int(MAX_BUCKET_REFILL_S), description="token-bucket size: requests allowed at once"
    )
    max_streams: int = Field(64, ge=0, description="open streams per key (REST and gRPC); 0 = no limit")
    max_open_jobs: int = Field(8, ge=0, description="jobs per key queued or running at once; 0 = no limit")
    max_stored_jobs: int = Field(1000, ge=0, description="jobs per key kept (until they expire); 0 = no limit")
    max_job_bytes: int = Field(
        512 * 1024 * 1024, ge=0, description="bytes per key of staged job input and stored job results; 0 = no limit"
    )

    @model_validator(mode="after")
    def _bucket_fits(self) -> Self:
        """Refuse a bucket that refills slower than :data:`MAX_BUCKET_REFILL_S` (pure arithmetic, no I/O)."""
        if self.rate_per_s and self.burst / self.rate_per_s > MAX_BUCKET_REFILL_S:
            raise ValueError(
                f"burst / rate_per_s = {self.burst / self.rate_per_s:g} s to refill the bucket; at most "
                f"{MAX_BUCKET_REFILL_S:g} s (Redis cannot expire it later): raise rate_per_s or lower burst"
            )
        return self


class SecuritySettings(_Frozen):
    """API keys, quotas and TLS (service/security). ``auth``: ``auto`` = on unless bound to a loopback address."""

    auth: Literal["auto", "on", "off"] = "auto"
    api_keys_file: Path | None = Field(None, description="salted-hash keys (`pose3d keys create`); reloaded on change")
    api_keys_check_s: float = Field(1.0, ge=0.0, description="how often the key file's mtime is checked (reload)")
    public_metrics: bool = Field(False, description="/metrics open without a key when auth is on")
    public_docs: bool = Field(False, description="/docs, /redoc, /openapi.json and gRPC reflection open without a key")
    quotas: QuotaSettings = QuotaSettings()
    tls_certfile: Path | None = Field(None, description="server certificate (PEM) for REST and public gRPC")
    tls_keyfile: Path | None = Field(None, description="its private key (PEM)")
    worker_ca_file: Path | None = Field(None, description="CA (PEM) of the workers' server certs: mTLS to workers")
    worker_client_certfile: Path | None = Field(None, description="the gateway's client certificate for workers")
    worker_client_keyfile: Path | None = None
    worker_api_key: SecretStr | None = Field(
        None, description="a key from the workers' api_keys_file, sent on every worker call (needs worker_ca_file)"
    )


class WorkerTlsSettings(_Frozen):
    """mTLS on the worker port: its certificate, and the CA whose client certificates it accepts."""

    certfile: Path | None = None
    keyfile: Path | None = None
    client_ca_file: Path | None = Field(None, description="required CA of gateways' client certificates")


class TelemetrySettings(_Frozen):
    """Traces (OpenTelemetry; off unless an exporter is named) and the log format."""

    otlp_endpoint: str = Field("", description="OTLP/gRPC collector, e.g. http://otel-collector:4317 ('' = off)")
    spans_file: Path | None = Field(None, description="also append finished spans as JSON lines here (debugging)")
    json_logs: bool = Field(False, description="one JSON object per log line, with request id and trace id")


class CommonSettings(BaseSettings):
    """Fields every process shares."""

    model_config = SettingsConfigDict(
        env_prefix="POSE3D_", env_nested_delimiter="__", extra="forbid", allow_inf_nan=False
    )

    device: Device = Device.CPU
    half_precision: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    allow_random_weights: bool = Field(
        False, description="serve models whose checkpoints are missing with random weights (said loudly)"
    )
    redis_url: str = Field("", description="empty = in-memory frame buffer")
    detector: DetectorSettings = DetectorSettings()
    models: Annotated[dict[str, ModelSpec], Field(default_factory=_default_models)]
    default_image_model: str = "capf"
    default_clip_model: str = "pstmo-243"
    default_keypoints_model: str | None = Field(
        None, description="model for JSON 2D keypoints; None = default_clip_model, else any model that needs no image"
    )
    engine: EngineSettings = EngineSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    weights_dir: Path | None = Field(
        None, description="where `pose3d weights` installs checkpoints; None = $XDG_CACHE_HOME/pose3d/weights"
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_opens(cls, url: str) -> str:
        """``url`` as redis-py parses it when the process opens Redis (``redis+cluster://`` as ``redis://``), so that
        a mistyped one stops the command at start-up in one line, not later in a traceback (ValueError)."""
        if url:
            from redis.asyncio.connection import parse_url

            scheme, sep, rest = url.partition("://")
            parse_url(f"{scheme.removesuffix('+cluster')}{sep}{rest}")
        return url

    def default_model(self, kind: InputKind) -> str:
        """The one default-model rule, for every transport and the engine: an image → ``default_image_model``;
        2D keypoints → ``default_keypoints_model`` if set, else ``default_clip_model``; a clip or a stream →
        ``default_clip_model`` (for keypoints, ``service.api.models.keypoints_model`` falls back further)."""
        if kind is InputKind.IMAGE:
            return self.default_image_model
        if kind is InputKind.KEYPOINTS and self.default_keypoints_model:
            return self.default_keypoints_model
        return self.default_clip_model


class GatewaySettings(CommonSettings):
    """`pose3d serve` (embedded) and `pose3d gateway`."""

    # loopback by default: binding anywhere else is a decision (POSE3D_HOST / --host), and turns API keys on
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    grpc_port: int = Field(50051, ge=0, le=65535, description="public gRPC port (0 = off)")
    workers: list[str] = Field(
        default_factory=list,
        description="remote workers: several host:port (one gRPC ipv4:/ipv6: list), or one gRPC target such as "
        "dns:///workers:50061 (a headless Service); balanced by gRPC round_robin; empty = in-process",
    )
    limits: LimitSettings = LimitSettings()
    jobs: JobSettings = JobSettings()
    security: SecuritySettings = SecuritySettings()
    grpc_open_timeout_s: float = Field(
        30.0, gt=0.0, le=3600.0, description="a StreamEstimate call or a WebSocket must send its `open` within this"
    )
    shutdown_grace_s: float = Field(
        5.0,
        ge=0.0,
        description="on SIGTERM, open REST responses (whole seconds, rounded up) and gRPC calls get this long; "
        "then they are cut (a job's NDJSON results resume with ?after=) and running jobs are handed over",
    )
    grpc_stream_buffer: int = Field(
        16, ge=1, le=4096, description="results queued per gRPC stream; a slow reader stops its own stream past this"
    )
    worker_max_message_bytes: int | None = Field(
        None,
        ge=1024,
        le=GRPC_MAX_MESSAGE_BYTES,
        description="gateway ↔ worker gRPC message limit; None = limits.max_body_bytes + 1 MiB: images and clips "
        "travel encoded (at most limits.max_body_bytes), a clip's results come back in steps",
    )
    worker_clip_chunk_frames: int = Field(
        8,
        ge=1,
        le=1024,
        description="frames of a posted clip a worker runs per step (one Submit call), so they share its batches "
        "(1 = one frame per call: bit-identical to streaming the clip, but never batched)",
    )

    @model_validator(mode="after")
    def _a_port_each(self) -> Self:
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError(f"port and grpc_port are both {self.port}: REST and gRPC need a port each")
        return self

    def worker_message_limit(self) -> int:
        """The gateway ↔ worker message limit in bytes (see ``worker_max_message_bytes``)."""
        return self.worker_max_message_bytes or self.limits.max_body_bytes + WORKER_MESSAGE_HEADROOM_BYTES


class WorkerSettings(CommonSettings):
    """`pose3d worker`."""

    # loopback by default, as the gateway: beyond it callers must authenticate (service/security/worker_link.py)
    host: str = "127.0.0.1"
    port: int = Field(50061, ge=0, le=65535)
    metrics_port: int = Field(9100, ge=0, le=65535)
    max_message_bytes: int = Field(
        DEFAULT_WORKER_MESSAGE_BYTES,
        ge=1024,
        le=GRPC_MAX_MESSAGE_BYTES,
        description="gateway ↔ worker gRPC message limit: at least the gateways' (limits.max_body_bytes + 1 MiB)",
    )
    shutdown_grace_s: float = Field(5.0, ge=0.0, description="in-flight calls get this long on SIGTERM")
    tls: WorkerTlsSettings = WorkerTlsSettings()
    api_keys_file: Path | None = Field(
        None, description="callers must present a key from this file (`pose3d keys create`); needs tls.certfile"
    )
    trusted_network: bool = Field(
        False,
        description="serve callers unauthenticated on an address other than loopback: only trusted hosts can reach "
        "this port (network policy); logged as a WARNING at start",
    )

    @model_validator(mode="after")
    def _a_port_each(self) -> Self:
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError(f"port and metrics_port are both {self.port}: gRPC and /metrics need a port each")
        return self


class SettingsFileError(ValueError):
    """A settings file that cannot be read as settings: its syntax, a top level that is not a mapping, its suffix."""


class UnservedDefaultModel(ValueError):
    """A default-model setting naming no model the process serves: refused at start-up, where the served models are
    known (settings stay pure data: over remote workers the gateway's ``models`` are not what is served)."""


DEFAULT_MODEL_FIELDS: Final = ("default_image_model", "default_clip_model", "default_keypoints_model")


def refuse_unserved_defaults(settings: CommonSettings, served: Collection[str]) -> None:
    """Raise UnservedDefaultModel naming the first default-model setting of ``settings`` that is not in ``served``
    (the model names this process serves), the served models, and the variable that fixes it."""
    names = ", ".join(sorted(served)) or "none"
    for field in DEFAULT_MODEL_FIELDS:
        model = getattr(settings, field)
        if model is not None and model not in served:
            raise UnservedDefaultModel(
                f"{field} = {model!r} is not a served model (served: {names}) — set {field} "
                f"(POSE3D_{field.upper()} or the --config file) to one of them, or add models.{model}"
            )


def load_settings_file(path: Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) settings file into a dict; SettingsFileError naming
    ``path`` when it cannot be."""
    try:
        text = path.read_text(encoding="utf-8")  # TOML is UTF-8 by definition; so are the YAML files we read
    except UnicodeDecodeError as e:
        raise SettingsFileError(f"{path}: not UTF-8 text ({e}); save it as UTF-8") from e
    if path.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise SettingsFileError(f"{path}: {e}") from e
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise SettingsFileError(f"{path}: {e}") from e
        if not isinstance(data, dict):
            raise SettingsFileError(f"{path}: top level must be a mapping")
        if keys := [key for key in data if not isinstance(key, str)]:  # `1:`, `null:` (pydantic-settings lowers keys)
            raise SettingsFileError(f"{path}: top-level key {keys[0]!r} is not a setting name")
        return data
    raise SettingsFileError(f"{path}: settings file must be .toml, .yaml or .yml")


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def build_settings(cls: type[SettingsT], file: Path | None = None, **overrides: Any) -> SettingsT:
    """``cls`` from ``overrides`` (flags), then the environment, then ``file`` (TOML/YAML), then defaults."""
    file_data = load_settings_file(file) if file is not None else {}

    def sources(
        _cls: type[BaseSettings],
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, InitSettingsSource(settings_cls, init_kwargs=file_data)

    layered: type[SettingsT] = type(
        cls.__name__, (cls,), {"settings_customise_sources": classmethod(sources), "__module__": cls.__module__}
    )
    return layered(**{k: v for k, v in overrides.items() if v is not None})


def resolve_random_weights(settings: GatewaySettings, flag: bool | None) -> tuple[GatewaySettings, str]:
    """The embedded default's rule for ``allow_random_weights``, and the sentence that explains it.

    An explicit ``--[no-]allow-random-weights`` wins, then a value from the environment or the config
    file; otherwise ``serve`` allows random weights only when no checkpoint is configured at all.
    (Deployment commands never apply this rule: there the setting defaults to off.)
    """
    if flag is not None:
        how, state = ("--allow-random-weights", "allowed") if flag else ("--no-allow-random-weights", "refused")
        return settings.model_copy(update={"allow_random_weights": flag}), f"random weights {state} ({how})"
    if "allow_random_weights" in settings.model_fields_set:
        state = "allowed" if settings.allow_random_weights else "refused"
        return settings, f"random weights {state} (POSE3D_ALLOW_RANDOM_WEIGHTS / config file)"
    det = settings.detector
    checkpoints = [det.checkpoint, det.backbone_checkpoint, *(spec.checkpoint for spec in settings.models.values())]
    if all(c is None for c in checkpoints):  # a fresh machine
        return settings.model_copy(update={"allow_random_weights": True}), (
            "no checkpoint is configured anywhere, so `pose3d serve` serves RANDOM WEIGHTS (poses are meaningless); "
            "configure checkpoints, or pass --no-allow-random-weights to refuse"
        )
    return settings, (
        "checkpoints are configured: a model whose checkpoint is missing fails to load "
        "(pass --allow-random-weights to serve it with random weights)"
    )
