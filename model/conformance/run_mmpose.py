"""Runner for mmpose top-down heatmap vectors (``conformance/mmpose_hrnet_tiny.pt`` and any vector of its format).

Format: ``config['mmpose_model']`` is mmpose's ``TopdownPoseEstimator`` config (HRNet backbone ``extra``,
``HeatmapHead`` with ``MSRAHeatmap`` codec 192x256 → 48x64, ImageNet ``data_preprocessor``); ``state_dict``
has mmpose's key names (``backbone.*``, ``head.final_layer.*``); ``inputs`` are ``image_rgb (H, W, 3) uint8``
and ``boxes_xyxy (N, 4)`` pixels; outputs ``keypoints (N, 17, 2)`` image pixels and ``keypoint_scores (N, 17)``
with flip test off, and the same with ``_flip_test`` on. The pipeline is :mod:`model.topdown` — the one the
service's detector runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from model.checkpoints.common import CheckpointError, load_state_dict_strict, remove_module_prefix
from model.checkpoints.hrnet import KEY_MAPS, HRNetFormat
from model.conformance.core import ConformanceError
from model.hrnet import HRNetConfig, PoseHRNet
from model.topdown import (
    IMAGENET_MEAN_RGB,
    IMAGENET_STD_RGB,
    HeatmapNetwork,
    box_to_center_scale,
    crop_boxes,
    crop_to_image,
    decode_heatmaps,
    normalize_crops,
    run_network,
)


def _check_supported(cfg: Mapping[str, Any]) -> None:
    head = cfg.get("head", {})
    decoder = head.get("decoder", {})
    problems = []
    if cfg.get("backbone", {}).get("type") != "HRNet":
        problems.append(f"backbone {cfg.get('backbone', {}).get('type')!r} (only HRNet)")
    if head.get("type") != "HeatmapHead" or head.get("deconv_out_channels") not in (None, (), []):
        problems.append("head must be HeatmapHead without deconvolutions")
    if decoder.get("type") != "MSRAHeatmap" or decoder.get("unbiased", False):
        problems.append(f"decoder {decoder.get('type')!r} (only MSRAHeatmap, unbiased=False)")
    sizes = (list(decoder.get("input_size", [192, 256])), list(decoder.get("heatmap_size", [48, 64])))
    if sizes != ([192, 256], [48, 64]):
        problems.append(f"codec sizes {sizes}: only 192x256 input with 48x64 heatmaps")
    pre = cfg.get("data_preprocessor", {})
    norm = (list(pre.get("mean", IMAGENET_MEAN_RGB)), list(pre.get("std", IMAGENET_STD_RGB)))
    if norm != (list(IMAGENET_MEAN_RGB), list(IMAGENET_STD_RGB)) or not pre.get("bgr_to_rgb", True):
        problems.append(f"data_preprocessor {dict(pre)}: only ImageNet mean/std on RGB (bgr_to_rgb=True)")
    test_cfg = cfg.get("test_cfg", {})
    if test_cfg.get("flip_mode", "heatmap") != "heatmap" or not test_cfg.get("shift_heatmap", True):
        problems.append("flip test must be flip_mode='heatmap' with shift_heatmap=True")
    if problems:
        raise ConformanceError("unsupported mmpose model: " + "; ".join(problems))


def build_from_mmpose_config(cfg: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> PoseHRNet:
    """A :class:`PoseHRNet` (eval) from mmpose's model config, with mmpose-named weights loaded strictly through the
    same key map as mmpose checkpoint files (:data:`model.checkpoints.hrnet.KEY_MAPS`)."""
    _check_supported(cfg)
    net = PoseHRNet(HRNetConfig.from_mmpose(cfg["backbone"]["extra"]), num_joints=int(cfg["head"]["out_channels"]))
    try:
        load_state_dict_strict(
            net, remove_module_prefix(state), "mmpose conformance vector", key_map=KEY_MAPS[HRNetFormat.MMPOSE]
        )
    except CheckpointError as e:
        raise ConformanceError(str(e)) from e
    return net.eval()


def run_mmpose_topdown(
    vector: dict[str, Any], prepare: Callable[[PoseHRNet], HeatmapNetwork] | None = None, channels_last: bool = False
) -> dict[str, torch.Tensor]:
    """Reproduce ``keypoints``, ``keypoint_scores`` and their ``_flip_test`` versions for every input box.

    ``prepare`` turns the loaded network into the one to run (e.g. :func:`model.fastpath.fold_batch_norms`);
    ``channels_last`` runs network and crops NHWC, as the serving detector does.
    """
    cfg = vector["config"]["mmpose_model"]
    hrnet = build_from_mmpose_config(cfg, vector["state_dict"])
    net: HeatmapNetwork = hrnet if prepare is None else prepare(hrnet)
    image = vector["inputs"]["image_rgb"].numpy().astype(np.uint8)
    boxes = vector["inputs"]["boxes_xyxy"].numpy().astype(np.float32)
    geometry = box_to_center_scale(boxes)
    crops = torch.from_numpy(crop_boxes(image, geometry))
    inputs = normalize_crops(crops)
    if channels_last and isinstance(net, nn.Module):
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    out: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for flip_test, suffix in ((False, ""), (True, "_flip_test")):
            keypoints_crop, scores = decode_heatmaps(run_network(net, inputs, flip_test=flip_test).heatmaps)
            keypoints = crop_to_image(keypoints_crop.numpy(), geometry)
            out["keypoints" + suffix] = torch.from_numpy(keypoints)
            out["keypoint_scores" + suffix] = scores.clone()
    return out
