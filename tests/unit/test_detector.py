"""service.engine.detector: synthetic people come back where they are drawn; batching changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.hrnet import HRNET_PRESETS, PoseHRNet
from model.skeleton import COCO_FLIP_PERM, coco_to_h36m
from model.topdown import box_to_center_scale, image_to_crop
from service.engine.detector import PersonDetection, TopDownDetector

# Each COCO joint reads one colour channel; both joints of a left/right pair read the same channel, so the
# flip test's channel swap maps a joint's flipped heatmap onto a heatmap of the same colour.
JOINT_CHANNEL = [0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
assert all(JOINT_CHANNEL[j] == JOINT_CHANNEL[COCO_FLIP_PERM[j]] for j in range(17))


class BlobHRNet(PoseHRNet):
    """A tiny HRNet whose heatmap for joint j at heatmap pixel (u, v) is the crop's channel JOINT_CHANNEL[j]
    around crop pixel (4u, 4v) (plus a small share of the real head), so heatmaps peak on blobs of that colour
    the way a trained head peaks on a joint (heatmap pixel u stands for crop pixel 4u)."""

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        heatmaps, feats = super().forward(images)
        pooled = F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)[:, JOINT_CHANNEL, ::4, ::4]
        return pooled + 1e-3 * heatmaps, feats


def _net(seed: int = 0) -> BlobHRNet:
    torch.manual_seed(seed)
    return BlobHRNet(HRNET_PRESETS["hrnet-micro"])


def _draw_blob(image: np.ndarray, center: tuple[float, float], sigma: float, channel: int) -> None:
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-((xx - center[0]) ** 2 + (yy - center[1]) ** 2) / (2 * sigma**2))
    image[..., channel] = np.maximum(image[..., channel], (255 * blob).astype(np.uint8))


BOXES = [
    # (x1, y1, x2, y2): tall, wide, small, large, and boxes crossing the left/top/right/bottom borders
    (40.0, 30.0, 120.0, 250.0),
    (150.0, 200.0, 400.0, 280.0),
    (300.0, 40.0, 330.0, 80.0),
    (-60.0, -40.0, 120.0, 160.0),
    (380.0, 150.0, 520.0, 330.0),
]


def _scene(box: tuple[float, float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A 300x480 black image with three coloured blobs inside ``box`` and inside the image; returns the
    image and the (3, 2) blob centres (pixels) per colour channel."""
    image = np.zeros((300, 480, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    vx1, vy1, vx2, vy2 = max(x1, 0), max(y1, 0), min(x2, 479), min(y2, 299)
    g = box_to_center_scale(np.array([box], dtype=np.float32))
    sigma = max(1.5, float(g.scales[0, 0]) / 48 * 1.5)  # ~1.5 heatmap pixels wide
    fractions = [(0.3, 0.25), (0.7, 0.5), (0.45, 0.8)]
    centres = np.array([(vx1 + fx * (vx2 - vx1), vy1 + fy * (vy2 - vy1)) for fx, fy in fractions])
    for c, centre in enumerate(centres):
        _draw_blob(image, (float(centre[0]), float(centre[1])), sigma, c)
    return image, centres


@pytest.mark.parametrize("flip_test", [False, True])
@pytest.mark.parametrize("box", BOXES)
def test_keypoints_land_on_the_drawn_blobs(box: tuple[float, float, float, float], flip_test: bool) -> None:
    image, centres = _scene(box)
    detector = TopDownDetector(_net(), torch.device("cpu"))
    (people,) = detector.detect([image], [np.array([box])], [np.array([0.9])], flip_test=flip_test)
    (person,) = people
    heatmap_pixel = float(box_to_center_scale(np.array([box])).scales[0, 0]) / 48  # image px per heatmap px
    truth = centres[JOINT_CHANNEL]  # (17, 2)
    err = np.abs(person.keypoints_coco - truth).max(axis=1)
    assert (err <= 0.5 * heatmap_pixel).all(), (err, heatmap_pixel)  # the acceptance bound is one heatmap pixel
    assert person.box_score == pytest.approx(0.9)
    np.testing.assert_allclose(person.box, box)
    assert (person.scores_coco > 0).all()
    np.testing.assert_allclose(person.keypoints_h36m, coco_to_h36m(person.keypoints_coco), atol=1e-5)
    geometry = box_to_center_scale(np.array([box]))
    crop_truth = coco_to_h36m(image_to_crop(person.keypoints_coco[None], geometry))[0]
    np.testing.assert_allclose(person.crop_keypoints_h36m, crop_truth, atol=1e-3)
    assert person.features is None
    assert person.flip_features is None


def _scene_many() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(5)
    images, boxes, scores = [], [], []
    for n in (2, 0, 3, 1):
        images.append(rng.integers(0, 256, size=(200, 260, 3), dtype=np.uint8))
        x1 = rng.uniform(-30, 150, n)
        y1 = rng.uniform(-30, 120, n)
        boxes.append(np.stack([x1, y1, x1 + rng.uniform(20, 150, n), y1 + rng.uniform(20, 150, n)], 1))
        scores.append(rng.uniform(0.3, 1.0, n))
    return images, boxes, scores


def _same(a: PersonDetection, b: PersonDetection) -> None:
    np.testing.assert_allclose(a.keypoints_coco, b.keypoints_coco, atol=1e-3)
    np.testing.assert_allclose(a.scores_coco, b.scores_coco, atol=1e-5)
    np.testing.assert_allclose(a.crop_keypoints_h36m, b.crop_keypoints_h36m, atol=1e-3)
    assert a.features is not None
    assert b.features is not None
    for fa, fb in zip(a.features, b.features, strict=True):
        torch.testing.assert_close(fa, fb, atol=1e-5, rtol=1e-5)
    assert a.flip_features is not None
    assert b.flip_features is not None
    for fa, fb in zip(a.flip_features, b.flip_features, strict=True):
        torch.testing.assert_close(fa, fb, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_batched_equals_one_at_a_time() -> None:
    images, boxes, scores = _scene_many()
    detector = TopDownDetector(_net(1), torch.device("cpu"), keep_features=True)
    batched = detector.detect(images, boxes, scores, flip_test=True)
    assert [len(p) for p in batched] == [2, 0, 3, 1]
    for i, image in enumerate(images):
        for j in range(len(boxes[i])):
            (single,) = detector.detect([image], [boxes[i][j : j + 1]], [scores[i][j : j + 1]], flip_test=True)
            _same(batched[i][j], single[0])


def test_features_are_the_crops_maps() -> None:
    images, boxes, scores = _scene_many()
    net = _net(2)
    detector = TopDownDetector(net, torch.device("cpu"), keep_features=True)
    people = detector.detect(images[:1], boxes[:1], scores[:1], flip_test=False, flip_features=True)
    person = people[0][0]
    assert person.features is not None
    assert person.flip_features is not None
    assert [tuple(f.shape) for f in person.features] == [(8, 64, 48), (16, 32, 24), (32, 16, 12), (64, 8, 6)]
    no_flip = detector.detect(images[:1], boxes[:1], scores[:1], flip_test=False, flip_features=False)
    assert no_flip[0][0].flip_features is None
    assert no_flip[0][0].features is not None


def test_no_boxes_means_no_forward_and_empty_results() -> None:
    detector = TopDownDetector(_net(), torch.device("cpu"))
    image = np.zeros((50, 60, 3), dtype=np.uint8)
    assert detector.detect([image, image], [np.zeros((0, 4))] * 2, [np.zeros(0)] * 2, flip_test=True) == [[], []]
    assert detector.detect([], [], [], flip_test=False) == []


def test_mismatched_inputs_are_rejected() -> None:
    detector = TopDownDetector(_net(), torch.device("cpu"))
    image = np.zeros((50, 60, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="boxes but"):
        detector.detect([image], [np.zeros((2, 4))], [np.zeros(1)], flip_test=False)
    with pytest.raises(ValueError, match="images but"):
        detector.detect([image], [], [], flip_test=False)


def test_half_needs_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA"):
        TopDownDetector(_net(), torch.device("cpu"), half=True)


def test_warmup_runs() -> None:
    TopDownDetector(_net(), torch.device("cpu"), keep_features=True).warmup()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("half", [False, True])
def test_cuda_matches_cpu(half: bool) -> None:
    images, boxes, scores = _scene_many()
    cpu = TopDownDetector(_net(3), torch.device("cpu")).detect(images, boxes, scores, flip_test=True)
    cuda_detector = TopDownDetector(_net(3), torch.device("cuda"), half=half, keep_features=True)
    cuda_detector.warmup()
    gpu = cuda_detector.detect(images, boxes, scores, flip_test=True)
    heatmap_px = 4.0 * 150 / 192 * 1.25
    for pc, pg in zip(cpu, gpu, strict=True):
        for a, b in zip(pc, pg, strict=True):
            tol = heatmap_px if half else 1e-2
            assert np.abs(a.keypoints_coco - b.keypoints_coco).max() <= tol
            assert b.features is not None
            assert b.features[0].device.type == "cuda"
