"""Top-down 2D pose geometry and heatmap decoding, exactly as mmpose 1.3.2 does it for HRNet 256x192.

The stage, per person box::

    box (xyxy px) ── box_to_center_scale ──▶ centre (2,), scale (2,) with 1.25 padding, 192:256 aspect
              ── warp_matrix / warp_crops (cv2.warpAffine INTER_LINEAR arithmetic, zero border) ──▶ (256, 192, 3) uint8
              ── normalize_crops (ImageNet mean/std on RGB) ──▶ (3, 256, 192) float32
              ── network ──▶ heatmaps (17, 64, 48)   [optionally averaged with flip_heatmaps(flipped crop)]
              ── decode_heatmaps (argmax, quarter-pixel shift) ──▶ crop pixels (17, 2), scores (17,)
              ── crop_to_image ──▶ image pixels (17, 2)

Pure functions over numpy/torch; nothing here knows about serving. The quirks kept on purpose
(they are what mmpose and the HRNet evaluation compute):

- ``box_to_center_scale`` works in float32 like mmpose's ``bbox_xyxy2cs`` + ``_fix_aspect_ratio``.
- ``warp_matrix`` builds the three float32 point pairs mmpose builds and solves them with
  ``cv2.getAffineTransform``; ``warp_crops`` then reproduces OpenCV's classic fixed-point
  ``warpAffine(INTER_LINEAR)`` (the one mmpose's published results and the conformance vector used)
  bit for bit, in torch, on CPU or GPU, for all crops of an image at once.
- ``decode_heatmaps`` marks joints whose maximum is ``<= 0`` with heatmap location ``-1`` (their
  score stays the raw maximum), and only shifts x when ``1 < x < W-1 and 0 < y < H`` and y when
  ``1 < y < H-1 and 0 < x < W`` — mmpose's ``refine_keypoints`` bounds, asymmetric as they are.
- ``flip_heatmaps`` flips the width axis, swaps COCO left/right channels and shifts one column right
  (column 0 keeps its value), as mmpose's ``flip_heatmaps(..., shift_heatmap=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import torch

from model.skeleton import COCO_FLIP_PERM

FloatArray = npt.NDArray[np.float32]
ByteImage = npt.NDArray[np.uint8]

INPUT_WIDTH: Final = 192
INPUT_HEIGHT: Final = 256
HEATMAP_WIDTH: Final = 48
HEATMAP_HEIGHT: Final = 64
BOX_PADDING: Final = 1.25
IMAGENET_MEAN_RGB: Final[tuple[float, float, float]] = (123.675, 116.28, 103.53)
IMAGENET_STD_RGB: Final[tuple[float, float, float]] = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class CropGeometry:
    """Where each person's crop sits in its image.

    ``centers``: ``(N, 2) float32`` image pixels (x, y); ``scales``: ``(N, 2) float32`` image pixels
    (width, height) of the region warped to the input, already padded and at the input's aspect ratio.
    """

    centers: FloatArray
    scales: FloatArray

    def __len__(self) -> int:
        return int(self.centers.shape[0])

    def select(self, index: int) -> CropGeometry:
        """The geometry of person ``index`` alone (``(1, 2)`` arrays)."""
        return CropGeometry(self.centers[index : index + 1], self.scales[index : index + 1])


def box_to_center_scale(
    boxes_xyxy: npt.ArrayLike,
    padding: float = BOX_PADDING,
    input_size: tuple[int, int] = (INPUT_WIDTH, INPUT_HEIGHT),
) -> CropGeometry:
    """Boxes → crop centres and scales with padding and the input's aspect ratio (mmpose ``GetBBoxCenterScale``
    followed by ``TopdownAffine._fix_aspect_ratio``).

    Args:
        boxes_xyxy: ``(N, 4)`` (x1, y1, x2, y2) image pixels.
        padding: scale factor on the box size (1.25 for the COCO HRNet models).
        input_size: network input (width, height) in pixels; its ratio is kept by growing the short side.
    Returns:
        :class:`CropGeometry` with ``(N, 2) float32`` centres and scales.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    centers = np.stack([boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]], axis=1) * np.float32(0.5)
    sizes = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1) * np.float32(padding)
    aspect = np.float32(input_size[0] / input_size[1])
    w, h = sizes[:, :1], sizes[:, 1:]
    scales = np.where(w > h * aspect, np.hstack([w, w / aspect]), np.hstack([h * aspect, h])).astype(np.float32)
    return CropGeometry(centers.astype(np.float32), scales)


