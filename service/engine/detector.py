"""The frozen 2D detector stage: person boxes → COCO-17 / H36M-17 keypoints and CA-PF feature maps, batched.

All crops of all images of a batch go through the network in ONE forward (flipped crops appended to
the same batch when flip test or flipped features need them); geometry and decoding are
:mod:`model.topdown` (mmpose 1.3.2's arithmetic, pinned by ``conformance/mmpose_hrnet_tiny.pt``).
Crops are warped on the detector's device, so a GPU detector uploads each frame once as uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import numpy.typing as npt
import torch

from model.fastpath import fold_batch_norms as fold_batch_norms_of
from model.hrnet import PoseHRNet
from model.joints import coco_scores_to_h36m, coco_to_h36m
from model.topdown import (
    INPUT_HEIGHT,
    INPUT_WIDTH,
    CropGeometry,
    HeatmapNetwork,
    box_to_center_scale,
    crop_to_image,
    decode_heatmaps,
    normalize_crops,
    run_network,
    warp_crops,
)
from service.engine.types import ByteImage, FloatArray


@dataclass(frozen=True)
class PersonDetection:
    """One person in one image.

    ``box``: ``(4,)`` xyxy image pixels; ``keypoints_coco`` ``(17, 2)`` image pixels and ``scores_coco``
    ``(17,)`` (heatmap maxima, may be <= 0 for joints the network does not see); the same in H36M-17
    order (:func:`model.joints.coco_to_h36m`); ``crop_keypoints_h36m`` ``(17, 2)`` pixels inside the
    192x256 crop (CA-PF's ``ref`` = crop / [96, 128] - 1); ``features`` / ``flip_features``: the four
    ``(C_k, H_k, W_k) float32`` maps of this person's crop / horizontally flipped crop, on the detector's
    device, when the detector keeps features (else ``None``). All arrays float32.
    """

    box: FloatArray
    box_score: float
    keypoints_coco: FloatArray
    scores_coco: FloatArray
    keypoints_h36m: FloatArray
    scores_h36m: FloatArray
    crop_keypoints_h36m: FloatArray
    features: tuple[torch.Tensor, ...] | None
    flip_features: tuple[torch.Tensor, ...] | None


def box_batch(
    images: Sequence[ByteImage], boxes: Sequence[npt.ArrayLike], box_scores: Sequence[npt.ArrayLike]
) -> tuple[list[FloatArray], list[FloatArray], list[CropGeometry]]:
    """Per image ``(N_i, 4)`` xyxy boxes and ``(N_i,)`` scores, float32, and their 256x192 crops' geometry.
    Raises ValueError when counts disagree."""
    if not len(images) == len(boxes) == len(box_scores):
        raise ValueError(f"{len(images)} images but {len(boxes)} box lists and {len(box_scores)} score lists")
    box_arrays = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]
    score_arrays = [np.asarray(s, dtype=np.float32).reshape(-1) for s in box_scores]
    for i, (b, s) in enumerate(zip(box_arrays, score_arrays, strict=True)):
        if len(b) != len(s):
            raise ValueError(f"image {i}: {len(b)} boxes but {len(s)} scores")
    return box_arrays, score_arrays, [box_to_center_scale(b) for b in box_arrays]


def people_per_image(
    geometries: Sequence[CropGeometry],
    boxes: Sequence[FloatArray],
    box_scores: Sequence[FloatArray],
    keypoints_crop: FloatArray,
    scores: FloatArray,
    features: tuple[Sequence[torch.Tensor] | None, Sequence[torch.Tensor] | None] = (None, None),
) -> list[list[PersonDetection]]:
    """Per image, one :class:`PersonDetection` per box, from a batch's crops in image then box order:
    ``keypoints_crop`` ``(N, 17, 2)`` COCO crop pixels, ``scores`` ``(N, 17)``, and ``features``: the crops' and
    the mirrored crops' per level ``(N, C_l, H_l, W_l)`` maps, each None when not kept."""
    geometry = CropGeometry(
        np.concatenate([g.centers for g in geometries]), np.concatenate([g.scales for g in geometries])
    )
    all_boxes, all_scores = np.concatenate(boxes), np.concatenate(box_scores)
    keypoints = crop_to_image(keypoints_crop, geometry)
    kp_h36m, sc_h36m, crop_h36m = coco_to_h36m(keypoints), coco_scores_to_h36m(scores), coco_to_h36m(keypoints_crop)
    feats, flip_feats = features
    people = [
        PersonDetection(
            box=all_boxes[i].copy(),
            box_score=float(all_scores[i]),
            keypoints_coco=keypoints[i],
            scores_coco=scores[i].astype(np.float32),
            keypoints_h36m=kp_h36m[i],
            scores_h36m=sc_h36m[i],
            crop_keypoints_h36m=crop_h36m[i],
            features=None if feats is None else tuple(f[i] for f in feats),
            flip_features=None if flip_feats is None else tuple(f[i] for f in flip_feats),
        )
        for i in range(len(all_boxes))
    ]
    ends = accumulate(len(g) for g in geometries)
    return [people[end - len(g) : end] for g, end in zip(geometries, ends, strict=True)]


def default_channels_last(device: torch.device) -> bool:
    """Whether the detector runs channels-last (NHWC: oneDNN's / cuDNN's fast convolutions, ``bench/README.md``)
    on ``device`` unless a setting says otherwise."""
    return device.type in ("cpu", "cuda")


class TopDownDetector:
    """Batched top-down HRNet over person boxes.

    Args:
        net: a :class:`PoseHRNet` with COCO-17 heatmaps (weights already loaded).
        device: where crops, network and decoding run.
        half: float16 network (CUDA only); heatmaps are still decoded in float32.
        keep_features: return each person's feature maps (CA-PF needs them).
        channels_last: NHWC network and inputs; ``None`` = :func:`default_channels_last` for the device.
        fold_batch_norms: run a copy of ``net`` with its BatchNorms folded into the convolutions
            (:func:`model.fastpath.fold_batch_norms`; equal outputs to float32 rounding).
    """

    def __init__(
        self,
        net: PoseHRNet,
        device: torch.device,
        half: bool = False,
        keep_features: bool = False,
        channels_last: bool | None = None,
        fold_batch_norms: bool = True,
    ) -> None:
        if half and device.type != "cuda":
            raise ValueError("half precision needs a CUDA device")
        self.device = device
        self.dtype = torch.float16 if half else torch.float32
        self.keep_features = keep_features
        self.channels_last = default_channels_last(device) if channels_last is None else channels_last
        net = fold_batch_norms_of(net) if fold_batch_norms else net
        net = net.eval().to(device=device, dtype=self.dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.net: HeatmapNetwork = net.requires_grad_(False)

    def use_network(self, network: HeatmapNetwork) -> None:
        """Run another implementation of the same network from now on (ONNX Runtime: ``detector.backend``):
        CPU and float32 only; crops go to it NCHW."""
        if self.device.type != "cpu" or self.dtype != torch.float32:
            raise ValueError("another detector backend runs on the CPU in float32 only")
        self.net = network
        self.channels_last = False

    def detect(
        self,
        images: Sequence[ByteImage],
        boxes: Sequence[npt.ArrayLike],
        box_scores: Sequence[npt.ArrayLike],
        flip_test: bool,
        flip_features: bool | None = None,
    ) -> list[list[PersonDetection]]:
        """Keypoints (and features) of every box of every image, in one network pass.

        Args:
            images: ``(H_i, W_i, 3) uint8`` RGB images.
            boxes: per image ``(N_i, 4)`` xyxy pixels (``N_i`` may be 0).
            box_scores: per image ``(N_i,)``.
            flip_test: average heatmaps with the flipped crops' (mmpose heatmap flip test).
            flip_features: with ``keep_features``, also return the flipped crops' features; ``None`` = ``flip_test``.
        Returns:
            per image, one :class:`PersonDetection` per box, in box order.
        """
        box_arrays, score_arrays, geometries = box_batch(images, boxes, box_scores)
        if not any(len(g) for g in geometries):
            return [[] for _ in images]
        with torch.inference_mode():
            crops = torch.cat(
                [
                    warp_crops(torch.from_numpy(np.ascontiguousarray(img)).to(self.device), g)
                    for img, g in zip(images, geometries, strict=True)
                    if len(g)
                ]
            )
            inputs = normalize_crops(crops, dtype=self.dtype)
            if self.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            out = run_network(self.net, inputs, flip_test, self.keep_features, flip_features)
            keypoints_crop, scores = decode_heatmaps(out.heatmaps, (INPUT_WIDTH, INPUT_HEIGHT))
            plain = None if out.features is None else [f.float() for f in out.features]
            flip = None if out.flip_features is None else [f.float() for f in out.flip_features]
        return people_per_image(
            geometries, box_arrays, score_arrays, keypoints_crop.cpu().numpy(), scores.cpu().numpy(), (plain, flip)
        )

    def warmup(self, batch_size: int = 2) -> None:
        """Run the whole stage once (flip test and features on) so kernels and allocators are ready."""
        image = np.zeros((INPUT_HEIGHT, INPUT_WIDTH, 3), dtype=np.uint8)
        box = np.array([[0.0, 0.0, INPUT_WIDTH, INPUT_HEIGHT]] * batch_size, dtype=np.float32)
        self.detect([image], [box], [np.ones(batch_size, dtype=np.float32)], flip_test=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
