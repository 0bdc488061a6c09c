"""The ONNX Runtime detector backend: the mmpose and HRNet backbone vectors hold through it, it equals the torch
detector, and its flip test is one forward of the plain and flipped crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from model.checkpoints.common import remove_module_prefix
from model.conformance.run_mmpose import run_mmpose_topdown
from model.hrnet import HRNET_PRESETS, HRNetConfig, PoseHRNet
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
        session = detector.net.session if isinstance(detector.net, OnnxHRNet) else None
        assert session is not None
        options = session.get_session_options()  # one thread asked for, and it sleeps rather than spins when idle
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        got = detector.detect([image], boxes, scores, flip_test=True)[0][0]
        np.testing.assert_allclose(got.keypoints_coco, want.keypoints_coco, atol=1e-3)
        np.testing.assert_allclose(got.scores_coco, want.scores_coco, atol=1e-5)
        assert got.features is not None
        assert want.features is not None
        for a, b in zip(got.features, want.features, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


class _Counting:
    """Wraps a heatmap network, recording the batch size of every forward."""

    def __init__(self, net: OnnxHRNet) -> None:
        self.net, self.batches = net, list[int]()

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.batches.append(int(images.shape[0]))
        return self.net(images)


def test_onnx_flip_test_is_one_forward_of_plain_and_flipped_crops() -> None:
    torch.manual_seed(5)
    net = PoseHRNet(HRNET_PRESETS["hrnet-micro"]).eval()
    cpu = torch.device("cpu")
    detector = TopDownDetector(net, cpu, keep_features=True)
    counting = _Counting(OnnxHRNet.from_torch(net, threads=1))
    detector.use_network(counting)
    image = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    boxes = [np.array([[10.0, 10.0, 90.0, 110.0], [50.0, 5.0, 150.0, 100.0], [0.0, 0.0, 160.0, 120.0]])]
    detector.detect([image], boxes, [np.ones(3)], flip_test=True)
    detector.detect([image], boxes, [np.ones(3)], flip_test=False, flip_features=False)
    assert counting.batches == [6, 3]  # 2B crops in one forward with the flip test, B without


def test_hrnet_backbone_vector_holds_through_onnx_runtime(conformance_dir: Path) -> None:
    vector = torch.load(conformance_dir / "hrnet_tiny.pt", map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    net = PoseHRNet(HRNetConfig.from_official(vector["config"])).eval()
    net.backbone.load_state_dict(remove_module_prefix(vector["state_dict"]))
    image = vector["inputs"]["image"].to(torch.float32)
    assert tuple(image.shape[-2:]) == (256, 192)  # the graph's crop size
    _, feats = OnnxHRNet.from_torch(net, threads=1)(image)
    for k, f in enumerate(feats):
        torch.testing.assert_close(f, vector["outputs"][f"feat{k}"].to(torch.float32), atol=1e-4, rtol=1e-4)
