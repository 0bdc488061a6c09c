"""bench/gpu_check.sh: valid bash, a dry run lists every step with modules that exist and flags their parsers
accept, and without CUDA it stops at once with a clear message and exit code 2."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_dry_run_lists_every_step_and_their_flags_parse(tmp_path: Path) -> None:
    got = _run("--dry-run", str(tmp_path / "out"))
    assert got.returncode == 0, got.stdout + got.stderr
    assert "every module found" in got.stdout
    commands = [shlex.split(line) for line in got.stdout.splitlines() if line.startswith("   ")]
    modules = [c[c.index("-m") + 1] for c in commands]
    assert modules == ["bench.gpu_conformance"] + ["bench.peer_mediapipe"] * 2 + ["bench"] * 2 + ["bench.clip"] * 2
    assert not (tmp_path / "out").exists()  # a dry run writes nothing

    from bench.__main__ import parse_args
    from bench.peer_mediapipe import parse

    for command in commands:
        module, argv = command[command.index("-m") + 1], command[command.index("-m") + 2 :]
        if module == "bench.peer_mediapipe":
            assert parse(argv).device == "cuda"
        elif module == "bench" and argv[0] != "overhead":
            assert parse_args(argv).device == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the script would run")
def test_without_cuda_it_fails_clearly(tmp_path: Path) -> None:
    got = _run(str(tmp_path / "out"))
    assert got.returncode == 2
    assert "no CUDA device visible to torch" in got.stderr
    assert not (tmp_path / "out" / "conformance.txt").exists()
