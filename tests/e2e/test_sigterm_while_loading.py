"""SIGTERM to ``pose3d serve`` or ``pose3d worker`` while its models load: exit 0 at once, one line, no abort.

The load never ends (:mod:`tests.e2e.held_load`): before the fix the process waited for it; left on a daemon thread
that was still in torch, Python's finalization aborted the process (``terminate called without an active
exception``, exit 134)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port
from tests.e2e.cli_process import pose3d_env, user_lines
from tests.e2e.held_load import HELD
from tests.service.test_rest_settings import TINY_TOML

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EXIT_BUDGET_S = 60.0  # a budget for a busy machine, not a speed claim: the load it must not wait for never ends


def _arguments(command: str, tmp_path: Path) -> list[str]:
    config = tmp_path / "tiny.toml"
    if command == "serve":
        config.write_text(TINY_TOML)
        return ["serve", "--config", str(config), "--port", str(free_port())]
    config.write_text(TINY_TOML.split("[limits]")[0].replace("grpc_port = 0\n", ""))
    return ["worker", "--config", str(config), "--host", "127.0.0.1", "--port", str(free_port()), "--metrics-port", "0"]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_sigterm_while_the_models_load_exits_at_once(tmp_path: Path, command: str) -> None:
    err_path = tmp_path / "stderr"
    args = [sys.executable, "-m", "tests.e2e.held_load", *_arguments(command, tmp_path), "--allow-random-weights"]
    with err_path.open("wb") as err:
        proc = subprocess.Popen(args, cwd=REPO, env=pose3d_env(tmp_path), stdout=subprocess.DEVNULL, stderr=err)
    try:
        while HELD not in err_path.read_text(errors="replace"):
            assert proc.poll() is None, err_path.read_text(errors="replace")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.2)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(EXIT_BUDGET_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pose3d {command} waited for its load after SIGTERM")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
    stderr = err_path.read_text(errors="replace")
    assert code == 0, stderr
    assert "terminate called" not in stderr
    assert "Traceback" not in stderr
    if command == "serve":
        assert user_lines(stderr)[-1] == "pose3d serve: stopped (SIGTERM)", stderr
    else:  # the worker handles SIGTERM itself: its servers stopped, it returns as after serving
        assert "pose3d worker: shutting down" in stderr, stderr
