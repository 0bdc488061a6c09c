"""The export cache: a miss exports, a hit loads, another key re-exports, a corrupt entry is rebuilt, never served.

The generic cache is tested with a byte "export"; the HRNet backend through the loader (the start-up path) with
the tiny hrnet-micro preset, counting exports (no clock).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import service.engine.hrnet_onnx as hrnet_onnx
from model.hrnet import HRNET_PRESETS, PoseHRNet
from service.config import CommonSettings, DetectorSettings
from service.engine.detector import TopDownDetector
from service.engine.loader import Report, build_detector
from service.engine.onnx_cache import ExportCache, default_cache_dir, resolved_backend


class Exports:
    """Counts calls of an export function, returning ``payload``."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.calls = payload, 0

    def __call__(self) -> bytes:
        self.calls += 1
        return self.payload


def _open(data: bytes) -> bytes:
    if not data.startswith(b"graph"):
        raise ValueError("not a graph")
    return data


def test_miss_exports_hit_loads_other_key_exports(tmp_path: Path) -> None:
    cache, export = ExportCache(tmp_path / "c"), Exports(b"graph-1")
    first = cache.load_or_export("net", {"weights": "a"}, export, _open)
    second = cache.load_or_export("net", {"weights": "a"}, export, _open)
    assert (first.exported, second.exported, export.calls) == (True, False, 1)
    assert second.value == b"graph-1"
    assert second.path == first.path
    other = cache.load_or_export("net", {"weights": "b"}, export, _open)
    assert other.exported
    assert other.path != first.path
    assert export.calls == 2
    assert not list((tmp_path / "c").glob(".*.tmp"))  # temporary files renamed away


def test_entry_with_a_wrong_checksum_is_rebuilt_not_served(tmp_path: Path) -> None:
    cache, export = ExportCache(tmp_path), Exports(b"graph-good")
    path = cache.load_or_export("net", {"k": "v"}, export, _open).path
    path.write_bytes(b"graph-tampered")  # opens fine, but is not what was written
    again = cache.load_or_export("net", {"k": "v"}, export, _open)
    assert again.exported
    assert again.value == b"graph-good"
    assert export.calls == 2
    assert path.read_bytes() == b"graph-good"
    assert not cache.load_or_export("net", {"k": "v"}, export, _open).exported


def test_entry_that_does_not_open_is_rebuilt(tmp_path: Path) -> None:
    cache = ExportCache(tmp_path)
    path = cache.load_or_export("net", {"k": "v"}, Exports(b"graph"), _open).path
    Path(str(path) + ".sha256").unlink()  # a crash between the two renames: no checksum = no entry
    rebuilt = cache.load_or_export("net", {"k": "v"}, Exports(b"graph"), _open)
    assert rebuilt.exported
    calls: list[bytes] = []

    def opener(data: bytes) -> bytes:  # the first open (cached bytes) fails as a corrupt model would
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("corrupt protobuf")
        return data

    again = cache.load_or_export("net", {"k": "v"}, Exports(b"graph-2"), opener)
    assert again.exported
    assert again.value == b"graph-2"


def test_default_cache_dir_follows_xdg(tmp_path: Path) -> None:
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "pose3d" / "onnx"
    assert default_cache_dir({}) == Path.home() / ".cache" / "pose3d" / "onnx"


@pytest.fixture
def export_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts HRNet ONNX exports."""
    count = [0]
    real = hrnet_onnx.export_hrnet_onnx

    def counting(net: PoseHRNet) -> bytes:
        count[0] += 1
        return real(net)

    monkeypatch.setattr(hrnet_onnx, "export_hrnet_onnx", counting)
    return count


def _start(cache_dir: Path, checkpoint: Path | None, backend: str = "onnx") -> tuple[TopDownDetector, Report]:
    det = DetectorSettings.model_validate(
        {"arch": "hrnet-micro", "backend": backend, "onnx_cache_dir": cache_dir, "checkpoint": checkpoint}
    )
    settings = CommonSettings(detector=det, allow_random_weights=True)
    report = Report(device="cpu")
    detector = build_detector(settings, needs_features=True, report=report)
    assert isinstance(detector, TopDownDetector)
    assert isinstance(detector.net, hrnet_onnx.OnnxHRNet)
    return detector, report


def _checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(PoseHRNet(HRNET_PRESETS["hrnet-micro"]).state_dict(), path)
    return path


def test_hrnet_first_start_exports_second_loads_changed_weights_reexport(
    tmp_path: Path, export_count: list[int]
) -> None:
    cache_dir = tmp_path / "cache"
    _, report = _start(cache_dir, None)  # random weights (seeded): keyed by their digest
    assert export_count == [1]
    assert "exported to" in report.detail["detector_backend"]
    _, report = _start(cache_dir, None)
    assert export_count == [1]
    assert "cached at" in report.detail["detector_backend"]
    weights = _checkpoint(tmp_path / "w.pt", seed=1)
    _start(cache_dir, weights)
    _start(cache_dir, weights)
    assert export_count == [2]
    _checkpoint(weights, seed=2)  # the same file name, other weights
    _start(cache_dir, weights)
    assert export_count == [3]
    assert len(list(cache_dir.glob("*.onnx"))) == 3


def test_hrnet_corrupt_cache_file_is_rebuilt(tmp_path: Path, export_count: list[int]) -> None:
    cache_dir = tmp_path / "cache"
    _start(cache_dir, None)
    (path,) = cache_dir.glob("*.onnx")
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    _, report = _start(cache_dir, None)
    assert export_count == [2]
    assert "exported to" in report.detail["detector_backend"]
    _start(cache_dir, None)
    assert export_count == [2]


def test_auto_backend_is_onnx_runtime_on_the_cpu(tmp_path: Path, export_count: list[int]) -> None:
    _, report = _start(tmp_path, None, backend="auto")
    assert export_count == [1]
    assert "exported to" in report.detail["detector_backend"]
    settings = CommonSettings(detector=DetectorSettings(arch="hrnet-micro"), allow_random_weights=True)
    torch_detector = build_detector(settings, needs_features=True, report=Report(device="cpu"))
    assert isinstance(torch_detector, TopDownDetector)
    assert isinstance(torch_detector.net, torch.nn.Module)
    assert export_count == [1]  # the built-in default stays torch


def test_auto_backend_resolves_per_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolved_backend("auto", cpu, half=False) == "onnx"
    assert resolved_backend("auto", cuda, half=False) == "torch"
    assert resolved_backend("auto", cuda, half=True) == "torch"
    assert resolved_backend("torch", cpu, half=False) == "torch"
    assert resolved_backend("onnx", cpu, half=False) == "onnx"
