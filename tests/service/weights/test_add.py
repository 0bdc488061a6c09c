"""``pose3d weights add``: synthetic checkpoints in the official key layouts are recognised, proven loadable by the
strict loaders and installed under their catalogue names; garbage and mismatching files are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from service.weights.catalogue import load_catalogue
from service.weights.identify import add_file, identify
from service.weights.store import WeightsError, installed, sha256_file

pytestmark = pytest.mark.slow  # full-size published layouts (CA-PF W32 whole model: 42.7 M parameters)


def official_state(conformance_dir: Path, name: str) -> dict[str, torch.Tensor]:
    """Zero tensors (fast at full size) with exactly the published keys and shapes."""
    pairs = json.loads((conformance_dir / "official_keys" / f"{name}_keys.json").read_text())
    return {
        str(k): torch.tensor(3) if str(k).endswith("num_batches_tracked") else torch.zeros(shape) for k, shape in pairs
    }


def save(obj: Any, path: Path) -> Path:
    torch.save(obj, path)
    return path


def released_pstmo(conformance_dir: Path, key_set: str, path: Path) -> Path:
    """P-STMO's released layout: a bare state_dict with DataParallel's ``module.`` prefix."""
    return save({f"module.{k}": v for k, v in official_state(conformance_dir, key_set).items()}, path)


def released_capf(state: dict[str, torch.Tensor], path: Path) -> Path:
    """CA-PF's ``best_epoch_*.bin``: ``{'epoch', 'lr', 'model', 'optimizer'}`` with ``module.`` keys."""
    model = {f"module.{k}": v for k, v in state.items()}
    return save({"epoch": 30, "lr": 1e-4, "model": model, "optimizer": {"state": {}, "param_groups": []}}, path)


@pytest.mark.parametrize(
    ("key_set", "arch", "name"),
    [
        ("pstmo_243_full", "pstmo-243", "pstmo-243"),
        ("pstmo_81_small", "pstmo-81", "pstmo-81-3dhp"),
        ("pstmo_27", "pstmo-27", "pstmo-27"),
    ],
)
def test_pstmo_files_are_identified_and_installed(
    conformance_dir: Path, tmp_path: Path, key_set: str, arch: str, name: str
) -> None:
    path = released_pstmo(conformance_dir, key_set, tmp_path / "download.pth")
    done, identity = add_file(load_catalogue(), path, tmp_path / "weights")
    assert (identity.arch, done.name) == (arch, name)
    entry = load_catalogue().entry(name)
    assert done.path == tmp_path / "weights" / name / entry.file
    assert done.sha256 == sha256_file(path)
    assert done.path.read_bytes() == path.read_bytes()
    assert installed(tmp_path / "weights", name) == done


def test_several_fitting_entries_need_a_name(conformance_dir: Path, tmp_path: Path) -> None:
    path = released_pstmo(conformance_dir, "pstmo_243_small", tmp_path / "PSTMOS.pth")
    with pytest.raises(WeightsError, match=r"several entries fit: pass --name .*pstmo-243-small, pstmo-243-small-wild"):
        add_file(load_catalogue(), path, tmp_path / "weights")
    done, _ = add_file(load_catalogue(), path, tmp_path / "weights", name="pstmo-243-small-wild")
    assert done.name == "pstmo-243-small-wild"
    with pytest.raises(WeightsError, match=r"as pstmo-243 expects: missing keys \(16: Transformer.model.layers.3"):
        add_file(load_catalogue(), path, tmp_path / "weights", name="pstmo-243")  # P-STMO-S: 3 layers, not 4


def test_capf_whole_model_with_hrnet_w32(conformance_dir: Path, tmp_path: Path) -> None:
    path = released_capf(official_state(conformance_dir, "capf_h36m_hrnet_32"), tmp_path / "best_epoch.bin")
    done, identity = add_file(load_catalogue(), path, tmp_path / "weights")
    assert done.name == "capf-hrnet-w32"
    assert identity.has_backbone
    assert "HRNet-W32 backbone" in identity.detail


def test_capf_lifter_only_files(conformance_dir: Path, tmp_path: Path) -> None:
    cpn = official_state(conformance_dir, "capf_h36m_cpn_lifter")
    whole_cpn = {f"volume_net.{k}": v for k, v in cpn.items()} | {
        "backbone.resnet.conv1.weight": torch.zeros(64, 3, 7, 7)
    }
    done, identity = add_file(load_catalogue(), released_capf(whole_cpn, tmp_path / "cpn.bin"), tmp_path / "w")
    assert done.name == "capf-cpn"
    assert "not an HRNet" in identity.detail
    w32_lifter = save(official_state(conformance_dir, "capf_h36m_hrnet_32_lifter"), tmp_path / "lifter.pth")
    assert identify(w32_lifter).arch == "capf-w32"
    with pytest.raises(WeightsError, match=r"capf-hrnet-w32 expects a capf capf-w32 \(whole model"):
        add_file(load_catalogue(), w32_lifter, tmp_path / "w", name="capf-hrnet-w32")