def _third_point(a: FloatArray, b: FloatArray) -> FloatArray:
    """``b + rot90(a - b)``: the third point that pins an affine map given two (mmpose ``_get_3rd_point``)."""
    d = a - b
    return (b + np.array([-d[1], d[0]], dtype=np.float32)).astype(np.float32)


def warp_matrix(
    center: npt.ArrayLike,
    scale: npt.ArrayLike,
    output_size: tuple[int, int] = (INPUT_WIDTH, INPUT_HEIGHT),
    inverse: bool = False,
) -> npt.NDArray[np.float64]:
    """The ``(2, 3) float64`` affine map from image pixels to crop pixels (``inverse``: crop → image).

    The box's centre goes to the crop centre; ``scale[0]`` image pixels span ``output_size[0]`` crop
    pixels (the same factor on y since the scale has the crop's aspect ratio). Built like mmpose's
    ``get_warp_matrix(center, scale, rot=0, output_size)``: three float32 point pairs through
    ``cv2.getAffineTransform``.
    """
    c = np.asarray(center, dtype=np.float32).reshape(2)
    src_w = np.float32(np.asarray(scale, dtype=np.float32).reshape(2)[0])
    dst_w, dst_h = float(output_size[0]), float(output_size[1])
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = c
    src[1] = c + np.array([0.0, src_w * -0.5], dtype=np.float32)
    src[2] = _third_point(src[0], src[1])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0.0, dst_w * -0.5])
    dst[2] = _third_point(dst[0], dst[1])
    mat = cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)
    return np.asarray(mat, dtype=np.float64)


# OpenCV's classic fixed-point bilinear warp (imgwarp.cpp, OpenCV <= 4.10): source coordinates in 1/1024 px
# rounded to 1/32 px, integer bilinear weights summing to 2**15, round-half-up. OpenCV >= 4.11 replaced it with a
# float path whose uint8 output differs by a few grey levels, which moves mmpose's keypoints; reproducing the
# classic arithmetic here keeps the crops identical to mmpose's whatever cv2 is installed.
_AB_BITS: Final = 10
_INTER_BITS: Final = 5
_INTER_TAB: Final = 1 << _INTER_BITS
_COEF_BITS: Final = 15


