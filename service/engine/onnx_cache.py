"""The engine's ONNX Runtime plumbing: CPU sessions, and export once, cache on disk (graphs keyed by their sources).

A cache entry is ``<dir>/<name>-<key digest>.onnx`` with ``<file>.sha256`` beside it. The key (weights digest,
exporter and runtime versions, input shape, ...) is hashed into the name, so a change in any of them names another
file. Files are written atomically; an entry whose checksum is missing or wrong, or that does not open, is rebuilt,
never served.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import onnxruntime as ort
import torch

from model.checkpoints.common import CheckpointError
from service.weights.store import atomic_write, cache_home

log = logging.getLogger(__name__)

T = TypeVar("T")

OPSET = 17
"""The ONNX opset every exported graph uses."""

BACKEND_BY_DEVICE: dict[str, str] = {"cpu": "onnx", "cuda": "torch"}
"""``backend = "auto"`` (``detector.backend``, ``models.<name>.backend``): the faster runtime per device, measured
per network (docs/benchmarks.md "HRNet backend"); CUDA keeps torch (not measured on a GPU; half is torch only)."""


def cpu_session(model: bytes | str, intra_op_threads: int, allow_spinning: bool = False) -> Any:
    """An ONNX Runtime CPU session of ``model`` (graph bytes or a file path): ``intra_op_threads`` for its ops
    (0 = all cores), sequential with one inter-op thread (the graph is a chain), every graph optimisation, and
    idle threads spinning only when ``allow_spinning`` (off in the engine: on a shared CPU a spinning thread takes
    the core the lifter's torch threads need; docs/benchmarks.md "Threads that sleep")."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "1" if allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def open_onnx(path: str | Path, what: str, intra_op_threads: int, allow_spinning: bool = False) -> tuple[Path, Any]:
    """The ONNX file ``path`` and its :func:`cpu_session`; raises CheckpointError naming ``what`` (``"RTMPose
    model"``) when the file is missing or does not load."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{what} not found: {file}")
    try:
        return file, cpu_session(str(file), intra_op_threads, allow_spinning)
    except Exception as e:  # onnxruntime raises its own untyped errors
        raise CheckpointError(f"cannot load {what} {file}: {e}") from e


def resolved_backend(backend: str, device: torch.device, half: bool) -> str:
    """``torch`` or ``onnx`` for a backend setting (``auto``: :data:`BACKEND_BY_DEVICE`, torch whenever the
    network runs in half precision)."""
    if backend != "auto":
        return backend
    return "torch" if half else BACKEND_BY_DEVICE.get(device.type, "torch")


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/pose3d/onnx``, else ``~/.cache/pose3d/onnx`` (called at start-up with ``os.environ``)."""
    return cache_home(environ) / "onnx"


def tensors_digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 of named tensors (name, dtype, shape and float32 CPU bytes): a key for weights wherever they came
    from (checkpoint file, backbone override, seeded random init)."""
    digest = hashlib.sha256()
    for name, tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def export_key(graph: str, module: torch.nn.Module, input_shape: str, **extra: str) -> dict[str, str]:
    """Everything an exported graph depends on: its kind, the weights (digest of the state dict), the exporter
    (torch) and runtime (onnxruntime) versions, the opset, the input shape, and ``extra`` (e.g. joints)."""
    return {
        "graph": graph,
        "weights_sha256": tensors_digest(module.state_dict().items()),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "opset": str(OPSET),
        "input": input_shape,
        **extra,
    }


def export_onnx(module: torch.nn.Module, example: torch.Tensor, input_name: str, output_names: Sequence[str]) -> bytes:
    """The ONNX graph (opset :data:`OPSET`, TorchScript exporter) of ``module`` (eval, float32, CPU) called on one
    input shaped like ``example``; the batch axis (0) of the input and of every output is dynamic."""
    buffer = io.BytesIO()
    axes = {name: {0: "n"} for name in (input_name, *output_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module,
            (example,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            input_names=[input_name],
            output_names=list(output_names),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


@dataclass(frozen=True)
class Cached(Generic[T]):
    """What :meth:`ExportCache.load_or_export` opened, where it lives, and whether this call exported it."""

    value: T
    path: Path
    exported: bool

    @property
    def origin(self) -> str:
        """Where the graph came from, for the start-up report and ``/readyz``."""
        return f"onnx {'exported to' if self.exported else 'cached at'} {self.path}"


@dataclass(frozen=True)
class ExportCache:
    """Exported graphs under ``directory`` (``detector.onnx_cache_dir``; created on first write)."""

    directory: Path

    def load_or_export(
        self, name: str, key: Mapping[str, str], export: Callable[[], bytes], open_model: Callable[[bytes], T]
    ) -> Cached[T]:
        """``open_model`` (bytes → runnable; raising = corrupt entry) of the cached bytes of ``name`` (the file name
        prefix) and ``key`` when the entry is sound, else of a fresh ``export()`` (then cached). The entry's file is
        ``<name>-<24 hex of the sha256 of key's sorted JSON>.onnx``."""
        key_json = json.dumps(dict(key), sort_keys=True).encode()
        path = self.directory / f"{name}-{hashlib.sha256(key_json).hexdigest()[:24]}.onnx"
        cached = self._read(path)
        if cached is not None:
            try:
                return Cached(open_model(cached), path, exported=False)
            except Exception as e:  # any failure to open means the entry is unusable
                log.warning("export cache: %s does not open (%s); rebuilding it", path, e)
        model = export()
        value = open_model(model)  # a fresh export that does not open is an error, not a cache problem
        self._write(path, model, key_json)
        log.info("export cache: %s written (%d bytes)", path, len(model))
        return Cached(value, path, exported=True)

    @staticmethod
    def _read(path: Path) -> bytes | None:
        sums = _checksum_path(path)
        try:
            data, recorded = path.read_bytes(), sums.read_text().strip()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != recorded:
            log.warning("export cache: %s does not match its recorded sha256; rebuilding it", path)
            return None
        return data

    def _write(self, path: Path, data: bytes, key_json: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        atomic_write(path.with_name(path.name + ".key.json"), key_json)
        atomic_write(_checksum_path(path), hashlib.sha256(data).hexdigest().encode())


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")
