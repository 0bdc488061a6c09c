"""CA-PF checkpoints: official key sets in the released formats load strictly; config inference; temporal format."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from model.capf import CAPF_PRESETS, CAPFLifter
from model.capf_full import CAPF
from model.capf_temporal import CAPFTemporal, CAPFTemporalConfig
from model.checkpoints.capf import (
    build_capf_temporal,
    infer_capf_config,
    infer_capf_lifter_config,
    load_capf,
    load_capf_lifter,
    load_capf_temporal,
    save_capf_temporal,
)
from model.checkpoints.common import CheckpointError
from model.hrnet import HRNET_PRESETS

WHOLE_MODEL_KEY_SETS = {"capf_h36m_hrnet_32": ("w32", "capf-w32"), "capf_h36m_hrnet_48": ("w48", "capf-w48")}
LIFTER_KEY_SETS = {"capf_h36m_hrnet_32_lifter": "capf-w32", "capf_h36m_cpn_lifter": "capf-cpn"}


def _official_keys(conformance_dir: Path, name: str) -> list[tuple[str, list[int]]]:
    pairs = json.loads((conformance_dir / "official_keys" / f"{name}_keys.json").read_text())
    return [(str(k), [int(d) for d in shape]) for k, shape in pairs]


def _synthetic_state(keys: list[tuple[str, list[int]]]) -> dict[str, torch.Tensor]:
    """Exactly the official keys and shapes. Lifter tensors are random; the (large) HRNet tensors are a distinct
    constant per key stored with stride 0, so a W48 file stays tiny yet every value is checkable after loading."""
    gen = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    for i, (k, shape) in enumerate(keys):
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(i, dtype=torch.long)
        elif "backbone." in k:
            state[k] = torch.full((), float(i)).expand(shape)
        else:
            state[k] = torch.randn(shape, generator=gen)
    return state


def _released(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """The ``best_epoch_*.bin`` layout: DataParallel-prefixed weights under ``model``, plus training state."""
    optimizer = {"state": {}, "param_groups": [{"lr": 6.4e-3, "params": [0, 1]}]}
    return {"epoch": 42, "lr": 6.4e-3, "model": {f"module.{k}": v for k, v in state.items()}, "optimizer": optimizer}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WHOLE_MODEL_KEY_SETS))
def test_released_whole_model_loads_strictly(conformance_dir: Path, tmp_path: Path, name: str) -> None:
    hrnet_preset, lifter_preset = WHOLE_MODEL_KEY_SETS[name]
    state = _synthetic_state(_official_keys(conformance_dir, name))
    path = tmp_path / "best_epoch_42.bin"
    torch.save(_released(state), path)

    model = load_capf(path)  # architecture inferred from the key shapes
    assert model.hrnet_cfg == HRNET_PRESETS[hrnet_preset]
    assert model.lifter_cfg == CAPF_PRESETS[lifter_preset]
    assert not model.training
    loaded = model.state_dict()
    assert list(loaded) == list(state)  # same names, same order as the official CA_PF
    for k, v in state.items():
        assert torch.equal(loaded[k], v.to(loaded[k].dtype)), k


@pytest.mark.parametrize("name", sorted(WHOLE_MODEL_KEY_SETS))
def test_infer_whole_model_config(conformance_dir: Path, name: str) -> None:
    hrnet_preset, lifter_preset = WHOLE_MODEL_KEY_SETS[name]
    state = _synthetic_state(_official_keys(conformance_dir, name))
    assert infer_capf_config(state) == (HRNET_PRESETS[hrnet_preset], CAPF_PRESETS[lifter_preset])


@pytest.mark.parametrize("name", sorted(LIFTER_KEY_SETS))
@pytest.mark.parametrize("prefix", ["", "module.", "module.volume_net."])
def test_lifter_only_key_sets_load_strictly(conformance_dir: Path, tmp_path: Path, name: str, prefix: str) -> None:
    state = _synthetic_state(_official_keys(conformance_dir, name))
    path = tmp_path / f"{name}.pth"
    torch.save({prefix + k: v for k, v in state.items()}, path)
    assert infer_capf_lifter_config(state) == CAPF_PRESETS[LIFTER_KEY_SETS[name]]

    lifter = load_capf_lifter(path)
    assert lifter.cfg == CAPF_PRESETS[LIFTER_KEY_SETS[name]]
    loaded = lifter.state_dict()
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def _tiny_capf() -> CAPF:
    torch.manual_seed(0)
    return CAPF(HRNET_PRESETS["hrnet-micro"], CAPF_PRESETS["capf-tiny"]).eval()


def test_errors_name_missing_unexpected_and_misshaped_keys(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in _tiny_capf().state_dict().items()}
    del state["module.volume_net.head.1.bias"]
    state["module.volume_net.extra.weight"] = torch.zeros(1)
    state["module.volume_net.coord_embed.weight"] = torch.zeros(3, 3)
    path = tmp_path / "best_epoch_1.bin"
    torch.save({"epoch": 1, "lr": 0.1, "model": state, "optimizer": {}}, path)
    with pytest.raises(CheckpointError) as err:
        load_capf(path, _tiny_capf())
    message = str(err.value)
    assert "volume_net.head.1.bias" in message
    assert "volume_net.extra.weight" in message
    assert "volume_net.coord_embed.weight" in message


def test_not_a_capf_file(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="no CA-PF state_dict"):
        load_capf_lifter(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_capf(tmp_path / "missing.bin")
    torch.save({"coord_embed.weight": torch.zeros(16, 2)}, path)
    with pytest.raises(CheckpointError, match="Spatial_pos_embed"):
        load_capf_lifter(path)


def test_single_frame_checkpoint_loads_into_temporal_trunk(tmp_path: Path) -> None:
    whole = _tiny_capf()
    with torch.no_grad():
        for p in whole.parameters():
            p.add_(0.05 * torch.randn_like(p))
    released = tmp_path / "best_epoch_3.bin"
    torch.save({"epoch": 3, "lr": 0.1, "model": {f"module.{k}": v for k, v in whole.state_dict().items()}}, released)
    lifter_only = tmp_path / "lifter.pth"
    torch.save(whole.volume_net.state_dict(), lifter_only)

    for path in (released, lifter_only):
        model = CAPFTemporal(CAPF_PRESETS["capf-tiny"], CAPFTemporalConfig(frames=3, depth=1))
        assert load_capf_temporal(model, path) is False  # trunk loaded, temporal head untrained
        trunk = model.trunk.state_dict()
        assert all(torch.equal(trunk[k], v) for k, v in whole.volume_net.state_dict().items())

    built, head_loaded = build_capf_temporal(lifter_only, frames=27)
    assert head_loaded is False
    assert built.frames == 27
    assert built.lifter_cfg == CAPF_PRESETS["capf-tiny"]


def test_temporal_format_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = CAPFTemporal(CAPF_PRESETS["capf-tiny"], CAPFTemporalConfig(frames=3, depth=1)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "capf_temporal_3.pt"
    save_capf_temporal(model, path)

    restored, head_loaded = build_capf_temporal(path)
    assert head_loaded is True
    assert restored.temporal_cfg == model.temporal_cfg
    assert restored.lifter_cfg == model.lifter_cfg
    state = restored.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())

    single = tmp_path / "lifter.pth"
    torch.save(CAPFLifter(CAPF_PRESETS["capf-tiny"]).state_dict(), single)
    other = CAPFTemporal(CAPF_PRESETS["capf-tiny"], CAPFTemporalConfig(frames=3, depth=1))
    assert load_capf_temporal(other, single, temporal_path=path) is True  # trunk from one file, head from another
    assert torch.equal(other.temporal.pos_embed, model.temporal.pos_embed)

    with pytest.raises(CheckpointError, match="does not match"):
        load_capf_temporal(CAPFTemporal(CAPF_PRESETS["capf-tiny"], CAPFTemporalConfig(frames=9, depth=1)), path)
    with pytest.raises(CheckpointError, match="27 requested"):
        build_capf_temporal(path, frames=27)
    with pytest.raises(CheckpointError, match="not a pose3d-capf-temporal"):
        load_capf_temporal(other, single, temporal_path=single)


@pytest.mark.parametrize(
    ("head", "reason"), [(None, "without a 'temporal_head'"), ([1, 2], "without a 'temporal_head'")]
)
def test_temporal_file_without_a_head_state_dict_is_a_checkpoint_error(
    tmp_path: Path, head: object, reason: str
) -> None:
    model = CAPFTemporal(CAPF_PRESETS["capf-tiny"], CAPFTemporalConfig(frames=3, depth=1))
    save_capf_temporal(model, tmp_path / "good.pt")
    obj = torch.load(tmp_path / "good.pt", weights_only=True)
    if head is None:
        del obj["temporal_head"]
    else:
        obj["temporal_head"] = head
    torch.save(obj, tmp_path / "headless.pt")
    with pytest.raises(CheckpointError, match=reason):
        build_capf_temporal(tmp_path / "headless.pt")
    with pytest.raises(CheckpointError, match=reason):
        load_capf_temporal(model, tmp_path / "headless.pt")


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda sd: sd.pop("feat_embed.0.weight"), "'feat_embed.0.weight'"),
        (lambda sd: sd.pop("context_blocks.0.attention_weights.weight"), "attention_weights"),
        (lambda sd: sd.update({"context_blocks.0.embed_proj.0.weight": torch.zeros(0, 8)}), "ZeroDivisionError"),
        (lambda sd: sd.update({"Spatial_pos_embed": torch.zeros(3)}), "ValueError"),
    ],
)
def test_config_inference_on_malformed_lifter_weights_is_a_checkpoint_error(
    edit: Callable[[dict[str, torch.Tensor]], object], named: str
) -> None:
    state = dict(CAPFLifter(CAPF_PRESETS["capf-tiny"]).state_dict())
    edit(state)
    with pytest.raises(CheckpointError, match=named):
        infer_capf_lifter_config(state)
