"""`python -m model.conformance` over every vector in shared/conformance/, and its refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.conformance import ConformanceError, detect_kind
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
