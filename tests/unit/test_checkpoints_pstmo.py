"""P-STMO checkpoints: official key sets load strictly in the released format, errors name keys, config inference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.checkpoints.common import CheckpointError
from model.checkpoints.pstmo import (
    KEY_RULES,
    infer_pstmo_config,
    load_pstmo_checkpoint,
    official_to_project_key,
    project_to_official_key,
    to_official_state_dict,
)
from model.pstmo import PSTMO, PSTMO_PRESETS, PSTMOConfig

OFFICIAL_KEY_SETS = {
    "pstmo_243_full": "pstmo-243",
    "pstmo_243_small": "pstmo-243-small",
    "pstmo_81_small": "pstmo-81",
    "pstmo_27": "pstmo-27",
}


def _official_keys(conformance_dir: Path, name: str) -> list[tuple[str, list[int]]]:
    pairs = json.loads((conformance_dir / "official_keys" / f"{name}_keys.json").read_text())
    return [(str(k), [int(d) for d in shape]) for k, shape in pairs]


def _synthetic_state(keys: list[tuple[str, list[int]]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the official keys and shapes (counters as int64 scalars)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: torch.tensor(7, dtype=torch.long) if k.endswith("num_batches_tracked") else torch.randn(shape, generator=gen)
        for k, shape in keys
    }


@pytest.mark.parametrize("name", sorted(OFFICIAL_KEY_SETS))
def test_official_key_set_loads_strictly_in_released_format(conformance_dir: Path, tmp_path: Path, name: str) -> None:
    state = _synthetic_state(_official_keys(conformance_dir, name))
    path = tmp_path / f"{name}.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # released format: bare, DataParallel prefix

    cfg = PSTMO_PRESETS[OFFICIAL_KEY_SETS[name]]
    model = load_pstmo_checkpoint(path, cfg)
    assert not model.training
    loaded = to_official_state_dict(model)
    assert list(loaded) == list(state)  # same keys, same order as the official model
    for k, v in state.items():
        assert torch.equal(loaded[k], v.to(loaded[k].dtype)), k

    inferred = load_pstmo_checkpoint(path)  # architecture read from the key shapes
    assert inferred.cfg == cfg


@pytest.mark.parametrize("name", sorted(OFFICIAL_KEY_SETS))
def test_infer_config_on_every_official_key_set(conformance_dir: Path, name: str) -> None:
    state = _synthetic_state(_official_keys(conformance_dir, name))
    assert infer_pstmo_config(state) == PSTMO_PRESETS[OFFICIAL_KEY_SETS[name]]
    assert infer_pstmo_config({f"module.{k}": v for k, v in state.items()}) == PSTMO_PRESETS[OFFICIAL_KEY_SETS[name]]


@pytest.mark.parametrize("name", sorted(OFFICIAL_KEY_SETS))
def test_key_map_is_a_bijection_on_official_keys(conformance_dir: Path, name: str) -> None:
    keys = [k for k, _ in _official_keys(conformance_dir, name)]
    project = [official_to_project_key(k) for k in keys]
    assert len(set(project)) == len(keys)
    assert set(project) == set(PSTMO(PSTMO_PRESETS[OFFICIAL_KEY_SETS[name]]).state_dict())
    assert [project_to_official_key(k) for k in project] == keys


def test_key_map_table_and_unknown_keys() -> None:
    assert ("encoder.fc_1.{p}", "sem.fc_in.{p}") in KEY_RULES
    assert official_to_project_key("Transformer.model.layers.3.self_attn.linears.2.weight") == (
        "tem.layers.3.attn.value.weight"
    )
    assert official_to_project_key("Transformer_reduce.model.layers.0.sublayer.1.norm.a_2") == (
        "mofa.layers.0.norm_ffn.weight"
    )
    assert official_to_project_key("fcn_1.0.running_var") == "head_sequence.norm.running_var"
    assert official_to_project_key("something.else") == "something.else"
    assert official_to_project_key("module.encoder.fc_1.weight") == "module.encoder.fc_1.weight"


def test_loads_without_module_prefix_and_infers_tiny_presets(tmp_path: Path) -> None:
    for preset in ("pstmo-tiny-9", "pstmo-tiny-27"):
        torch.manual_seed(1)
        source = PSTMO(PSTMO_PRESETS[preset]).eval()
        path = tmp_path / f"{preset}.pth"
        torch.save(to_official_state_dict(source), path)
        model = load_pstmo_checkpoint(path)
        assert model.cfg == PSTMO_PRESETS[preset]
        kp = 0.2 * torch.randn(1, model.cfg.frames, 17, 2)
        with torch.no_grad():
            assert torch.equal(model.lift(kp), source.lift(kp))
        assert infer_pstmo_config(source.state_dict()) == PSTMO_PRESETS[preset]  # project names too


def test_infer_with_explicit_strides() -> None:
    state = to_official_state_dict(PSTMO(PSTMOConfig(frames=25, stride_num=(5, 5), layers=1, channel=16, d_hid=32)))
    assert infer_pstmo_config(state).stride_num == (5, 5)  # smallest uniform stride reducing 25 → 1 in 2 layers
    cfg = PSTMOConfig(frames=24, stride_num=(4, 6), layers=1, channel=16, d_hid=32)
    state = to_official_state_dict(PSTMO(cfg))
    assert infer_pstmo_config(state, stride_num=(4, 6)) == cfg
    with pytest.raises(CheckpointError, match="has 3 entries"):
        infer_pstmo_config(state, stride_num=(2, 2, 6))
    with pytest.raises(CheckpointError, match="not a P-STMO state_dict"):
        infer_pstmo_config({"backbone.conv1.weight": torch.zeros(1)})


def _save_tiny(tmp_path: Path, edit: str) -> Path:
    torch.manual_seed(0)
    state = {f"module.{k}": v for k, v in to_official_state_dict(PSTMO(PSTMO_PRESETS["pstmo-tiny-9"])).items()}
    if edit == "missing":
        del state["module.Transformer_reduce.model.layers.1.feed_forward.w_2.weight"]
    elif edit == "unexpected":
        state["module.Transformer.model.layers.1.feed_forward.w_1.bias"] = torch.zeros(64)
    elif edit == "shape":
        state["module.fcn.1.weight"] = torch.zeros(48, 32, 1)
    path = tmp_path / f"{edit}.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ("missing", "missing keys [1]: Transformer_reduce.model.layers.1.feed_forward.w_2.weight"),
        ("unexpected", "unexpected keys [1]: Transformer.model.layers.1.feed_forward.w_1.bias"),
        ("shape", "fcn.1.weight: checkpoint (48, 32, 1) vs model (51, 32, 1)"),
    ],
)
def test_mismatched_keys_are_named(tmp_path: Path, edit: str, named: str) -> None:
    path = _save_tiny(tmp_path, edit)
    with pytest.raises(CheckpointError) as info:
        load_pstmo_checkpoint(path, PSTMO_PRESETS["pstmo-tiny-9"])
    assert named in str(info.value)
    assert str(path) in str(info.value)


def test_truncated_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    whole = _save_tiny(tmp_path, "none").read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_pstmo_checkpoint(path, PSTMO_PRESETS["pstmo-tiny-9"])
    with pytest.raises(CheckpointError, match="not found"):
        load_pstmo_checkpoint(tmp_path / "absent.pth")


def test_wrapped_or_foreign_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "model": {"module.encoder.fc_1.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="bare P-STMO state_dict"):
        load_pstmo_checkpoint(path)


@pytest.mark.parametrize("key", ["encoder.fc_1.weight", "fcn.1.weight"])
def test_config_inference_on_a_dimensionless_size_key_is_a_checkpoint_error(key: str) -> None:
    state = to_official_state_dict(PSTMO(PSTMO_PRESETS["pstmo-tiny-9"]))
    state[key] = torch.zeros(())
    with pytest.raises(CheckpointError, match="not a P-STMO state_dict"):
        infer_pstmo_config(state)
