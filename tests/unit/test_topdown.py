"""model.topdown: box geometry, the classic cv2 warp, MSRA decoding quirks, heatmap flip, mmpose conformance."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from model.conformance.core import ConformanceError, check_file, compare
from model.conformance.run_mmpose import run_mmpose_topdown
from model.hrnet import HRNET_PRESETS, HRNetConfig, PoseHRNet
from model.skeleton import COCO_FLIP_PERM
from model.topdown import (
    CropGeometry,
    box_to_center_scale,
    crop_boxes,
    crop_to_image,
    decode_heatmaps,
    flip_heatmaps,
    image_to_crop,
    normalize_crops,
    warp_crops,
    warp_matrix,
)


def test_mmpose_vector_passes_flip_off_and_on(conformance_dir: Path) -> None:
    kind, checks = check_file(conformance_dir / "mmpose_hrnet_tiny.pt")
    assert kind == "mmpose_topdown"
    names = {c.name for c in checks}
    assert names == {"keypoints", "keypoint_scores", "keypoints_flip_test", "keypoint_scores_flip_test"}
    for c in checks:
        assert c.passed, c
    tolerances = {c.name: c.tolerance for c in checks}
    assert tolerances["keypoints"] == pytest.approx(0.01)
    assert tolerances["keypoint_scores_flip_test"] == pytest.approx(1e-4)


def _mmpose_vector_of_widths(base_path: Path, widths: tuple[int, int, int, int], seed: int) -> dict[str, Any]:
    """A vector of the mmpose format at other widths, image and boxes (no outputs)."""
    base = torch.load(base_path, weights_only=True)
    cfg = dict(base["config"]["mmpose_model"])
    extra = {k: dict(v) for k, v in cfg["backbone"]["extra"].items()}
    for stage, n in (("stage2", 2), ("stage3", 3), ("stage4", 4)):
        extra[stage]["num_channels"] = list(widths[:n])
    cfg["backbone"] = {**cfg["backbone"], "extra": extra}
    cfg["head"] = {**cfg["head"], "in_channels": widths[0]}
    torch.manual_seed(seed)
    net = PoseHRNet(HRNetConfig.from_mmpose(extra))
    state = {("head." + k if k.startswith("final_layer.") else k): v for k, v in net.state_dict().items()}
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(150, 210, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 120, 140], [-30, 60, 60, 200], [100, 20, 260, 60]], dtype=np.float32)
    return {
        "config": {"mmpose_model": cfg},
        "state_dict": state,
        "inputs": {"image_rgb": torch.from_numpy(image), "boxes_xyxy": torch.from_numpy(boxes)},
    }


def test_runner_takes_other_widths_images_and_boxes(conformance_dir: Path) -> None:
    vec = _mmpose_vector_of_widths(conformance_dir / "mmpose_hrnet_tiny.pt", (4, 8, 12, 16), seed=3)
    out = run_mmpose_topdown(vec)
    assert out["keypoints"].shape == (3, 17, 2)
    assert out["keypoint_scores_flip_test"].shape == (3, 17)
    assert torch.isfinite(out["keypoints"]).all()
    # keypoints fall inside each padded crop region (or at mmpose's -1 marker just outside it)
    geometry = box_to_center_scale(vec["inputs"]["boxes_xyxy"].numpy())
    lo = geometry.centers - geometry.scales / 2 - geometry.scales / 48
    hi = geometry.centers + geometry.scales / 2
    kp = out["keypoints"].numpy()
    assert (kp >= lo[:, None] - 1e-3).all()
    assert (kp <= hi[:, None] + 1e-3).all()


def test_wrong_weights_are_named(conformance_dir: Path) -> None:
    vec = torch.load(conformance_dir / "mmpose_hrnet_tiny.pt", weights_only=True)
    del vec["state_dict"]["head.final_layer.bias"]
    with pytest.raises(ConformanceError, match=r"missing keys \[1\]: final_layer.bias"):
        run_mmpose_topdown(vec)


def test_compare_honours_explicit_tolerance() -> None:
    assert compare("k", torch.tensor([100.0]), torch.tensor([100.009]), tolerance=0.01).passed
    assert not compare("k", torch.tensor([100.0]), torch.tensor([100.009])).passed


@pytest.mark.parametrize(
    ("box", "center", "scale"),
    [
        ([0, 0, 192, 256], (96, 128), (240, 320)),  # already 3:4, padded by 1.25
        ([10, 20, 110, 40], (60, 30), (125, 125 / 0.75)),  # wide: height grows
        ([0, 0, 30, 400], (15, 200), (500 * 0.75, 500)),  # tall: width grows
    ],
)
def test_box_to_center_scale(box: list[float], center: tuple[float, float], scale: tuple[float, float]) -> None:
    g = box_to_center_scale(np.array([box], dtype=np.float32))
    np.testing.assert_allclose(g.centers[0], center, rtol=1e-6)
    np.testing.assert_allclose(g.scales[0], scale, rtol=1e-6)
    assert g.centers.dtype == np.float32
    assert g.scales.dtype == np.float32


def test_warp_matrix_maps_box_to_crop_and_back() -> None:
    g = box_to_center_scale(np.array([[50.5, 20.25, 130.0, 300.0]], dtype=np.float32))
    fwd = warp_matrix(g.centers[0], g.scales[0])
    inv = warp_matrix(g.centers[0], g.scales[0], inverse=True)
    crop_pts = np.array([[0.0, 0.0], [96.0, 128.0], [191.0, 255.0], [13.3, 200.7]])
    img_pts = crop_pts @ inv[:, :2].T + inv[:, 2]
    np.testing.assert_allclose(crop_to_image(crop_pts[None], g)[0], img_pts, atol=1e-3)
    np.testing.assert_allclose(img_pts @ fwd[:, :2].T + fwd[:, 2], crop_pts, atol=1e-3)
    np.testing.assert_allclose(image_to_crop(crop_to_image(crop_pts[None], g), g)[0], crop_pts, atol=1e-3)
    np.testing.assert_allclose(img_pts[1], g.centers[0], atol=1e-4)  # crop centre = box centre


def _classic_cv2_warp(src: np.ndarray, forward: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Straight per-pixel transcription of OpenCV <= 4.10's fixed-point warpAffine INTER_LINEAR (reference)."""
    a = cv2.invertAffineTransform(forward)
    out = np.zeros((out_h, out_w, src.shape[2]), dtype=np.uint8)
    h, w = src.shape[:2]
    for y, x in itertools.product(range(out_h), range(out_w)):
        X = (int(np.rint((a[0, 1] * y + a[0, 2]) * 1024)) + 16 + int(np.rint(a[0, 0] * x * 1024))) >> 5
        Y = (int(np.rint((a[1, 1] * y + a[1, 2]) * 1024)) + 16 + int(np.rint(a[1, 0] * x * 1024))) >> 5
        sx, sy, fx, fy = X >> 5, Y >> 5, X & 31, Y & 31
        acc = np.zeros(src.shape[2], dtype=np.int64)
        for dy, dx, wgt in (
            (0, 0, (32 - fx) * (32 - fy)),
            (0, 1, fx * (32 - fy)),
            (1, 0, (32 - fx) * fy),
            (1, 1, fx * fy),
        ):
            yy, xx = sy + dy, sx + dx
            if 0 <= yy < h and 0 <= xx < w:
                acc += wgt * 32 * src[yy, xx].astype(np.int64)
        out[y, x] = np.clip((acc + (1 << 14)) >> 15, 0, 255)
    return out


