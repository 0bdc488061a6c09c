"""The README runs as written: every ```console block is either executed here against a live server or marked
as output only.

Each console block is preceded by a marker comment:

- ``<!-- readme-test: server -->`` — the command that starts the embedded service (``make serve``); started here
  in the background exactly as written, on the ports the README names (8000 REST, 50051 gRPC);
- ``<!-- readme-test: run -->`` — its ``$`` lines run, in order, as one bash script (``set -euo pipefail``) from the
  repository root against that server; every command must succeed (the README's curls use ``-f``);
- ``<!-- readme-test: deployment -->`` — a self-contained multi-process deployment (redis-server, workers, a
  gateway, started with ``&`` in the block itself), run as one script after the embedded server stopped;
- ``<!-- readme-test: standalone -->`` — needs no server (e.g. the conformance check), run as one script;
- ``<!-- readme-test: output REASON -->`` — shown output or a command that cannot run here (REASON says why:
  needs the internet, a GPU, Docker, a camera, ...).

The lines of a block that do not start with ``$ `` are the output the README shows (trimmed where it says so);
they are documentation, not assertions. What is asserted: each block's commands exit 0.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

README = REPO / "README.md"
MARKED = re.compile(
    r"<!-- readme-test: (?P<kind>[a-z]+)(?P<why>[^>]*)-->[ \t]*\n[ \t]*```console\n(?P<body>.*?)```", re.S
)
KINDS = {"server", "run", "deployment", "standalone", "output"}
BUDGET_S = 900  # a busy machine (CPU burners beside the suite) may be slow; nothing here measures speed


@dataclass(frozen=True)
class Block:
    kind: str
    why: str
    script: str
    line: int


def _commands(body: str) -> str:
    """The block's ``$`` lines (with ``\\`` continuations) as a script."""
    lines, current = [], ""
    for line in body.splitlines():
        raw = line.strip()
        if current:
            current += "\n" + raw
        elif raw.startswith("$ "):
            current = raw[2:]
        else:
            continue
        if not current.endswith("\\"):
            lines.append(current)
            current = ""
    return "\n".join(lines)


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(m["kind"], m["why"].strip(), _commands(m["body"]), text[: m.start()].count("\n") + 1)
        for m in MARKED.finditer(text)
    ]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSE3D_")}
    env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["POSE3D_ENGINE__REQUEST_TIMEOUT_S"] = str(BUDGET_S)  # budget for a loaded machine, not a speed claim
    return env


def _run(block: Block, timeout_s: float = BUDGET_S) -> subprocess.CompletedProcess[str]:
    script = "set -euo pipefail\n" + block.script
    done = subprocess.run(
        ["bash", "-c", script], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    print(f"--- README block at line {block.line} ({block.kind}) ---\n{block.script}\n>>>\n{done.stdout}{done.stderr}")
    return done


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _assert_free(*ports: int) -> None:
    """The README names these ports; a server of an earlier block may still be shutting down: wait for it."""
    for port in ports:
        for _ in range(BUDGET_S * 5):
            if _port_free(port):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"port {port} is in use: the README's commands name it, so this test needs it free")


def _wait_ready(process: subprocess.Popen[str], url: str) -> None:
    for _ in range(BUDGET_S):
        assert process.poll() is None, "the README's server command exited"
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(1)
    pytest.fail(f"{url} never answered 200")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_every_console_block_is_run_or_marked_as_output() -> None:
    text = README.read_text()
    blocks = readme_blocks()
    assert len(blocks) == text.count("```console\n"), "a ```console block without a readme-test marker"
    assert {b.kind for b in blocks} <= KINDS
    for block in blocks:
        if block.kind == "output":
            assert block.why, f"README line {block.line}: say why the block is not run"
        else:
            assert block.script, f"README line {block.line}: a runnable block without $ commands"
    assert [b.kind for b in blocks].count("server") == 1


@pytest.fixture(scope="class")
def embedded() -> Iterator[None]:
    """``make serve`` as the README's server block says, for the embedded blocks only (stopped before the
    deployment block, which needs the same ports)."""
    (server,) = [b for b in readme_blocks() if b.kind == "server"]
    _assert_free(8000, 50051)
    process = subprocess.Popen(["bash", "-c", server.script], cwd=REPO, env=_env(), start_new_session=True, text=True)
    try:
        _wait_ready(process, "http://127.0.0.1:8000/readyz")
        yield
    finally:
        _stop(process)


@pytest.mark.usefixtures("embedded")
class TestEmbedded:
    @pytest.mark.parametrize("index", range(sum(b.kind == "run" for b in readme_blocks())))
    def test_readme_block_runs_against_the_embedded_server(self, index: int) -> None:
        block = [b for b in readme_blocks() if b.kind == "run"][index]
        done = _run(block)
        assert done.returncode == 0, f"README line {block.line}: {block.script}\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("kind", ["standalone", "deployment"])
def test_readme_self_contained_blocks_run(kind: str, tmp_path: Path) -> None:
    blocks = [b for b in readme_blocks() if b.kind == kind]
    assert blocks
    for block in blocks:
        if kind == "deployment":
            _assert_free(8000, 50051)
        process = subprocess.Popen(
            ["bash", "-c", "set -euo pipefail\n" + block.script],
            cwd=REPO,
            env=_env(),
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            output, _ = process.communicate(timeout=BUDGET_S)
        finally:
            _stop(process)
        print(f"--- README block at line {block.line} ({kind}) ---\n{output}")
        assert process.returncode == 0, f"README line {block.line}:\n{output}"
