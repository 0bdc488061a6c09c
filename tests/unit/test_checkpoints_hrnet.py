"""HRNet checkpoint formats: strict loading of synthetic files with the real key sets, key maps, errors.

Synthetic tensors are 0-stride expansions of one scalar per key (tiny files, exact shapes); the scalar is
the key's index, so the tests also see that every value lands on the parameter the key map names.
"""

from __future__ import annotations

import json
import pathlib
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoints.common import CheckpointError
from model.checkpoints.hrnet import (
    KEY_MAPS,
    HRNetFormat,
    infer_hrnet_config,
    load_detector,
    load_hrnet_backbone,
    load_pose_hrnet,
    random_pose_hrnet,
    read_hrnet_checkpoint,
)
from model.hrnet import HRNET_PRESETS, HRNetBackbone, HRNetConfig, PoseHRNet

KeySet = list[tuple[str, tuple[int, ...]]]


def _keys(path: Path) -> KeySet:
    return [(k, tuple(s)) for k, s in json.loads(path.read_text())]


def _synthetic(keys: KeySet, offset: float = 0.0) -> dict[str, torch.Tensor]:
    """One distinct value per key (index + offset), expanded to the key's shape; int64 for num_batches_tracked."""
    out = {}
    for i, (k, shape) in enumerate(keys):
        dtype = torch.int64 if k.endswith("num_batches_tracked") else torch.float32
        out[k] = torch.tensor(i + offset, dtype=dtype).expand(shape)
    return out


def _official(conformance_dir: Path, name: str) -> KeySet:
    return _keys(conformance_dir / "official_keys" / name)


def _capf_keys(conformance_dir: Path, width: int) -> KeySet:
    return _official(conformance_dir, f"capf_h36m_hrnet_{width}_keys.json")


def _authors_keys(conformance_dir: Path, width: int) -> KeySet:
    """The HRNet authors' COCO file: CA-PF backbone keys without ``backbone.``, plus the heatmap head."""
    backbone = [
        (k.removeprefix("backbone."), s) for k, s in _capf_keys(conformance_dir, width) if k.startswith("backbone.")
    ]
    return [*backbone, ("final_layer.weight", (17, width, 1, 1)), ("final_layer.bias", (17,))]


def _assert_values_landed(model: torch.nn.Module, state: dict[str, torch.Tensor], fmt: HRNetFormat) -> None:
    loaded = model.state_dict()
    for key, value in state.items():
        mapped = KEY_MAPS[fmt](key.removeprefix("module."))
        got = loaded[mapped.removeprefix("backbone.") if isinstance(model, HRNetBackbone) else mapped]
        assert bool((got == value).all()), f"{key} -> {mapped} did not receive its value"


@pytest.mark.parametrize("width", [32, 48])
def test_mmpose_published_key_set_loads_strictly(conformance_dir: Path, tmp_path: Path, width: int) -> None:
    state = _synthetic(_official(conformance_dir, f"mmpose_td-hm_hrnet-w{width}_coco-256x192_keys.json"))
    meta = {
        "dataset_meta": {"sigmas": np.linspace(0.025, 0.107, 17), "flip_indices": [0, 2, 1]},
        "epoch": np.int64(210),
        "best_score": np.float64(0.749),
        "dtype": np.dtype("float32"),
        "mmpose_version": "1.0.0",
    }
    path = tmp_path / f"td-hm_hrnet-w{width}.pth"
    torch.save({"meta": meta, "state_dict": state}, path)
    model = load_detector(HRNET_PRESETS[f"w{width}"], path)
    _assert_values_landed(model, state, HRNetFormat.MMPOSE)
    assert not model.training


def test_mmpose_tiny_vector_state_loads_in_mmpose_file_format(conformance_dir: Path, tmp_path: Path) -> None:
    vec = torch.load(conformance_dir / "mmpose_hrnet_tiny.pt", map_location="cpu", weights_only=True)
    extra = vec["config"]["mmpose_model"]["backbone"]["extra"]
    keys = _keys(conformance_dir / "mmpose_hrnet_tiny_keys.json")
    assert [k for k, _ in keys] == list(vec["state_dict"])
    path = tmp_path / "mmpose_tiny.pth"
    torch.save({"state_dict": vec["state_dict"], "meta": {"sigmas": np.ones(17, dtype=np.float32)}}, path)
    model = PoseHRNet(HRNetConfig.from_mmpose(extra))
    assert load_pose_hrnet(model, path) is HRNetFormat.MMPOSE
    _assert_values_landed(model, vec["state_dict"], HRNetFormat.MMPOSE)