def _fixed_point_rows_cols(
    forward: npt.NDArray[np.float64], out_w: int, out_h: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per-column and per-row parts of the fixed-point source coordinates, as ``cv2.warpAffine`` computes them.

    Returns ``(x_of_col, y_of_col, x_of_row, y_of_row)``: the source x (resp. y) in 1/1024 px of crop pixel
    ``(row, col)`` is ``x_of_row[row] + x_of_col[col]`` (resp. ``y_of_row[row] + y_of_col[col]``).
    """
    m = forward.reshape(6).astype(np.float64)
    det = m[0] * m[4] - m[1] * m[3]
    d = 1.0 / det if det != 0 else 0.0
    a11, a12, a21, a22 = m[4] * d, -m[1] * d, -m[3] * d, m[0] * d
    b1 = -a11 * m[2] - a12 * m[5]
    b2 = -a21 * m[2] - a22 * m[5]
    scale = float(1 << _AB_BITS)
    round_delta = (1 << _AB_BITS) // _INTER_TAB // 2
    cols = np.arange(out_w, dtype=np.float64)
    rows = np.arange(out_h, dtype=np.float64)
    x_of_col = np.rint(a11 * cols * scale).astype(np.int64)
    y_of_col = np.rint(a21 * cols * scale).astype(np.int64)
    x_of_row = np.rint((a12 * rows + b1) * scale).astype(np.int64) + round_delta
    y_of_row = np.rint((a22 * rows + b2) * scale).astype(np.int64) + round_delta
    return x_of_col, y_of_col, x_of_row, y_of_row


def warp_crops(
    image: torch.Tensor,
    geometry: CropGeometry,
    output_size: tuple[int, int] = (INPUT_WIDTH, INPUT_HEIGHT),
) -> torch.Tensor:
    """Warp each person's region of one image to the network input size, on the image's device.

    Bit-exact with ``cv2.warpAffine(image, warp_matrix(c, s), output_size, flags=INTER_LINEAR)`` of OpenCV
    <= 4.10 (what mmpose's crops are): bilinear, pixels outside the image count as 0.

    Args:
        image: ``(H, W, C) uint8`` (any channel order; channels are independent), CPU or CUDA.
        geometry: ``N`` crops of this image.
    Returns:
        ``(N, output_h, output_w, C) uint8`` on ``image.device``.
    """
    if image.dtype != torch.uint8 or image.ndim != 3:
        raise ValueError(f"expected an (H, W, C) uint8 image, got {tuple(image.shape)} {image.dtype}")
    out_w, out_h = output_size
    h, w, c = image.shape
    n = len(geometry)
    if n == 0:
        return torch.empty((0, out_h, out_w, c), dtype=torch.uint8, device=image.device)
    parts = [
        _fixed_point_rows_cols(warp_matrix(geometry.centers[i], geometry.scales[i], output_size), out_w, out_h)
        for i in range(n)
    ]
    dev = image.device
    x_col, y_col, x_row, y_row = (torch.from_numpy(np.stack([p[k] for p in parts])).to(dev) for k in range(4))
    shift = _AB_BITS - _INTER_BITS
    fx_full = (x_row[:, :, None] + x_col[:, None, :]) >> shift  # (N, out_h, out_w) in 1/32 px
    fy_full = (y_row[:, :, None] + y_col[:, None, :]) >> shift
    x0, y0 = fx_full >> _INTER_BITS, fy_full >> _INTER_BITS
    fx, fy = fx_full & (_INTER_TAB - 1), fy_full & (_INTER_TAB - 1)
    flat = image.reshape(h * w, c).to(torch.int32)

    def sample(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(-1)
        values = flat.index_select(0, idx).reshape(*yy.shape, c)
        return values * inside.unsqueeze(-1).to(torch.int32)

    unit = 1 << (_COEF_BITS - 2 * _INTER_BITS)  # weights (32 - f) * (32 - g) * 32 sum to 2**15
    w00 = ((_INTER_TAB - fx) * (_INTER_TAB - fy) * unit).to(torch.int32).unsqueeze(-1)
    w01 = (fx * (_INTER_TAB - fy) * unit).to(torch.int32).unsqueeze(-1)
    w10 = ((_INTER_TAB - fx) * fy * unit).to(torch.int32).unsqueeze(-1)
    w11 = (fx * fy * unit).to(torch.int32).unsqueeze(-1)
    acc = w00 * sample(y0, x0) + w01 * sample(y0, x0 + 1) + w10 * sample(y0 + 1, x0) + w11 * sample(y0 + 1, x0 + 1)
    out = (acc + (1 << (_COEF_BITS - 1))) >> _COEF_BITS
    return out.clamp(0, 255).to(torch.uint8)


def crop_boxes(
    image: ByteImage,
    geometry: CropGeometry,
    output_size: tuple[int, int] = (INPUT_WIDTH, INPUT_HEIGHT),
) -> ByteImage:
    """Numpy convenience over :func:`warp_crops`: ``(H, W, 3) uint8`` → ``(N, out_h, out_w, 3) uint8`` (CPU)."""
    crops = warp_crops(torch.from_numpy(np.ascontiguousarray(image)), geometry, output_size)
    out: ByteImage = crops.numpy()
    return out


def normalize_crops(crops: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, H, W, 3) uint8`` RGB crops → ``(N, 3, H, W)`` ``dtype`` network input: ``(x - mean) / std``
    with the ImageNet RGB mean/std in 0..255 units (mmpose ``PoseDataPreprocessor``), computed in float32
    on the crops' device, then cast to ``dtype``.
    """
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) crops, got {tuple(crops.shape)}")
    x = crops.permute(0, 3, 1, 2).to(torch.float32)
    mean = torch.tensor(IMAGENET_MEAN_RGB, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD_RGB, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype)


def flip_heatmaps(
    heatmaps: torch.Tensor, flip_perm: Sequence[int] = COCO_FLIP_PERM, shift: bool = True
) -> torch.Tensor:
    """Heatmaps of a horizontally flipped crop → heatmaps in the original crop's frame.

    Args:
        heatmaps: ``(N, K, H, W)`` heatmaps the network gave for the flipped crops.
        flip_perm: left/right channel permutation (COCO-17 by default).
        shift: shift one heatmap column to the right (column 0 keeps its value), compensating the
            half-pixel misalignment of flipping the 4x-downsampled map, as mmpose ``shift_heatmap=True``.
    Returns:
        ``(N, K, H, W)`` new tensor, same dtype/device.
    """
    perm = torch.as_tensor(list(flip_perm), device=heatmaps.device)
    out = heatmaps.flip(-1).index_select(1, perm)
    if shift:
        out[..., 1:] = out[..., :-1].clone()
    return out


def decode_heatmaps(
    heatmaps: torch.Tensor, input_size: tuple[int, int] = (INPUT_WIDTH, INPUT_HEIGHT)
) -> tuple[torch.Tensor, torch.Tensor]:
    """MSRA heatmap decoding (mmpose ``MSRAHeatmap.decode`` with ``unbiased=False``).

    Argmax per joint (first maximum in row-major order); a quarter heatmap pixel toward the higher
    neighbour on each axis (no shift on ties or outside mmpose's bounds, see the module notes);
    joints whose maximum is ``<= 0`` sit at heatmap location -1; then scaled by input/heatmap size.

    Args:
        heatmaps: ``(N, K, H, W)`` float heatmaps (any device; decoded in float32).
        input_size: network input (width, height) the heatmap covers.
    Returns:
        keypoints ``(N, K, 2) float32`` crop pixels (x, y), scores ``(N, K) float32`` = heatmap maxima.
    """
    hm = heatmaps.to(torch.float32)
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    scores = flat.amax(dim=-1)
    index = flat.argmax(dim=-1)  # the first maximum, as numpy's argmax
    x = (index % w).to(torch.int64)
    y = torch.div(index, w, rounding_mode="floor").to(torch.int64)
    positive = scores > 0
    x = torch.where(positive, x, torch.full_like(x, -1))
    y = torch.where(positive, y, torch.full_like(y, -1))

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        flat_index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).unsqueeze(-1)
        return flat.gather(-1, flat_index).squeeze(-1)

    can_dx = (x > 1) & (x < w - 1) & (y > 0) & (y < h)
    can_dy = (y > 1) & (y < h - 1) & (x > 0) & (x < w)
    dx = torch.where(can_dx, at(y, x + 1) - at(y, x - 1), torch.zeros_like(scores))
    dy = torch.where(can_dy, at(y + 1, x) - at(y - 1, x), torch.zeros_like(scores))
    locs = torch.stack([x, y], dim=-1).to(torch.float32)
    locs = locs + torch.stack([torch.sign(dx), torch.sign(dy)], dim=-1) * 0.25
    factor = torch.tensor([input_size[0] / w, input_size[1] / h], dtype=torch.float32, device=hm.device)
    return locs * factor, scores


