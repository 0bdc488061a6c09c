"""`python -m model.conformance` over every vector in shared/conformance/, and its refusals."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from model.conformance import ConformanceError, compare, detect_kind
from model.conformance.__main__ import main
from model.conformance.core import VectorKind
from tests.conftest import REPO


def _run(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model.conformance", *map(str, files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_every_shared_vector_passes(conformance_dir: Path) -> None:
    vectors = sorted(conformance_dir.glob("*.pt"))
    assert len(vectors) >= 9, vectors
    result = _run(*vectors)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if " max_abs_err=" in line]
    expected = sum(len(torch.load(v, weights_only=True)["outputs"]) for v in vectors)
    assert len(lines) == expected
    assert all(line.endswith(" ok") for line in lines), result.stdout
    assert "conformance: all outputs within tolerance" in result.stdout


def test_files_that_are_not_vectors_fail_with_a_reason(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    weights_only = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, weights_only)
    result = _run(junk, weights_only)
    assert result.returncode == 1
    assert f"{junk}: ERROR" in result.stdout
    assert f"{weights_only}: ERROR" in result.stdout
    assert "conformance: FAILED" in result.stdout


def test_kind_detection() -> None:
    assert detect_kind({"frames": 9, "stride_num": [3, 3]}) is VectorKind.PSTMO
    assert detect_kind({"poseformer": {}}) is VectorKind.CAPF_LIFTER
    assert detect_kind({"model": {"poseformer": {}, "backbone": {}}}) is VectorKind.CAPF_FULL
    assert detect_kind({"STAGE2": {}, "STAGE3": {}, "STAGE4": {}}) is VectorKind.HRNET_BACKBONE
    assert detect_kind({"mmpose_model": {}}) is VectorKind.MMPOSE_TOPDOWN
    with pytest.raises(ConformanceError, match="unrecognised"):
        detect_kind({"something": 1})


def test_tolerance_is_per_value_not_per_output() -> None:
    """1e-5 absolute, 1e-4 only where the reference value exceeds 1: a large value elsewhere loosens nothing."""
    want = torch.tensor([100.0, 0.5])
    assert not compare("y", torch.tensor([100.0, 0.5 + 5e-5]), want).passed
    check = compare("y", torch.tensor([100.0 + 5e-5, 0.5]), want)
    assert check.passed
    assert check.tolerance == pytest.approx(1e-4)
    nan_inf = torch.tensor([float("nan"), float("inf"), 1.0])
    assert compare("y", nan_inf.clone(), nan_inf).passed
    assert not compare("y", torch.tensor([0.0, float("inf"), 1.0]), nan_inf).passed
    assert not compare("y", torch.zeros(2, 3), torch.zeros(3, 2)).passed


def test_cli_fails_a_small_value_off_by_more_than_1e5_beside_large_values(
    conformance_dir: Path, tmp_path: Path
) -> None:
    vec = torch.load(conformance_dir / "pstmo_small_9.pt", weights_only=True)
    out = vec["outputs"]["out"]
    assert bool((out.abs() > 1).any()), "the test needs an output holding values above 1"
    small = int((out.abs() < 1).flatten().nonzero()[0])
    out.view(-1)[small] += 5e-5  # within the old whole-tensor 1e-4, outside the per-value 1e-5
    torch.save(vec, tmp_path / "nudged.pt")
    assert main([str(tmp_path / "nudged.pt")]) == 1


def _malformed(conformance_dir: Path, tmp_path: Path) -> dict[str, Path]:
    def edited(name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
        vec = torch.load(conformance_dir / "pstmo_small_9.pt", weights_only=True)
        edit(vec)
        torch.save(vec, tmp_path / f"{name}.pt")
        return tmp_path / f"{name}.pt"

    return {
        "lacks 'x'": edited("no_x", lambda v: v["inputs"].pop("x")),
        "'config' must be a dict": edited("config_list", lambda v: v.update(config=[1, 2])),
        "not named tensors: 'encoder.fc_1.weight'": edited(
            "sd_float", lambda v: v["state_dict"].update({"encoder.fc_1.weight": 3.0})
        ),
        "'outputs' is empty": edited("no_outputs", lambda v: v.update(outputs={})),
        "not named tensors: 'out'": edited("out_list", lambda v: v["outputs"].update(out=[1.0])),
        "lacks 'base_dim'": edited(
            "capf_no_base_dim",
            lambda v: v.update(config={"poseformer": {"embed_dim_ratio": 8, "levels": 4}}),
        ),
        "malformed vector": edited("capf_pf_none", lambda v: v.update(config={"poseformer": None})),
    }


def test_malformed_vectors_are_named_and_do_not_stop_the_others(
    conformance_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _malformed(conformance_dir, tmp_path)
    good = conformance_dir / "pstmo_small_9.pt"
    assert main([*map(str, bad.values()), str(good)]) == 1
    printed = capsys.readouterr().out
    for reason, path in bad.items():
        line = next(line for line in printed.splitlines() if line.startswith(f"{path}: ERROR"))
        assert reason in line, line
    good_lines = [line for line in printed.splitlines() if line.startswith(f"{good} [pstmo]")]
    assert len(good_lines) == 4, printed
    assert all(line.endswith(" ok") for line in good_lines), printed