def test_mmpose_0x_keypoint_head_names_load(tmp_path: Path) -> None:
    cfg = HRNET_PRESETS["hrnet-micro"]
    state = {
        ("keypoint_head." + k if k.startswith("final_layer.") else k): v for k, v in PoseHRNet(cfg).state_dict().items()
    }
    path = tmp_path / "mmpose0x.pth"
    torch.save({"state_dict": state, "meta": {"env_info": "x"}}, path)
    model = PoseHRNet(cfg)
    assert load_pose_hrnet(model, path) is HRNetFormat.MMPOSE
    torch.testing.assert_close(model.final_layer.weight, state["keypoint_head.final_layer.weight"])


@pytest.mark.parametrize("module_prefix", ["", "module."])
def test_hrnet_authors_w32_file_loads_strictly(conformance_dir: Path, tmp_path: Path, module_prefix: str) -> None:
    state = {module_prefix + k: v for k, v in _synthetic(_authors_keys(conformance_dir, 32)).items()}
    path = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save(state, path)
    fmt, read = read_hrnet_checkpoint(path)
    assert fmt is HRNetFormat.HRNET_AUTHORS
    assert "module.conv1.weight" not in read
    model = load_detector(HRNET_PRESETS["w32"], path)
    _assert_values_landed(model, state, HRNetFormat.HRNET_AUTHORS)


@pytest.mark.parametrize("width", [32, 48])
def test_capf_best_epoch_backbone_loads_strictly(conformance_dir: Path, tmp_path: Path, width: int) -> None:
    keys = _capf_keys(conformance_dir, width)
    assert any(k.startswith("volume_net.") for k, _ in keys)
    state = {"module." + k: v for k, v in _synthetic(keys).items()}
    path = tmp_path / "best_epoch_60.bin"
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1, 2]}]}
    torch.save({"epoch": 60, "lr": 1e-4, "model": state, "optimizer": optimizer}, path)
    assert read_hrnet_checkpoint(path)[0] is HRNetFormat.CAPF
    with torch.device("meta"):  # skip random init: the strict load overwrites everything
        backbone = HRNetBackbone(HRNET_PRESETS[f"w{width}"]).to_empty(device="cpu")
    assert load_hrnet_backbone(backbone, path) is HRNetFormat.CAPF
    _assert_values_landed(backbone, {k: v for k, v in state.items() if ".backbone." in k}, HRNetFormat.CAPF)


def test_detector_takes_head_from_coco_and_backbone_from_capf(conformance_dir: Path, tmp_path: Path) -> None:
    coco = _synthetic(_authors_keys(conformance_dir, 32), offset=0.5)
    capf = {"module." + k: v for k, v in _synthetic(_capf_keys(conformance_dir, 32), offset=10_000.0).items()}
    torch.save(coco, tmp_path / "coco.pth")
    torch.save({"epoch": 1, "lr": 0.1, "model": capf, "optimizer": {}}, tmp_path / "capf.bin")
    model = load_detector(HRNET_PRESETS["w32"], tmp_path / "coco.pth", backbone_checkpoint=tmp_path / "capf.bin")
    torch.testing.assert_close(model.final_layer.bias, coco["final_layer.bias"])
    torch.testing.assert_close(model.backbone.conv1.weight, capf["module.backbone.conv1.weight"])


def test_random_detector_is_seeded_and_leaves_global_rng_alone() -> None:
    cfg = HRNET_PRESETS["hrnet-micro"]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = load_detector(cfg, None, seed=7)
    after = torch.rand(1)
    b = random_pose_hrnet(cfg, seed=7)
    c = random_pose_hrnet(cfg, seed=8)
    assert torch.equal(before, after)
    assert not a.training
    assert torch.equal(a.final_layer.weight, b.final_layer.weight)
    assert not torch.equal(a.final_layer.weight, c.final_layer.weight)


@pytest.mark.parametrize("preset", ["w32", "w48", "hrnet-tiny", "hrnet-micro"])
def test_infer_config_from_keys(preset: str) -> None:
    with torch.device("meta"):
        state = HRNetBackbone(HRNET_PRESETS[preset]).state_dict()
    assert infer_hrnet_config(state) == HRNET_PRESETS[preset]


# ---------------------------------------------------------------- errors naming the problem


def _micro_file(tmp_path: Path) -> Path:
    path = tmp_path / "micro.pth"
    torch.save(
        {k.removeprefix("backbone."): v for k, v in PoseHRNet(HRNET_PRESETS["hrnet-micro"]).state_dict().items()}, path
    )
    return path