def crop_to_image(
    keypoints_crop: npt.ArrayLike,
    geometry: CropGeometry,
    input_size: tuple[int, int] = (INPUT_WIDTH, INPUT_HEIGHT),
) -> FloatArray:
    """Crop pixels → image pixels: ``kp / input_size * scale + center - scale / 2`` (mmpose's inverse).

    Args:
        keypoints_crop: ``(N, K, 2)`` crop pixels.
        geometry: the ``N`` crops' centres and scales.
    Returns:
        ``(N, K, 2) float32`` image pixels.
    """
    kp = np.asarray(keypoints_crop, dtype=np.float64)
    size = np.asarray(input_size, dtype=np.float64)
    scale = geometry.scales.astype(np.float64)[:, None, :]
    center = geometry.centers.astype(np.float64)[:, None, :]
    return (kp / size * scale + center - 0.5 * scale).astype(np.float32)


def image_to_crop(
    keypoints_image: npt.ArrayLike,
    geometry: CropGeometry,
    input_size: tuple[int, int] = (INPUT_WIDTH, INPUT_HEIGHT),
) -> FloatArray:
    """Inverse of :func:`crop_to_image`: ``(N, K, 2)`` image pixels → ``(N, K, 2) float32`` crop pixels."""
    kp = np.asarray(keypoints_image, dtype=np.float64)
    size = np.asarray(input_size, dtype=np.float64)
    scale = geometry.scales.astype(np.float64)[:, None, :]
    center = geometry.centers.astype(np.float64)[:, None, :]
    return ((kp - center + 0.5 * scale) / scale * size).astype(np.float32)


