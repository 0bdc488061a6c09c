"""RTMPose crop + SimCC decode against the reference implementation of a maintained package (rtmlib), on the
same ONNX file (a stand-in with the published signature): 0.01 px and 1e-4 in score."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model.checkpoints.common import CheckpointError
from model.skeleton import COCO_FLIP_PERM, coco_to_h36m
from model.topdown import box_to_center_scale, warp_matrix
from service.config import CommonSettings, DetectorSettings, EngineSettings
from service.engine.loader import Report, build_rtmpose_detector
from service.engine.rtmpose import (
    INPUT_SIZE,
    MEAN_RGB,
    STD_RGB,
    RTMPoseDetector,
    crop_inputs,
    decode_simcc,
    flip_simcc,
)
from tests.unit.rtmpose_standin import rtmpose_standin

rtmlib = pytest.importorskip("rtmlib")

# integer boxes (exact in float32 and float64, so both sides build the same warp), inside, across and past the
# image border, tall and wide
BOXES = np.array(
    [[40, 30, 120, 200], [-20, 10, 90, 100], [150, 100, 330, 180], [5, 5, 25, 60], [200, 150, 400, 300]], np.float32
)


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rtmpose_standin(tmp_path_factory.mktemp("rtmpose") / "rtmpose.onnx", seed=7)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    img[60:180, 80:160] = (230, 120, 40)
    return img


def _reference(path: Path, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """rtmlib's RTMPose, box by box: keypoints (N, 17, 2), its scores, and each box's raw (simcc_x, simcc_y)."""
    ref = rtmlib.RTMPose(str(path), model_input_size=(192, 256), backend="onnxruntime", device="cpu")
    kps, scores, raw = [], [], []
    for box in boxes.astype(np.float64):
        kp, sc = ref(image, bboxes=[box.tolist()])
        img, _, _ = ref.preprocess(image, box.tolist())
        raw.append(ref.inference(img))
        kps.append(kp[0])
        scores.append(sc[0])
    return np.array(kps), np.array(scores), raw


def test_crop_and_decode_equal_rtmlib(standin: Path, image: np.ndarray) -> None:
    ref_kp, ref_scores, raw = _reference(standin, image, BOXES)
    ours = RTMPoseDetector(standin, score_mode="mean").detect([image], [BOXES], [np.ones(len(BOXES))], False)[0]
    kp = np.array([p.keypoints_coco for p in ours])
    scores = np.array([p.scores_coco for p in ours])
    assert (ref_scores[:, 3] <= 0).all()
    assert (ref_scores[:, :3] > 0).all()
    np.testing.assert_allclose(kp, ref_kp, atol=0.01, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4, rtol=0)
    # mmpose's score (the default): the smaller of the two axis maxima of the same vectors
    mins = np.array([np.minimum(x[0].max(axis=1), y[0].max(axis=1)) for x, y in raw])
    default = RTMPoseDetector(standin).detect([image], [BOXES], [np.ones(len(BOXES))], False)[0]
    np.testing.assert_allclose(np.array([p.scores_coco for p in default]), mins, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.array([p.keypoints_coco for p in default])[:, :3], ref_kp[:, :3], atol=0.01, rtol=0)
    for p in ours:
        np.testing.assert_allclose(p.keypoints_h36m, coco_to_h36m(p.keypoints_coco), atol=1e-5)
        assert p.features is None
        assert p.flip_features is None


def test_dynamic_batch_equals_static(tmp_path: Path, image: np.ndarray) -> None:
    static = RTMPoseDetector(rtmpose_standin(tmp_path / "s.onnx", seed=1))
    dynamic = RTMPoseDetector(rtmpose_standin(tmp_path / "d.onnx", seed=1, batch="batch"))
    assert static.static_batch == 1
    assert dynamic.static_batch is None
    two = [image, image[::-1].copy()]
    a = static.detect(two, [BOXES, BOXES[:2]], [np.ones(5), np.ones(2)], flip_test=True)
    b = dynamic.detect(two, [BOXES, BOXES[:2]], [np.ones(5), np.ones(2)], flip_test=True)
    assert [len(x) for x in a] == [5, 2]
    for pa, pb in zip(a[0] + a[1], b[0] + b[1], strict=True):
        np.testing.assert_allclose(pa.keypoints_coco, pb.keypoints_coco, atol=1e-4)
        np.testing.assert_allclose(pa.scores_coco, pb.scores_coco, atol=1e-4)


def test_flip_test_is_mmpose_flip_vectors(standin: Path, image: np.ndarray) -> None:
    """Flip test = mmpose's RTMCCHead.predict: the mirrored crop's vectors, ``x[:, flip_indices].flip(-1)`` and
    ``y[:, flip_indices]`` (written here in torch, as mmpose does), averaged with the crop's, then decoded."""
    det = RTMPoseDetector(standin)
    ref = rtmlib.RTMPose(str(standin), model_input_size=(192, 256), backend="onnxruntime", device="cpu")
    box = BOXES[0].astype(np.float64).tolist()
    crop, center, scale = ref.preprocess(image, box)
    x, y = ref.inference(crop)
    fx, fy = ref.inference(np.ascontiguousarray(crop[:, ::-1]))
    tx = torch.from_numpy(fx)[:, COCO_FLIP_PERM].flip(-1)
    ty = torch.from_numpy(fy)[:, COCO_FLIP_PERM]
    mx, my = (x + tx.numpy()) * 0.5, (y + ty.numpy()) * 0.5
    locs, vals = decode_simcc(mx, my)
    expected = locs / np.array([192.0, 256.0]) * scale + center - scale / 2
    (ours,) = det.detect([image], [BOXES[:1]], [np.ones(1)], flip_test=True)[0]
    np.testing.assert_allclose(ours.keypoints_coco, expected[0], atol=0.01, rtol=0)
    np.testing.assert_allclose(ours.scores_coco, vals[0], atol=1e-4, rtol=0)
    fxx, fyy = flip_simcc(fx, fy)
    np.testing.assert_array_equal(fxx, tx.numpy())
    np.testing.assert_array_equal(fyy, ty.numpy())