def test_pstmo_state_dict_is_not_an_hrnet_checkpoint(conformance_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "no_refine_27.pth"
    pstmo = _official(conformance_dir, "pstmo_27_keys.json")
    torch.save({"module." + k: v for k, v in _synthetic(pstmo).items()}, path)
    with pytest.raises(CheckpointError, match="not an HRNet checkpoint") as e:
        load_detector(HRNET_PRESETS["hrnet-micro"], path)
    assert "Transformer." in str(e.value)


def test_truncated_and_empty_files(tmp_path: Path) -> None:
    good = _micro_file(tmp_path).read_bytes()
    (tmp_path / "cut.pth").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_detector(HRNET_PRESETS["hrnet-micro"], tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="empty"):
        load_detector(HRNET_PRESETS["hrnet-micro"], tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_detector(HRNET_PRESETS["hrnet-micro"], tmp_path / "absent.pth")


def test_capf_file_is_not_a_coco_detector(tmp_path: Path) -> None:
    state = {"module." + k: v for k, v in HRNetBackbone(HRNET_PRESETS["hrnet-micro"]).state_dict().items()}
    capf = {f"module.backbone.{k.removeprefix('module.')}": v for k, v in state.items()}
    capf["module.volume_net.head.weight"] = torch.zeros(3, 8)
    torch.save({"epoch": 3, "lr": 0.1, "model": capf, "optimizer": {}}, tmp_path / "best_epoch_3.bin")
    with pytest.raises(CheckpointError, match="no heatmap head"):
        load_detector(HRNET_PRESETS["hrnet-micro"], tmp_path / "best_epoch_3.bin")


def test_missing_unexpected_and_mismatched_keys_are_named(tmp_path: Path) -> None:
    state = torch.load(_micro_file(tmp_path), weights_only=True)
    del state["final_layer.weight"]
    state["stage5.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as e:
        load_detector(HRNET_PRESETS["hrnet-micro"], tmp_path / "broken.pth")
    assert "missing keys [1]: final_layer.weight" in str(e.value)
    assert "unexpected keys [1]: backbone.stage5.0.weight" in str(e.value)
    with pytest.raises(CheckpointError, match=r"missing keys.*looks like preset 'hrnet-micro'"):
        load_hrnet_backbone(HRNetBackbone(HRNET_PRESETS["hrnet-tiny"]), _micro_file(tmp_path))


def test_wrong_width_names_shape_mismatches(tmp_path: Path) -> None:
    micro = HRNET_PRESETS["hrnet-micro"]
    wide = HRNetConfig(
        *(
            replace(st, num_channels=tuple(2 * c for c in st.num_channels))
            for st in (micro.stage2, micro.stage3, micro.stage4)
        )
    )
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch \[\d+\]: .*checkpoint \(8, 256, 3, 3\) vs model \(16, 256, 3, 3\).*looks like preset 'hrnet-micro'",
    ):
        load_detector(wide, _micro_file(tmp_path))


def test_meta_pickled_by_numpy_1_loads(tmp_path: Path) -> None:
    """Files written under numpy 1.x name ``numpy.core.multiarray``; numpy 2.x names ``numpy._core.multiarray``."""
    state = torch.load(_micro_file(tmp_path), weights_only=True)
    meta = {"sigmas": np.arange(3.0), "best": np.float64(0.5)}
    torch.save({"state_dict": state, "meta": meta}, tmp_path / "np2.pth")
    with zipfile.ZipFile(tmp_path / "np2.pth") as src, zipfile.ZipFile(tmp_path / "np1.pth", "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                assert b"numpy.core.multiarray" in data
            dst.writestr(name, data)
    for name in ("np1.pth", "np2.pth"):
        fmt, read = read_hrnet_checkpoint(tmp_path / name)
        assert fmt is HRNetFormat.HRNET_AUTHORS
        assert set(read) == set(state)


def test_meta_objects_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    state = torch.load(_micro_file(tmp_path), weights_only=True)
    torch.save({"state_dict": state, "meta": {"work_dir": pathlib.PurePosixPath("/x")}}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="outside the allow-list"):
        load_detector(HRNET_PRESETS["hrnet-micro"], tmp_path / "odd.pth")


def test_non_tensor_state_values_are_named(tmp_path: Path) -> None:
    torch.save({"state_dict": {"conv1.weight": [1.0, 2.0]}}, tmp_path / "lists.pth")
    with pytest.raises(CheckpointError, match=r"not tensors: conv1\.weight"):
        read_hrnet_checkpoint(tmp_path / "lists.pth")


def test_config_inference_on_malformed_stage_keys_is_a_checkpoint_error() -> None:
    state = dict(HRNetBackbone(HRNET_PRESETS["hrnet-micro"]).state_dict())
    state["stage2.x.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="cannot infer the HRNet stages"):
        infer_hrnet_config(state)
