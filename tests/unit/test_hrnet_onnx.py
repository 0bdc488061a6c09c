"""The ONNX Runtime detector backend: the mmpose vector holds through it, and it equals the torch detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.conformance.run_mmpose import run_mmpose_topdown
from model.hrnet import HRNET_PRESETS, PoseHRNet
from service.engine.detector import TopDownDetector
from service.engine.hrnet_onnx import OnnxHRNet, use_onnx_backend


def test_mmpose_vector_holds_through_onnx_runtime(conformance_dir: Path) -> None:
    vector = torch.load(conformance_dir / "mmpose_hrnet_tiny.pt", map_location="cpu", weights_only=True)
    got = run_mmpose_topdown(vector, prepare=lambda net: OnnxHRNet.from_torch(net, threads=1))
    for name, want in vector["outputs"].items():
        tol = 1e-2 if name.startswith("keypoints") else 1e-4  # px / score, as conformance/README.md
        torch.testing.assert_close(got[name], want.to(got[name].dtype), atol=tol, rtol=0)


def test_onnx_detector_equals_torch_detector_and_caches_the_graph(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = PoseHRNet(HRNET_PRESETS["hrnet-micro"]).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cache = tmp_path / "hrnet.onnx"
    image = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    boxes, scores = [np.array([[100.0, 80.0, 200.0, 160.0]])], [np.array([0.9])]  # crop inside the noise
    cpu = torch.device("cpu")
    want = TopDownDetector(net, cpu, keep_features=True).detect([image], boxes, scores, flip_test=True)[0][0]
    for _ in range(2):  # first: exported and written to the cache; then: read from it
        detector = TopDownDetector(net, cpu, keep_features=True)
        use_onnx_backend(detector, net, cache, threads=1)
        assert cache.is_file()
        got = detector.detect([image], boxes, scores, flip_test=True)[0][0]
        np.testing.assert_allclose(got.keypoints_coco, want.keypoints_coco, atol=1e-3)
        np.testing.assert_allclose(got.scores_coco, want.scores_coco, atol=1e-5)
        assert got.features is not None
        assert want.features is not None
        for a, b in zip(got.features, want.features, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
