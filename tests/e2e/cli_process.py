"""A ``pose3d`` command as a real process, its stderr in a file, with gates that wait on what it says (no sleeps)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import REPO

PROGRESS_BAR = re.compile(r"\d+/\d+ \[[^\]]*\]$|\|[# .]*\| *\d+/")
"""A progress bar's line (tqdm's ``| 3/400 [00:01<...]``, ``pose3d stream``'s ``[###...] 3/400 ... fps``)."""
LOG_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ |INFO: {5}|WARNING: {2})")
"""A log record (``pose3d``'s format, or uvicorn's ``INFO:     ``), as opposed to a line printed for the user."""
BUDGET_S = 600.0
"""How long a gate waits on a busy machine: a budget, not a speed claim."""


def pose3d_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment without the caller's ``POSE3D_*``, weights under ``tmp``, unbuffered output."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POSE3D_")}
    return {**clean, "POSE3D_WEIGHTS_DIR": str(tmp / "weights"), "PYTHONUNBUFFERED": "1", **extra}


@dataclass
class Pose3d:
    """``python -m service.cli ARGS`` with stdout and stderr in files under ``tmp``."""

    args: list[str]
    tmp: Path
    env: dict[str, str]

    def __post_init__(self) -> None:
        name = self.args[0]
        self.out_path, self.err_path = self.tmp / f"{name}.out", self.tmp / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.cli", *self.args], cwd=REPO, env=self.env, stdout=out, stderr=err
            )
        self.mark = 0

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for_stderr(self, text: str) -> None:
        """Until ``text`` appears on stderr (the process must stay alive meanwhile)."""
        while text not in self.stderr():
            assert self.proc.poll() is None, self.stderr()
            self._tick()
        self.mark = len(self.stderr())

    def wait_for_lines(self, path: Path, count: int) -> None:
        """Until the file ``path`` holds ``count`` complete lines."""
        while not path.exists() or path.read_bytes().count(b"\n") < count:
            assert self.proc.poll() is None, self.stderr()
            self._tick()
        self.mark = len(self.stderr())

    def wait_for_http(self, url: str) -> None:
        """Until ``url`` answers at all (any status)."""
        while True:
            assert self.proc.poll() is None, self.stderr()
            try:
                httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                self._tick()
        self.mark = len(self.stderr())

    def _tick(self) -> None:
        """Wait a moment for the process to end (it returns at once when it does; the gate's assert says why);
        pytest's timeout bounds the gate on a machine that never gets there."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(0.2)

    def interrupt(self) -> tuple[int, str]:
        """SIGINT (what Ctrl-C sends); the exit status and what stderr got after the last gate."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(BUDGET_S)
        return code, self.stderr()[self.mark :]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(60)


def user_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` printed for the user: log records and progress bars (redrawn as they close) left
    out."""
    lines = [line.rsplit("\r", 1)[-1] for line in stderr.splitlines()]
    return [line for line in lines if line.strip() and not LOG_RECORD.match(line) and not PROGRESS_BAR.search(line)]


def assert_one_clean_line(code: int, stderr: str, command: str) -> str:
    """Exit 130 and exactly one line for the user, naming the interruption; no traceback and no warning."""
    assert code == 130, stderr
    for noise in ("Traceback", "Exception ignored", "Warning", "never awaited", "Event loop is closed"):
        assert noise not in stderr, stderr
    lines = user_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"pose3d {command}: interrupted"), stderr
    return lines[0]
