"""CA-PF lifter: conformance vectors, the joint-token split, presets/config, input checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.capf import CAPF_PRESETS, CAPFLifter, CAPFLifterConfig, official_feature_channels
from model.conformance.core import VectorKind, check_file, load_vector
from model.conformance.run_capf import lifter_config_from_vector

VECTORS = ("capf_lifter_small.pt", "capf_lifter_small_b.pt", "capf_lifter_small_d4.pt", "capf_full_tiny.pt")


@pytest.mark.parametrize("name", VECTORS)
def test_conformance_vector_reproduced(conformance_dir: Path, name: str) -> None:
    kind, checks = check_file(conformance_dir / name)
    assert kind in (VectorKind.CAPF_LIFTER, VectorKind.CAPF_FULL)
    assert {c.name for c in checks} == set(load_vector(conformance_dir / name)["outputs"])
    for c in checks:
        assert c.passed, f"{name} {c.name}: max abs err {c.max_abs_err:.3e} > {c.tolerance:.0e}"


@pytest.mark.parametrize(("name", "depth"), [("capf_lifter_small.pt", 2), ("capf_lifter_small_b.pt", 1)])
def test_truncated_vectors_give_per_stack_depth(conformance_dir: Path, name: str, depth: int) -> None:
    cfg = lifter_config_from_vector(load_vector(conformance_dir / name)["config"])
    assert (cfg.context_depth, cfg.res_depth, cfg.joint_depth) == (depth, depth, depth)


def _inputs(cfg: CAPFLifterConfig, b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, 17, 2, generator=gen) * 2 - 1
    ref = torch.rand(b, 17, 2, generator=gen) * 2.2 - 1.1  # a little outside the crop too
    feats = [torch.randn(b, c, 64 >> k, 48 >> k, generator=gen) for k, c in enumerate(cfg.feature_channels)]
    return kp, ref, feats


def _perturbed(cfg: CAPFLifterConfig) -> CAPFLifter:
    torch.manual_seed(0)
    lifter = CAPFLifter(cfg).eval()
    with torch.no_grad():
        for p in lifter.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return lifter


def test_forward_is_head_of_joint_tokens() -> None:
    cfg = CAPF_PRESETS["capf-tiny"]
    lifter = _perturbed(cfg)
    kp, ref, feats = _inputs(cfg)
    with torch.no_grad():
        tokens = lifter.joint_tokens(kp, ref, feats)
        pose = lifter(kp, ref, feats)
    assert tokens.shape == (2, 17, (cfg.levels + 1) * cfg.embed_dim_ratio)
    assert pose.shape == (2, 1, 17, 3)
    assert torch.equal(pose, lifter.head_from_tokens(tokens))


def test_lifter_does_not_mutate_inputs_and_is_per_sample() -> None:
    cfg = CAPF_PRESETS["capf-tiny"]
    lifter = _perturbed(cfg)
    kp, ref, feats = _inputs(cfg, b=3)
    before = [t.clone() for t in (kp, ref, *feats)]
    with torch.no_grad():
        batched = lifter(kp, ref, feats)
        single = lifter(kp[1:2], ref[1:2], [f[1:2] for f in feats])
    for old, new in zip(before, (kp, ref, *feats), strict=True):
        assert torch.equal(old, new)
    torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=0)


def test_context_changes_the_pose() -> None:
    """The features really matter: other feature maps at the same joints give another pose."""
    cfg = CAPF_PRESETS["capf-tiny"]
    lifter = _perturbed(cfg)
    kp, ref, feats = _inputs(cfg)
    with torch.no_grad():
        a = lifter(kp, ref, feats)
        b = lifter(kp, ref, [f * 2 for f in feats])
    assert (a - b).abs().max() > 1e-3


def test_published_presets_match_paper_and_official_channels() -> None:
    w32, w48, cpn = CAPF_PRESETS["capf-w32"], CAPF_PRESETS["capf-w48"], CAPF_PRESETS["capf-cpn"]
    for cfg in (w32, w48, cpn):
        assert (cfg.embed_dim_ratio, cfg.num_heads, cfg.deformable_heads) == (128, 8, 4)
        assert (cfg.context_depth, cfg.res_depth, cfg.joint_depth) == (4, 4, 4)
        assert cfg.embed_dim == 640
    assert w32.feature_channels == official_feature_channels("hrnet_32", 32)
    assert w48.feature_channels == official_feature_channels("hrnet_48", 48)
    assert cpn.feature_channels == official_feature_channels("cpn", 256)
    official = CAPFLifterConfig.from_official({"base_dim": 32, "embed_dim_ratio": 128, "levels": 4, "depth": 1})
    assert official == w32  # the official constructor ignores `depth`


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="levels"):
        CAPFLifterConfig.from_official({"base_dim": 8, "embed_dim_ratio": 32, "levels": 3})
    with pytest.raises(ValueError, match="backbone"):
        official_feature_channels("resnet", 8)
    with pytest.raises(ValueError, match="divisible"):
        CAPFLifterConfig(embed_dim_ratio=18)


def test_other_level_counts_and_depths_run() -> None:
    cfg = CAPFLifterConfig(embed_dim_ratio=8, feature_channels=(4, 6), context_depth=2, res_depth=0, joint_depth=3)
    lifter = CAPFLifter(cfg).eval()
    kp, ref, feats = _inputs(cfg)
    with torch.no_grad():
        assert lifter(kp, ref, feats).shape == (2, 1, 17, 3)
    assert lifter.Spatial_pos_embed.shape == (1, 3, 17, 8)


def test_bad_inputs_are_rejected() -> None:
    cfg = CAPF_PRESETS["capf-tiny"]
    lifter = CAPFLifter(cfg).eval()
    kp, ref, feats = _inputs(cfg)
    with pytest.raises(ValueError, match="feature maps"):
        lifter(kp, ref, feats[:3])
    with pytest.raises(ValueError, match="feature map 2"):
        lifter(kp, ref, [*feats[:2], feats[3], feats[3]])
    with pytest.raises(ValueError, match="keypoints_2d"):
        lifter(kp[:, :16], ref, feats)
    with pytest.raises(ValueError, match="ref"):
        lifter(kp, ref[:1], feats)
