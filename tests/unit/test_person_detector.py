"""ONNX person detector (mmdeploy/rtmlib layout) end to end with generated models, and per-request box sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from model.checkpoints.common import CheckpointError
from service.engine.person_boxes import (
    DetectorFamily,
    OnnxPersonDetector,
    PersonBoxFinder,
    letterbox,
    nms,
    validate_client_boxes,
    whole_frame_box,
)
from service.engine.types import BoxSource
from service.errors import InvalidInput


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _input(h: int | str = 64, w: int | str = 64) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, h, w])


def constant_detector(
    path: Path, dets: list[list[float]], labels: list[int], names: tuple[str, str] = ("dets", "labels")
) -> Path:
    """A detector that ignores the image and returns ``dets (1, N, 5)`` and ``labels (1, N)``."""
    n = len(dets)
    d = numpy_helper.from_array(np.array([dets], dtype=np.float32), "dets_value")
    lab = numpy_helper.from_array(np.array([labels], dtype=np.int64), "labels_value")
    # tie the outputs to the input so the graph is a real function of it (0 * mean(input) + constant)
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["dets_value", "z"], [names[0]]),
        helper.make_node("Identity", ["labels_value"], [names[1]]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_detector",
        [_input()],
        [
            helper.make_tensor_value_info(names[0], TensorProto.FLOAT, [1, n, 5]),
            helper.make_tensor_value_info(names[1], TensorProto.INT64, [1, n]),
        ],
        initializer=[d, lab, numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")],
    )
    return _save(graph, path)


def mean_channel0_detector(path: Path, h: int | str = 64, w: int | str = 64) -> Path:
    """One person box [8, 8, 24, 40] whose score is mean(input[:, 0]) / 255: shows what the model received."""
    nodes = [
        helper.make_node("Slice", ["input", "s0", "s1", "ax"], ["c0"]),
        helper.make_node("ReduceMean", ["c0"], ["m"], keepdims=1),  # (1, 1, 1, 1)
        helper.make_node("Reshape", ["m", "shape111"], ["m3"]),
        helper.make_node("Div", ["m3", "k255"], ["score"]),
        helper.make_node("Concat", ["box", "score"], ["dets"], axis=2),
        helper.make_node("Identity", ["label"], ["labels"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "s0"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "s1"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax"),
        numpy_helper.from_array(np.array([1, 1, 1], dtype=np.int64), "shape111"),
        numpy_helper.from_array(np.array(255.0, dtype=np.float32), "k255"),
        numpy_helper.from_array(np.array([[[8, 8, 24, 40]]], dtype=np.float32), "box"),
        numpy_helper.from_array(np.array([[0]], dtype=np.int64), "label"),
    ]
    graph = helper.make_graph(
        nodes,
        "mean_detector",
        [_input(h, w)],
        [
            helper.make_tensor_value_info("dets", TensorProto.FLOAT, [1, 1, 5]),
            helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 1]),
        ],
        initializer=inits,
    )
    return _save(graph, path)


IMAGE = np.zeros((96, 128, 3), dtype=np.uint8)  # H=96, W=128 → ratio min(64/96, 64/128) = 0.5


def test_threshold_class_filter_nms_max_people_and_rescaling(tmp_path: Path) -> None:
    dets = [
        [10, 10, 30, 40, 0.90],  # person
        [11, 10, 31, 40, 0.80],  # person, IoU ~0.9 with the first → suppressed by NMS
        [40, 5, 60, 30, 0.60],  # person
        [0, 0, 20, 20, 0.95],  # class 2: not a person
        [40, 30, 60, 45, 0.40],  # person below threshold
        [50, 40, 90, 70, 0.70],  # person, crosses the image edge in image pixels → clipped
    ]
    labels = [0, 0, 0, 2, 0, 0]
    det = OnnxPersonDetector(constant_detector(tmp_path / "d.onnx", dets, labels), score_threshold=0.5, nms_iou=0.45)
    assert det.input_hw == (64, 64)
    found = det.detect(IMAGE)
    np.testing.assert_allclose(found.scores, [0.9, 0.7, 0.6])
    np.testing.assert_allclose(found.boxes[0], [20, 20, 60, 80])  # canvas / 0.5
    np.testing.assert_allclose(found.boxes[1], [100, 80, 128, 96])  # [100, 80, 180, 140] clipped to 128x96
    np.testing.assert_allclose(found.boxes[2], [80, 10, 120, 60])
    top2 = det.detect(IMAGE, max_people=2)
    np.testing.assert_allclose(top2.scores, [0.9, 0.7])
    assert det.detect(IMAGE, max_people=0).boxes.shape == (0, 4)
    loose = OnnxPersonDetector(tmp_path / "d.onnx", score_threshold=0.5, nms_iou=0.95)
    assert len(loose.detect(IMAGE).boxes) == 4  # the near-duplicate survives a looser NMS


def test_outputs_found_by_order_when_not_named(tmp_path: Path) -> None:
    path = constant_detector(tmp_path / "d.onnx", [[1, 2, 3, 4, 0.9]], [0], names=("out0", "out1"))
    found = OnnxPersonDetector(path).detect(IMAGE)
    np.testing.assert_allclose(found.boxes, [[2, 4, 6, 8]])


def test_no_people(tmp_path: Path) -> None:
    path = constant_detector(tmp_path / "d.onnx", [[1, 2, 3, 4, 0.1]], [0])
    found = OnnxPersonDetector(path).detect(IMAGE)
    assert found.boxes.shape == (0, 4)
    assert found.scores.shape == (0,)


def test_input_is_bgr_letterboxed_with_114_padding(tmp_path: Path) -> None:
    image = np.zeros((96, 128, 3), dtype=np.uint8)
    image[..., 0], image[..., 2] = 10, 200  # R = 10, B = 200; BGR channel 0 is B
    det = OnnxPersonDetector(mean_channel0_detector(tmp_path / "m.onnx"), score_threshold=0.0)
    (score,) = det.detect(image).scores
    # resized image fills the top 48 of 64 rows with 200; the bottom 16 rows are padding 114
    assert score == pytest.approx((48 * 200 + 16 * 114) / 64 / 255, rel=1e-5)
    np.testing.assert_allclose(det.detect(image).boxes, [[16, 16, 48, 80]])


def test_rtmdet_normalisation(tmp_path: Path) -> None:
    image = np.full((64, 64, 3), 200, dtype=np.uint8)
    path = mean_channel0_detector(tmp_path / "m.onnx")
    det = OnnxPersonDetector(path, family=DetectorFamily.RTMDET, score_threshold=-10.0)
    (score,) = det.detect(image).scores
    assert score == pytest.approx((200 - 103.53) / 57.375 / 255, rel=1e-5)


def test_dynamic_input_uses_default_size(tmp_path: Path) -> None:
    path = mean_channel0_detector(tmp_path / "m.onnx", h="height", w="width")
    det = OnnxPersonDetector(path, score_threshold=0.0, default_input_size=(32, 32))
    assert det.input_hw == (32, 32)
    np.testing.assert_allclose(det.detect(IMAGE).boxes, [[32, 32, 96, 96]])  # ratio 0.25, clipped to h=96


def test_letterbox_shapes() -> None:
    tensor, ratio = letterbox(np.zeros((30, 100, 3), np.uint8), (64, 48), DetectorFamily.YOLOX)
    assert tensor.shape == (1, 3, 64, 48)
    assert ratio == pytest.approx(0.48)
    assert tensor.dtype == np.float32


def test_nms_keeps_best_of_overlapping() -> None:
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]]
    assert nms(boxes, [0.5, 0.9, 0.3, 0.1], 0.5) == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5) == []


def test_load_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        OnnxPersonDetector(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(CheckpointError, match="cannot load"):
        OnnxPersonDetector(bad)


def test_box_finder_sources(tmp_path: Path) -> None:
    image = np.zeros((96, 128, 3), dtype=np.uint8)
    plain = PersonBoxFinder()
    assert plain.default_source == BoxSource.WHOLE_FRAME
    whole = plain.find(image)
    assert whole.source == BoxSource.WHOLE_FRAME
    np.testing.assert_array_equal(whole.boxes, whole_frame_box(128, 96))
    client = plain.find(image, [[1, 2, 30, 40], [-5, 0, 200, 90], [5, 5, 6, 6]], max_people=2)
    assert client.source == BoxSource.CLIENT
    assert len(client) == 2
    np.testing.assert_array_equal(client.scores, [1.0, 1.0])
    assert len(plain.find(image, [])) == 0

    det = OnnxPersonDetector(constant_detector(tmp_path / "d.onnx", [[10, 10, 30, 40, 0.9]], [0]))
    finder = PersonBoxFinder(det)
    assert finder.default_source == BoxSource.DETECTOR
    found = finder.find(image)
    assert found.source == BoxSource.DETECTOR
    np.testing.assert_allclose(found.boxes, [[20, 20, 60, 80]])
    assert finder.find(image, [[0, 0, 5, 5]]).source == BoxSource.CLIENT


@pytest.mark.parametrize(
    ("boxes", "message"),
    [([[0, 0, 10]], "x1, y1, x2, y2"), ([[0, 0, float("nan"), 5]], "finite"), ([[5, 0, 5, 10]], "empty")],
)
def test_invalid_client_boxes(boxes: list[list[float]], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        validate_client_boxes(boxes)