def test_warp_is_the_classic_fixed_point_cv2_warp() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    g = box_to_center_scale(np.array([[-7.3, 3.1, 30.2, 45.9], [20.0, 10.0, 26.0, 14.0]], dtype=np.float32))
    size = (24, 32)
    crops = crop_boxes(image, g, size)
    for i in range(len(g)):
        ref = _classic_cv2_warp(image, warp_matrix(g.centers[i], g.scales[i], size), *size)
        np.testing.assert_array_equal(crops[i], ref)


def test_warp_agrees_with_installed_cv2_on_smooth_images() -> None:
    yy, xx = np.mgrid[0:120, 0:160]
    image = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.uint8)
    g = box_to_center_scale(np.array([[-20, 10, 90, 150], [30, 30, 140, 60]], dtype=np.float32))
    crops = crop_boxes(image, g)
    for i in range(len(g)):
        ref = cv2.warpAffine(image, warp_matrix(g.centers[i], g.scales[i]), (192, 256), flags=cv2.INTER_LINEAR)
        diff = np.abs(crops[i].astype(int) - ref.astype(int))
        assert diff.max() <= 2  # newer OpenCV interpolates in float: a grey level or two apart
        assert (diff <= 1).mean() > 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_warp_on_cuda_equals_cpu() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    g = box_to_center_scale(np.array([[-20, 10, 90, 150], [30, 30, 380, 290]], dtype=np.float32))
    cpu = warp_crops(torch.from_numpy(image), g)
    gpu = warp_crops(torch.from_numpy(image).cuda(), g).cpu()
    assert torch.equal(cpu, gpu)


def test_normalize_crops_imagenet() -> None:
    crops = torch.zeros((1, 2, 2, 3), dtype=torch.uint8)
    crops[..., 0] = 255
    x = normalize_crops(crops)
    assert x.shape == (1, 3, 2, 2)
    assert float(x[0, 0, 0, 0]) == pytest.approx((255 - 123.675) / 58.395, rel=1e-6)
    assert float(x[0, 2, 1, 1]) == pytest.approx(-103.53 / 57.375, rel=1e-6)


