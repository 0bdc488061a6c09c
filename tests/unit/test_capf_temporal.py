"""CA-PF temporal extension: window lengths, shared trunk, token cache equivalence, warm start."""

from __future__ import annotations

import pytest
import torch

from model.capf import CAPF_PRESETS, CAPFLifter, CAPFLifterConfig
from model.capf_temporal import SUPPORTED_FRAMES, CAPFTemporal, CAPFTemporalConfig

TINY = CAPF_PRESETS["capf-tiny"]


def _window(
    cfg: CAPFLifterConfig, b: int, f: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Random ``(B, F, 17, 2)`` joints / refs and per-frame ``(B, F, C, h, w)`` maps (small maps, size-agnostic)."""
    gen = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, f, 17, 2, generator=gen) * 2 - 1
    ref = torch.rand(b, f, 17, 2, generator=gen) * 2 - 1
    feats = [torch.randn(b, f, c, 16 >> k, 12 >> k, generator=gen) for k, c in enumerate(cfg.feature_channels)]
    return kp, ref, feats


def _perturb(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("frames", SUPPORTED_FRAMES)
def test_runs_for_every_supported_window(frames: int) -> None:
    torch.manual_seed(0)
    model = CAPFTemporal(TINY, CAPFTemporalConfig(frames=frames, depth=2)).eval()
    kp, ref, feats = _window(TINY, b=2, f=frames)
    with torch.no_grad():
        pose = model(kp, ref, feats)
        tokens = model.frame_tokens(kp.flatten(0, 1), ref.flatten(0, 1), [m.flatten(0, 1) for m in feats])
        via_cache = model.temporal_head(tokens.view(2, frames, 17, TINY.embed_dim))
    assert pose.shape == (2, 17, 3)
    assert torch.isfinite(pose).all()
    assert torch.equal(pose, via_cache)  # forward = temporal head over the cached per-frame tokens


def test_trunk_is_the_single_frame_lifter() -> None:
    """A single-frame state_dict loads strictly into the trunk, and its per-frame tokens equal joint_tokens."""
    torch.manual_seed(0)
    lifter = CAPFLifter(TINY).eval()
    _perturb(lifter)
    model = CAPFTemporal(TINY, CAPFTemporalConfig(frames=3, depth=1)).eval()
    model.trunk.load_state_dict(lifter.state_dict(), strict=True)
    assert set(model.state_dict()) == {f"trunk.{k}" for k in lifter.state_dict()} | {
        f"temporal.{k}" for k in model.temporal.state_dict()
    }
    kp, ref, feats = _window(TINY, b=2, f=3, seed=1)
    with torch.no_grad():
        tokens = model.frame_tokens(kp.flatten(0, 1), ref.flatten(0, 1), [m.flatten(0, 1) for m in feats])
        for t in range(3):  # frame by frame, as a frame buffer fills
            single = lifter.joint_tokens(kp[:, t], ref[:, t], [m[:, t] for m in feats])
            torch.testing.assert_close(tokens.view(2, 3, 17, -1)[:, t], single, atol=1e-5, rtol=0)


def test_warm_start_reproduces_single_frame_on_centre_frame() -> None:
    torch.manual_seed(0)
    model = CAPFTemporal(TINY, CAPFTemporalConfig(frames=9, depth=2)).eval()
    _perturb(model)
    model.init_temporal_from_trunk()
    kp, ref, feats = _window(TINY, b=2, f=9, seed=2)
    with torch.no_grad():
        pose = model(kp, ref, feats)
        centre = model.trunk(kp[:, 4], ref[:, 4], [m[:, 4] for m in feats])
    torch.testing.assert_close(pose, centre[:, 0], atol=1e-5, rtol=0)


def test_temporal_mixes_frames() -> None:
    """With a perturbed (untrained) head, other frames of the window change the centre-frame output."""
    torch.manual_seed(0)
    model = CAPFTemporal(TINY, CAPFTemporalConfig(frames=3, depth=1)).eval()
    _perturb(model)
    kp, ref, feats = _window(TINY, b=1, f=3)
    kp2 = kp.clone()
    kp2[:, 0] += 0.3
    with torch.no_grad():
        assert (model(kp, ref, feats) - model(kp2, ref, feats)).abs().max() > 1e-4


def test_config_and_shape_checks() -> None:
    with pytest.raises(ValueError, match="odd"):
        CAPFTemporalConfig(frames=4)
    model = CAPFTemporal(TINY, CAPFTemporalConfig(frames=3, depth=0)).eval()
    with pytest.raises(ValueError, match="3 frames"):
        model.temporal_head(torch.zeros(1, 5, 17, TINY.embed_dim))
    kp, ref, feats = _window(TINY, b=1, f=3)
    with pytest.raises(ValueError, match="leading"):
        model(kp, ref[:, :2], feats)
