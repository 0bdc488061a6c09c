"""A stand-in RTMPose ONNX with the published signature (holds no tests): input ``input`` (B, 3, 256, 192) float32,
outputs ``simcc_x`` (B, 17, 384) and ``simcc_y`` (B, 17, 512) float32.

The graph is ``AveragePool(32x32)`` → flatten (144 values) → two random linear maps, so every output depends
on the crop's pixels; ``negative_joint`` gets a large negative bias so that its score is <= 0 (the ``-1``
location path of the decoders).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

POOL = 32
FEATURES = 3 * (256 // POOL) * (192 // POOL)


def rtmpose_standin(path: Path, seed: int = 0, batch: int | str = 1, negative_joint: int | None = 3) -> Path:
    """Write the stand-in to ``path`` (``batch``: a static size or a dimension name for a dynamic batch)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[POOL, POOL], strides=[POOL, POOL]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
    ]
    inits = []
    for name, width in (("simcc_x", 384), ("simcc_y", 512)):
        w = rng.normal(0.0, 1.0, (FEATURES, 17 * width)).astype(np.float32)
        b = rng.normal(0.5, 0.3, (17 * width,)).astype(np.float32)
        if negative_joint is not None:
            b.reshape(17, width)[negative_joint] -= 1000.0
        inits += [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]
        inits.append(numpy_helper.from_array(np.array([-1, 17, width], np.int64), f"{name}_shape"))
        nodes += [
            helper.make_node("Gemm", ["flat", f"{name}_w", f"{name}_b"], [f"{name}_flat"]),
            helper.make_node("Reshape", [f"{name}_flat", f"{name}_shape"], [name]),
        ]
    graph = helper.make_graph(
        nodes,
        "rtmpose_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 256, 192])],
        [
            helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [batch, 17, 384]),
            helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [batch, 17, 512]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