def _authors_layout(mmpose: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The HRNet authors' COCO file: backbone keys without ``backbone.``, head as ``final_layer.*``."""
    return {k.removeprefix("backbone.").replace("head.final_layer.", "final_layer."): v for k, v in mmpose.items()}


def test_hrnet_authors_coco_file(conformance_dir: Path, tmp_path: Path) -> None:
    mmpose = official_state(conformance_dir, "mmpose_td-hm_hrnet-w32_coco-256x192")
    authors = save(_authors_layout(mmpose), tmp_path / "pose_hrnet_w32_256x192.pth")
    done, identity = add_file(load_catalogue(), authors, tmp_path / "weights")
    assert done.name == "hrnet-w32-coco"
    assert identity.format == "hrnet_authors"


def test_mmpose_file_with_other_bytes_than_published_is_refused(conformance_dir: Path, tmp_path: Path) -> None:
    """mmpose's file name carries its sha256 prefix: a file with the right keys but other bytes is not that file."""
    mmpose = official_state(conformance_dir, "mmpose_td-hm_hrnet-w32_coco-256x192")
    mm = save({"state_dict": mmpose, "meta": {"epoch": 210}}, tmp_path / "td-hm.pth")
    with pytest.raises(WeightsError, match=r"does not start with the published 81c58e40"):
        add_file(load_catalogue(), mm, tmp_path / "weights")
    assert installed(tmp_path / "weights", "hrnet-w32-coco-mmpose") is None


def test_garbage_is_refused(conformance_dir: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(WeightsError, match=r"junk.pth is not a PyTorch checkpoint: its first bytes are 00 6e 6f 74"):
        add_file(load_catalogue(), junk, tmp_path / "weights")
    unrelated = save({"fc.weight": torch.zeros(4, 4)}, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match=r"not a checkpoint this project can serve.*not an HRNet checkpoint"):
        add_file(load_catalogue(), unrelated, tmp_path / "weights")
    state = official_state(conformance_dir, "pstmo_243_full")
    del state["Transformer.pos_embedding"]  # what the strict loader checks: one key missing
    state["encoder.fc_1.weight"] = torch.zeros(512, 34, 1)
    with pytest.raises(WeightsError, match=r"Transformer.pos_embedding"):
        add_file(load_catalogue(), save(state, tmp_path / "broken.pth"), tmp_path / "weights")
    with pytest.raises(WeightsError, match=r"no such file"):
        add_file(load_catalogue(), tmp_path / "absent.pth", tmp_path / "weights")
    assert not (tmp_path / "weights").exists()


def test_add_says_what_the_file_is_and_what_was_expected(conformance_dir: Path, tmp_path: Path) -> None:
    from service.cli import main

    text = tmp_path / "notes.pth"
    text.write_text("my notes, not weights\n")
    with pytest.raises(WeightsError, match=r"notes.pth is not a PyTorch checkpoint: it is a text file starting"):
        add_file(load_catalogue(), text, tmp_path / "weights")
    state = official_state(conformance_dir, "pstmo_243_full")
    state["extra.weight"] = state.pop("Transformer.pos_embedding")
    wrong = save({f"module.{k}": v for k, v in state.items()}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError) as info:
        add_file(load_catalogue(), wrong, tmp_path / "weights", name="pstmo-243")
    message = str(info.value)
    assert "is not a pstmo pstmo-243 checkpoint as pstmo-243 expects" in message
    assert "missing keys (1: Transformer.pos_embedding)" in message
    assert "unexpected keys (1: extra.weight)" in message
    assert "HRNet" not in message
    assert main(["weights", "--weights-dir", str(tmp_path / "weights"), "add", str(text)]) == 2


def test_onnx_person_detector(tmp_path: Path) -> None:
    from tests.unit.test_person_detector import constant_detector

    path = constant_detector(tmp_path / "end2end.onnx", [[1, 2, 30, 40, 0.9]], [0])
    with pytest.raises(WeightsError, match=r"several entries fit: pass --name"):
        add_file(load_catalogue(), path, tmp_path / "weights")
    done, identity = add_file(load_catalogue(), path, tmp_path / "weights", name="yolox-m-person")
    assert done.path.name == "end2end.onnx"
    assert identity.format == "onnx"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match=r"not a readable ONNX model"):
        add_file(load_catalogue(), bad, tmp_path / "weights", name="yolox-m-person")
