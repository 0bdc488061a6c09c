"""Whole CA-PF (HRNet + lifter): image flip test, precomputed features, no input mutation."""

from __future__ import annotations

import pytest
import torch

from model.capf import CAPF_PRESETS
from model.capf_full import CAPF, crop_to_ref, flip_crop_keypoints, flip_images_nchw
from model.hrnet import HRNET_PRESETS
from model.skeleton import H36M_FLIP_PERM, flip_pose


@pytest.fixture(scope="module")
def model() -> CAPF:
    torch.manual_seed(0)
    m = CAPF(HRNET_PRESETS["hrnet-micro"], CAPF_PRESETS["capf-tiny"]).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


def _inputs(b: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Half-size crops (128×96) keep the tests fast; the model is size-agnostic (any multiple of 32)."""
    gen = torch.Generator().manual_seed(3)
    images = torch.randn(b, 128, 96, 3, generator=gen)
    kp = torch.rand(b, 17, 2, generator=gen) * 2 - 1
    crop = torch.rand(b, 17, 2, generator=gen) * torch.tensor([192.0, 256.0])
    return images, kp, crop


def test_crop_helpers() -> None:
    crop = torch.tensor([[[0.0, 0.0], [96.0, 128.0], [191.0, 255.0]]])
    torch.testing.assert_close(
        crop_to_ref(crop), torch.tensor([[[-1.0, -1.0], [0.0, 0.0], [191 / 96 - 1, 255 / 128 - 1]]])
    )
    kp = torch.arange(34, dtype=torch.float32).view(1, 17, 2)
    flipped = flip_crop_keypoints(kp)
    assert torch.equal(flipped[0, 1], torch.tensor([192 - kp[0, 4, 0] - 1, kp[0, 4, 1]]))  # r_hip ← l_hip
    assert torch.equal(flip_crop_keypoints(flipped), kp)  # an involution
    assert torch.equal(flip_images_nchw(torch.arange(6.0).view(1, 1, 2, 3))[0, 0, 0], torch.tensor([2.0, 1.0, 0.0]))


def test_forward_never_mutates_caller_inputs(model: CAPF) -> None:
    images, kp, crop = _inputs()
    before = [t.clone() for t in (images, kp, crop)]
    with torch.no_grad():
        model(images, kp, crop)
        model(images, kp, crop, flip_test=True)
    for old, new in zip(before, (images, kp, crop), strict=True):
        assert torch.equal(old, new)


def test_flip_test_is_the_mean_of_plain_and_unflipped_mirror(model: CAPF) -> None:
    images, kp, crop = _inputs()
    with torch.no_grad():
        plain = model(images, kp, crop)
        mirrored = model(torch.flip(images, [2]), flip_pose(kp, H36M_FLIP_PERM), flip_crop_keypoints(crop))
        tta = model(images, kp, crop, flip_test=True)
    torch.testing.assert_close(tta, (plain + flip_pose(mirrored, H36M_FLIP_PERM)) / 2, atol=1e-5, rtol=0)
    assert (tta - plain).abs().max() > 1e-4  # the mirror pass really contributes


def test_lift_from_features_matches_forward(model: CAPF) -> None:
    images, kp, crop = _inputs()
    with torch.no_grad():
        feats = model.features(images)
        flip_feats = model.features(torch.flip(images, [2]))
        assert [tuple(f.shape) for f in feats] == [(2, 8, 32, 24), (2, 16, 16, 12), (2, 32, 8, 6), (2, 64, 4, 3)]
        torch.testing.assert_close(model.lift_from_features(kp, crop, feats), model(images, kp, crop))
        torch.testing.assert_close(
            model.lift_from_features(kp, crop, feats, flip_feats=flip_feats),
            model(images, kp, crop, flip_test=True),
            atol=1e-5,
            rtol=0,
        )


def test_backbone_and_lifter_channels_must_agree() -> None:
    with pytest.raises(ValueError, match="feature channels"):
        CAPF(HRNET_PRESETS["hrnet-micro"], CAPF_PRESETS["capf-w32"])


def test_images_must_be_nhwc(model: CAPF) -> None:
    with pytest.raises(ValueError, match="NHWC"):
        model.features(torch.zeros(1, 3, 256, 192))
