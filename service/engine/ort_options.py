"""ONNX Runtime session options shared by the engine's ONNX networks (RTMPose, the HRNet and P-STMO backends)."""

from __future__ import annotations

from typing import Any


def session_options(intra_op_threads: int, allow_spinning: bool) -> Any:
    """ONNX Runtime options for one network per call: ``intra_op_threads`` for its ops (0 = all cores),
    sequential execution with one inter-op thread (the graph is a chain), every graph optimisation, and
    spinning of idle threads only when ``allow_spinning`` (off in the engine: on a shared CPU a spinning thread
    takes the core that the lifter's torch threads or another process need; HRNet-W32 in the default profile
    measured 17% less CPU per video frame and 34% less per image without it, docs/benchmarks.md)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spin = "1" if allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return options


def cpu_session(model: bytes, intra_op_threads: int) -> Any:
    """An ONNX Runtime session of the graph ``model`` on the CPU, ``intra_op_threads`` threads (0 = all cores) that
    sleep when idle (:func:`session_options`): how the engine's exported networks (HRNet, P-STMO) run."""
    import onnxruntime as ort

    options = session_options(intra_op_threads, allow_spinning=False)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