def test_decode_marks_non_positive_joints() -> None:
    x = np.zeros((1, 2, 384), np.float32)
    y = np.zeros((1, 2, 512), np.float32)
    y[0, 1] = -1.0
    x[0, 0, 100], y[0, 0, 300] = 0.8, 0.6
    x[0, 1, 50], y[0, 1, 60] = 0.5, -0.1
    locs, vals = decode_simcc(x, y)
    np.testing.assert_allclose(locs[0], [[50.0, 150.0], [-0.5, -0.5]])
    np.testing.assert_allclose(vals[0], [0.6, -0.1])
    _, mean = decode_simcc(x, y, score_mode="mean")
    np.testing.assert_allclose(mean[0], [0.7, 0.2])


def test_no_boxes_and_load_errors(tmp_path: Path, standin: Path, image: np.ndarray) -> None:
    assert RTMPoseDetector(standin).detect([image], [np.zeros((0, 4))], [np.zeros(0)], True) == [[]]
    with pytest.raises(CheckpointError, match="not found"):
        RTMPoseDetector(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(CheckpointError, match="cannot load"):
        RTMPoseDetector(bad)


@pytest.mark.parametrize(("rtmpose_threads", "engine_threads", "expected"), [(2, 1, 2), (0, 1, 1), (0, 3, 3)])
def test_session_threads_and_no_spinning(
    standin: Path, image: np.ndarray, rtmpose_threads: int, engine_threads: int, expected: int
) -> None:
    detector = DetectorSettings(family="rtmpose", rtmpose_onnx=standin, rtmpose_threads=rtmpose_threads)
    settings = CommonSettings(detector=detector, engine=EngineSettings(torch_threads=engine_threads))
    det = build_rtmpose_detector(settings, needs_features=False, report=Report("cpu"))
    options = det._session.get_session_options()
    assert options.intra_op_num_threads == expected
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    one = RTMPoseDetector(standin, intra_op_threads=1, allow_spinning=True)
    assert one._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"
    got, want = (
        det.detect([image], [BOXES], [np.ones(5)], False)[0],
        one.detect([image], [BOXES], [np.ones(5)], False)[0],
    )
    for a, b in zip(got, want, strict=True):  # threads change the schedule, not the keypoints
        np.testing.assert_allclose(a.keypoints_coco, b.keypoints_coco, atol=1e-3)
        np.testing.assert_allclose(a.scores_coco, b.scores_coco, atol=1e-4)


def test_crop_inputs_normalise_bit_for_bit_as_the_published_formula(image: np.ndarray) -> None:
    boxes = np.array([[10.0, 20.0, 120.0, 200.0], [0.0, 0.0, 60.0, 40.0]], np.float32)
    geometry = box_to_center_scale(boxes, input_size=INPUT_SIZE)
    got = crop_inputs(image, geometry)
    for i in range(len(boxes)):
        mat = warp_matrix(geometry.centers[i], geometry.scales[i], INPUT_SIZE)
        crop = cv2.warpAffine(image, mat, INPUT_SIZE, flags=cv2.INTER_LINEAR).astype(np.float32)
        mean, std = np.asarray(MEAN_RGB, np.float32), np.asarray(STD_RGB, np.float32)
        want = ((crop - mean) / std).transpose(2, 0, 1)
        np.testing.assert_array_equal(got[i], want)
    assert got.std() > 0.1  # real image content, not a constant