class HeatmapNetwork(Protocol):
    """What the top-down stage needs of a network (:class:`model.hrnet.PoseHRNet` is one)."""

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]: ...


@dataclass(frozen=True)
class NetworkOutput:
    """One batched pass over ``N`` crops.

    ``heatmaps``: ``(N, K, 64, 48) float32`` (the flip-test average when flip test ran);
    ``features`` / ``flip_features``: the network's feature maps ``(N, C_k, H_k, W_k)`` for the crops and
    for the horizontally flipped crops (as the network computed them, not flipped back), or ``None``.
    """

    heatmaps: torch.Tensor
    features: list[torch.Tensor] | None
    flip_features: list[torch.Tensor] | None


def run_network(
    net: HeatmapNetwork,
    inputs: torch.Tensor,
    flip_test: bool,
    keep_features: bool = False,
    flip_features: bool | None = None,
    flip_perm: Sequence[int] = COCO_FLIP_PERM,
) -> NetworkOutput:
    """Crops through the network in ONE forward (flipped crops appended to the batch when needed).

    Args:
        net: heatmap network in eval mode.
        inputs: ``(N, 3, 256, 192)`` normalised crops (see :func:`normalize_crops`), on the net's device/dtype.
        flip_test: average with the flipped crops' heatmaps (:func:`flip_heatmaps`, shift on), as mmpose's
            ``flip_test=True, flip_mode='heatmap', shift_heatmap=True``.
        keep_features: also return the crops' feature maps.
        flip_features: with ``keep_features``, also return the flipped crops' feature maps (CA-PF's flip
            augmentation consumes them); ``None`` = same as ``flip_test``.
    Returns:
        :class:`NetworkOutput`; heatmaps in float32 whatever the network's dtype.
    """
    n = inputs.shape[0]
    want_flip_features = keep_features and (flip_test if flip_features is None else flip_features)
    run_flipped = flip_test or want_flip_features
    batch = torch.cat([inputs, inputs.flip(-1)], dim=0) if run_flipped else inputs
    heatmaps, features = net(batch)
    heatmaps = heatmaps.to(torch.float32)
    flipped_back = flip_heatmaps(heatmaps[n:], flip_perm, shift=True) if flip_test else None
    heatmaps = heatmaps[:n] if flipped_back is None else (heatmaps[:n] + flipped_back) * 0.5
    if not keep_features:
        return NetworkOutput(heatmaps, None, None)
    return NetworkOutput(
        heatmaps,
        [f[:n] for f in features],
        [f[n:] for f in features] if want_flip_features else None,
    )
