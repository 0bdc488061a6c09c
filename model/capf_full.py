"""The whole Context-Aware PoseFormer: frozen HRNet backbone + CA-PF lifter, with image flip test.

As the published ``CA_PF`` (``mvn.models.conpose``): images ``(B, 256, 192, 3)`` NHWC, RGB, ImageNet-normalised
→ NCHW → :class:`model.hrnet.HRNetBackbone` → four feature maps; the crop keypoints (pixels in the 192×256
crop) become the lifter's reference points ``crop_px / [96, 128] - 1``. Unlike the published code, the
caller's tensors are never modified (it normalises the crop keypoints in place).

Image flip test (published ``flip_test``): the crop is mirrored (``W`` axis), the full-image keypoints are
mirrored in normalised coordinates (x negated, left/right joints swapped), the crop keypoints become
``x → 192 - x - 1`` with left/right swapped; the flipped prediction is un-mirrored (x negated, L/R swapped) and
averaged with the plain one.

Parameter names are the official ones (``backbone.*``, ``volume_net.*``), so a released ``best_epoch_*.bin``
loads after dropping DataParallel's ``module.`` prefix (:mod:`model.checkpoints.capf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import torch
from torch import nn

from model.capf import CAPFLifter, CAPFLifterConfig
from model.hrnet import HRNetBackbone, HRNetConfig
from model.skeleton import H36M_FLIP_PERM, flip_pose

CROP_WIDTH: Final = 192
CROP_HEIGHT: Final = 256


def crop_to_ref(crop_px: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` crop pixels (x, y in the 192×256 crop) → ``(..., 2)`` [-1, 1] crop coordinates (new tensor)."""
    half = crop_px.new_tensor([CROP_WIDTH // 2, CROP_HEIGHT // 2])
    return crop_px / half - 1


def flip_crop_keypoints(crop_px: torch.Tensor) -> torch.Tensor:
    """``(B, 17, 2)`` H36M crop pixels → the same joints in the mirrored crop: ``x → 192 - x - 1``, L/R swapped."""
    out = crop_px.index_select(-2, torch.as_tensor(H36M_FLIP_PERM, device=crop_px.device)).clone()
    out[..., 0] = CROP_WIDTH - out[..., 0] - 1
    return out


def flip_images_nchw(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` → the horizontally mirrored crops (what the flip test runs the backbone on)."""
    return torch.flip(images, dims=[3])


class CAPF(nn.Module):
    """HRNet backbone (``backbone``) + CA-PF lifter (``volume_net``)."""

    def __init__(self, hrnet_cfg: HRNetConfig, lifter_cfg: CAPFLifterConfig) -> None:
        super().__init__()
        if tuple(hrnet_cfg.feature_channels) != tuple(lifter_cfg.feature_channels):
            raise ValueError(
                f"backbone feature channels {hrnet_cfg.feature_channels} do not match the lifter's "
                f"{lifter_cfg.feature_channels}"
            )
        self.hrnet_cfg = hrnet_cfg
        self.lifter_cfg = lifter_cfg
        self.backbone = HRNetBackbone(hrnet_cfg)
        self.volume_net = CAPFLifter(lifter_cfg)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 256, 192, 3)`` NHWC ImageNet-normalised RGB crops → the backbone's four NCHW feature maps."""
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (B, H, W, 3) NHWC, got {tuple(images.shape)}")
        feats: list[torch.Tensor] = self.backbone(images.permute(0, 3, 1, 2).contiguous())
        return feats

    def lift_from_features(
        self,
        keypoints_2d: torch.Tensor,
        keypoints_2d_crop: torch.Tensor,
        feats: Sequence[torch.Tensor],
        flip_feats: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The lifter on precomputed backbone features (the detector computes them once per batch).

        Args:
            keypoints_2d: ``(B, 17, 2)`` float32, H36M joints, full-image normalised coordinates.
            keypoints_2d_crop: ``(B, 17, 2)`` float32, the same joints in crop pixels (192×256 crop).
            feats: the backbone's ``L`` NCHW feature maps of the crops.
            flip_feats: the feature maps of the horizontally mirrored crops; when given, the result is the
                flip-test average (see module docstring).
        Returns:
            ``(B, 1, 17, 3)`` float32 root-relative 3D joints (metres). Inputs are not modified.
        """
        ref = crop_to_ref(keypoints_2d_crop)
        if flip_feats is None:
            pose: torch.Tensor = self.volume_net(keypoints_2d, ref, feats)
            return pose
        b = keypoints_2d.shape[0]
        kp_both = torch.cat([keypoints_2d, flip_pose(keypoints_2d, H36M_FLIP_PERM)])
        ref_both = torch.cat([ref, crop_to_ref(flip_crop_keypoints(keypoints_2d_crop))])
        feats_both = [torch.cat([f, ff]) for f, ff in zip(feats, flip_feats, strict=True)]
        both: torch.Tensor = self.volume_net(kp_both, ref_both, feats_both)
        unflipped = flip_pose(both[b:], H36M_FLIP_PERM)
        return (both[:b] + unflipped) / 2

    def forward(
        self,
        images: torch.Tensor,
        keypoints_2d: torch.Tensor,
        keypoints_2d_crop: torch.Tensor,
        flip_test: bool = False,
    ) -> torch.Tensor:
        """Images and 2D joints → 3D joints.

        Args:
            images: ``(B, 256, 192, 3)`` float32 NHWC RGB crops, ImageNet-normalised.
            keypoints_2d: ``(B, 17, 2)`` float32 H36M joints, full-image normalised coordinates.
            keypoints_2d_crop: ``(B, 17, 2)`` float32, the same joints in crop pixels.
            flip_test: average with the prediction on mirrored images (one backbone pass on 2B crops).
        Returns:
            ``(B, 1, 17, 3)`` float32 root-relative 3D joints (metres). Inputs are not modified.
        """
        if not flip_test:
            return self.lift_from_features(keypoints_2d, keypoints_2d_crop, self.features(images))
        b = images.shape[0]
        nchw = images.permute(0, 3, 1, 2)
        both = self.backbone(torch.cat([nchw, flip_images_nchw(nchw)]).contiguous())
        return self.lift_from_features(
            keypoints_2d, keypoints_2d_crop, [f[:b] for f in both], flip_feats=[f[b:] for f in both]
        )
