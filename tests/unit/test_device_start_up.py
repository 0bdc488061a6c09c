"""``device = cuda`` where PyTorch sees no CUDA GPU (a CPU-only build, no driver in the container) stops start-up in one
line naming the setting, exit 2: torch's 'AssertionError: Torch not compiled with CUDA enabled' escaped as a
traceback (exit 1) once the models were being built."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from service.cli import main
from tests.service.test_rest_settings import TINY_TOML

TINY = 'device = "cuda"\n' + TINY_TOML.split("[limits]")[0].replace("grpc_port = 0\n", "")  # the tiny models, on a GPU


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_cuda_without_a_gpu_is_one_line_and_exit_2(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without one
    config = tmp_path / "pose3d.toml"
    config.write_text(TINY)
    argv = [command, "--config", str(config), "--allow-random-weights", "--port", "0"]
    assert main(argv + (["--grpc-port", "0"] if command == "serve" else ["--metrics-port", "0"])) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]
    assert err[-1].startswith(f"pose3d {command}: error: device = cuda, but PyTorch sees no CUDA GPU"), err
    assert "POSE3D_DEVICE=cpu" in err[-1]
    assert not any("Traceback" in line for line in err), err
