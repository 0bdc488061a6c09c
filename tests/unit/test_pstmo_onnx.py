"""The ONNX Runtime P-STMO backend: the conformance vectors hold through it, the served lifter equals the torch
one (both joint orders, with and without flip test), and its graph is exported once and cached (first start
exports, second loads, changed weights re-export, a corrupt file is rebuilt) — counting exports, no clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import service.engine.pstmo_onnx as pstmo_onnx
from model.checkpoints.pstmo import load_pstmo_state_dict, to_official_state_dict
from model.conformance.core import compare
from model.conformance.run_pstmo import pstmo_config_from_vector
from model.joints import H36M_FLIP_PERM, JointOrder
from model.pstmo import PSTMO, PSTMO_PRESETS
from service.config import CommonSettings, DetectorSettings, EngineSettings, LifterKind, ModelSpec
from service.engine.lifters import LiftWindow, PSTMOLifter
from service.engine.loader import build_lifters
from service.engine.pstmo_onnx import OnnxPSTMO, export_pstmo_onnx
from service.errors import Unavailable

VECTORS = ("pstmo_small_9.pt", "pstmo_small_27.pt", "pstmo_small_81.pt")


def _serving_layout(x: torch.Tensor) -> np.ndarray:
    """``(B, 2, T, J, 1)`` (the published layout) → ``(B, T, J, 2)``."""
    return np.ascontiguousarray(x[..., 0].permute(0, 2, 3, 1).numpy(), dtype=np.float32)


def _centre(out: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 1, J, 1)`` → ``(B, J, 3)``."""
    return out[:, :, 0, :, 0].transpose(1, 2)


@pytest.mark.parametrize("name", VECTORS)
def test_conformance_vectors_hold_through_onnx_runtime(conformance_dir: Path, name: str) -> None:
    vector = torch.load(conformance_dir / name, map_location="cpu", weights_only=True)
    model = PSTMO(pstmo_config_from_vector(vector["config"]))
    load_pstmo_state_dict(model, vector["state_dict"], name)
    onnx = OnnxPSTMO(export_pstmo_onnx(model.eval()), threads=1)
    x, want = vector["inputs"]["x"], vector["outputs"]
    plain = compare("out", torch.from_numpy(onnx.centre_pose(_serving_layout(x))), _centre(want["out"]))
    assert plain.passed, plain
    # the flip test mirrors the window itself (the vector's x_flip is the same mirror, test_pstmo.py pins it)
    flip = torch.from_numpy(onnx.lift(_serving_layout(x), True, H36M_FLIP_PERM, root=0))
    tta = _centre(want["out_flip_tta"]).clone()
    tta[:, 0] = 0.0
    flipped = compare("out_flip_tta", flip, tta)
    assert flipped.passed, flipped


def _random_pstmo(seed: int, arch: str = "pstmo-tiny-27") -> PSTMO:
    torch.manual_seed(seed)
    model = PSTMO(PSTMO_PRESETS[arch]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("order", [JointOrder.H36M, JointOrder.MPI_INF_3DHP])
def test_served_onnx_lifter_equals_torch_lifter(order: JointOrder) -> None:
    model = _random_pstmo(1)
    unit = "mm" if order is JointOrder.MPI_INF_3DHP else "m"
    spec = ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-27", frames=27, joint_order=order, output_unit=unit)
    reference = PSTMOLifter("p", spec, "w", torch.device("cpu"), model)
    served = PSTMOLifter("p", spec, "w", torch.device("cpu"), model)
    served.onnx = OnnxPSTMO(export_pstmo_onnx(model), threads=1)
    rng = np.random.default_rng(2)
    empty = np.zeros((27, 0, 17, 0), np.float32)
    windows = [
        LiftWindow(rng.uniform(-1, 1, (27, 17, 2)).astype(np.float32), empty, flip) for flip in (True, False, True)
    ]
    want = reference.lift(windows)
    got = served.lift(windows)
    assert len(got) == len(want) == 3
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    assert not np.allclose(got[0], got[2])  # different windows, different poses: the comparison can fail


@pytest.fixture
def export_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts P-STMO ONNX exports."""
    count = [0]
    real = pstmo_onnx.export_pstmo_onnx

    def counting(model: PSTMO) -> bytes:
        count[0] += 1
        return real(model)

    monkeypatch.setattr(pstmo_onnx, "export_pstmo_onnx", counting)
    return count


def _start(cache_dir: Path, checkpoint: Path | None, backend: str = "onnx") -> PSTMOLifter:
    spec = {"kind": "pstmo", "arch": "pstmo-tiny-27", "frames": 27, "backend": backend, "checkpoint": checkpoint}
    settings = CommonSettings(
        models={"p": ModelSpec.model_validate(spec)},
        detector=DetectorSettings(onnx_cache_dir=cache_dir),
        engine=EngineSettings(torch_threads=1),
        allow_random_weights=True,
    )
    lifter = build_lifters(settings, torch.device("cpu"))["p"]
    assert isinstance(lifter, PSTMOLifter)
    return lifter


def _checkpoint(path: Path, seed: int) -> Path:
    torch.save(to_official_state_dict(_random_pstmo(seed)), path)
    return path


def test_first_start_exports_second_loads_changed_weights_reexport(tmp_path: Path, export_count: list[int]) -> None:
    cache_dir = tmp_path / "cache"
    lifter = _start(cache_dir, None)  # random weights (seeded by the model's name): keyed by their digest
    assert export_count == [1]
    assert lifter.onnx is not None
    assert lifter.backend.startswith("onnx exported to")
    assert _start(cache_dir, None).backend.startswith("onnx cached at")
    assert export_count == [1]
    weights = _checkpoint(tmp_path / "w.pth", seed=1)
    _start(cache_dir, weights)
    _start(cache_dir, weights)
    assert export_count == [2]
    _checkpoint(weights, seed=2)  # the same file name, other weights
    _start(cache_dir, weights)
    assert export_count == [3]
    assert len(list(cache_dir.glob("*.onnx"))) == 3


def test_corrupt_cache_file_is_rebuilt_not_served(tmp_path: Path, export_count: list[int]) -> None:
    cache_dir = tmp_path / "cache"
    _start(cache_dir, None)
    (path,) = cache_dir.glob("*.onnx")
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    assert _start(cache_dir, None).backend.startswith("onnx exported to")
    assert export_count == [2]
    assert _start(cache_dir, None).backend.startswith("onnx cached at")
    assert export_count == [2]


def test_backend_setting_picks_the_runtime(tmp_path: Path, export_count: list[int]) -> None:
    assert _start(tmp_path, None, backend="auto").onnx is not None  # auto = ONNX Runtime on the CPU
    torch_lifter = _start(tmp_path, None, backend="torch")
    assert (torch_lifter.onnx, torch_lifter.backend) == (None, "torch")
    assert export_count == [1]
    with pytest.raises(ValueError, match="P-STMO only"):
        ModelSpec(kind=LifterKind.CAPF, arch="capf-w32", backend="onnx")


def test_onnx_backend_off_the_cpu_is_refused_at_start_up(tmp_path: Path) -> None:
    spec = ModelSpec(kind=LifterKind.PSTMO, arch="pstmo-tiny-27", frames=27, backend="onnx")
    settings = CommonSettings(
        models={"p": spec}, detector=DetectorSettings(onnx_cache_dir=tmp_path), allow_random_weights=True
    )
    with pytest.raises(Unavailable, match="runs on the CPU"):
        build_lifters(settings, torch.device("meta"))  # any device that is not the CPU
    assert not list(tmp_path.iterdir())  # nothing exported