def _mmpose_refine_reference(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mmpose get_heatmap_maximum + refine_keypoints, transcribed loop by loop from its documentation."""
    k, h, w = heatmaps.shape
    flat = heatmaps.reshape(k, -1)
    idx = flat.argmax(1)
    locs = np.stack([idx % w, idx // w], -1).astype(np.float32)
    vals = flat.max(1)
    locs[vals <= 0] = -1
    for j in range(k):
        x, y = locs[j].astype(int)
        dx = heatmaps[j, y, x + 1] - heatmaps[j, y, x - 1] if 1 < x < w - 1 and 0 < y < h else 0.0
        dy = heatmaps[j, y + 1, x] - heatmaps[j, y - 1, x] if 1 < y < h - 1 and 0 < x < w else 0.0
        locs[j] += np.sign([dx, dy]).astype(np.float32) * 0.25
    return locs * 4, vals


def test_decode_matches_mmpose_reference_on_random_and_edge_heatmaps() -> None:
    rng = np.random.default_rng(0)
    hm = rng.normal(size=(3, 17, 64, 48)).astype(np.float32)
    hm[0, 0] = -1.0  # non-positive maximum → location -1 (×4)
    hm[0, 1] = 0.0
    hm[0, 1, 10, 1] = 1.0  # x == 1: no x shift (mmpose's 1 < x bound)
    hm[0, 1, 10, 2] = 0.5
    hm[0, 2] = 0.0
    hm[0, 2, 0, 20] = 1.0  # y == 0: no x shift either (0 < y bound), no y shift
    hm[0, 2, 0, 21] = 0.5
    hm[0, 3] = 0.0
    hm[0, 3, 63, 47] = 1.0  # corner
    hm[0, 4] = 0.0
    hm[0, 4, 30, 30] = 1.0
    hm[0, 4, 30, 31] = 0.5  # plain case: +0.25 in x
    hm[0, 4, 29, 30] = 0.5  # and -0.25 in y
    kp, scores = decode_heatmaps(torch.from_numpy(hm))
    for n in range(3):
        ref_kp, ref_vals = _mmpose_refine_reference(hm[n])
        np.testing.assert_array_equal(kp[n].numpy(), ref_kp)
        np.testing.assert_array_equal(scores[n].numpy(), ref_vals)
    assert kp[0, 0].tolist() == [-4.0, -4.0]
    assert float(scores[0, 0]) == -1.0
    assert kp[0, 1].tolist() == [4.0, 40.0]
    assert kp[0, 2].tolist() == [80.0, 0.0]
    assert kp[0, 4].tolist() == [30.25 * 4, 29.75 * 4]


def test_flip_heatmaps_swaps_joints_mirrors_and_shifts() -> None:
    hm = torch.zeros((1, 17, 64, 48))
    hm[0, 5, 10, 3] = 1.0  # left shoulder at column 3 of the flipped crop
    out = flip_heatmaps(hm, COCO_FLIP_PERM, shift=True)
    # → right shoulder (6), mirrored column 44, shifted right to 45
    assert out[0, 6, 10, 45] == 1.0
    assert float(out.sum()) == 1.0
    no_shift = flip_heatmaps(hm, COCO_FLIP_PERM, shift=False)
    assert no_shift[0, 6, 10, 44] == 1.0


def test_crop_geometry_select() -> None:
    g = CropGeometry(np.zeros((3, 2), np.float32), np.arange(6, dtype=np.float32).reshape(3, 2))
    assert len(g.select(1)) == 1
    assert g.select(2).scales.tolist() == [[4.0, 5.0]]


def test_tiny_preset_forward_shapes() -> None:
    net = PoseHRNet(HRNET_PRESETS["hrnet-micro"]).eval()
    with torch.inference_mode():
        hm, feats = net(torch.zeros(1, 3, 256, 192))
    assert hm.shape == (1, 17, 64, 48)
    assert len(feats) == 4


@pytest.mark.parametrize(
    "preprocessor",
    [
        {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "bgr_to_rgb": True},
        {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375], "bgr_to_rgb": False},
    ],
)
def test_other_input_normalisation_is_refused_not_silently_misreproduced(
    conformance_dir: Path, preprocessor: dict[str, object]
) -> None:
    vec = torch.load(conformance_dir / "mmpose_hrnet_tiny.pt", weights_only=True)
    vec["config"]["mmpose_model"]["data_preprocessor"] = {"type": "PoseDataPreprocessor", **preprocessor}
    with pytest.raises(ConformanceError, match="only ImageNet mean/std on RGB"):
        run_mmpose_topdown(vec)
