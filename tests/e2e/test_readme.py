"""README.md and every page under docs/ run as written: each command block is executed here, page by page and in
order, or its marker says in one line why it cannot run (the conventions: ``tests/e2e/doc_blocks.py``).

How the pages meet the test machine, without fixed ports or fixed paths:

- One working copy for the whole run, like a user's fresh clone: a temp directory holding a symlink to each
  top-level entry of the repository (``.venv`` included) except ``examples/`` and ``docs/``, which are copies of
  their tracked files only — so a block that needs ``examples/long.mp4`` must have generated it, as the README
  does, and what a block writes there (``docs/render_example.png``) never touches the repository;
- every documented port (``localhost:8000``, ``--port 50061``, ``redis://127.0.0.1:6390``, ``PORT=...``) gets a
  free stand-in: the ports of the server a ``run`` block talks to (8000 → its REST port, 50051 → its gRPC
  port), fresh ones for a self-contained block; ``/tmp`` becomes a temp directory of this run;
- ``make serve`` / ``pose3d serve`` with no port flag get the stand-ins through ``PORT`` (the Makefile's
  variable), ``POSE3D_GRPC_PORT`` and ``--port``; ``pose3d estimate|jobs|stream`` without ``--url``/``--grpc`` get
  the server's address (a shell function in front of the real command: ``doc_blocks.PREAMBLE``).

Pages run README.md first, then docs/ in path order; README.md's server block (``make serve``) starts the shared
server, which runs until every page is done. Pages written later by anyone run here without a change to this
test, as long as they follow the marker convention.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port
from tests.e2e import doc_blocks
from tests.e2e.doc_blocks import Block, Ports, blocks

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").rglob("*.md"))]
COPIED = ("examples", "docs")  # tracked files only: what blocks generate there stays in the temp copy
BUDGET_S = 900  # a busy machine (CPU burners beside the suite) may be slow; nothing here measures speed


def _page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@dataclass(frozen=True)
class Place:
    """Where the blocks run: the working copy, the stand-in for /tmp, the bin dir on PATH."""

    work: Path
    tmp: Path

    def env(self, ports: Ports) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POSE3D_", "VIRTUAL_ENV"))}
        env["PATH"] = f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["POSE3D_ENGINE__REQUEST_TIMEOUT_S"] = str(BUDGET_S)  # budget for a loaded machine, not a speed claim
        http, grpc = str(ports.http), str(ports.grpc)
        return env | {"PORT": http, "POSE3D_GRPC_PORT": grpc, "P3D_HTTP": http, "P3D_GRPC": grpc}

    def start(self, block: Block, ports: Ports, output: Path) -> subprocess.Popen[bytes]:
        """``block`` as one bash script in its own process group, its output (stdout and stderr) to ``output``."""
        with output.open("wb") as out:
            return subprocess.Popen(
                ["bash", "-c", doc_blocks.script(block, ports.mapping, self.tmp)],
                cwd=self.work,
                env=self.env(ports),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Place:
    work = tmp_path_factory.mktemp("clone")
    for entry in REPO.iterdir():
        if entry.name not in {*COPIED, ".git"}:
            (work / entry.name).symlink_to(entry)
    tracked = subprocess.run(
        ["git", "ls-files", *COPIED], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in tracked:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, work / name)
    return Place(work, tmp_path_factory.mktemp("tmp"))


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Server:
    """A server block running in the background on stand-in ports."""

    def __init__(self, block: Block, place: Place) -> None:
        self.block, self.ports = block, doc_blocks.stand_ins(block, free_port)
        self.log = place.tmp / f"server-{block.page.stem}-{block.line}.log"
        self.process = place.start(block, self.ports, self.log)
        self._wait_ready()

    def _wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.ports.http}/readyz"
        for _ in range(BUDGET_S):
            if self.process.poll() is not None:
                pytest.fail(f"{self.block.where}: the server exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(1)
        pytest.fail(f"{self.block.where}: {url} never answered 200:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        _stop(self.process)


class SharedServer:
    """README.md's server block, started when a page first needs it, stopped after the last page."""

    def __init__(self, place: Place) -> None:
        self.place = place
        self.server: Server | None = None

    def get(self) -> Server:
        if self.server is None:
            (block,) = [b for b in blocks(README) if b.kind == "server"]
            self.server = Server(block, self.place)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="module")
def shared(place: Place) -> Iterator[SharedServer]:
    servers = SharedServer(place)
    try:
        yield servers
    finally:
        servers.stop()


def _run(block: Block, ports: Ports, place: Place) -> None:
    """Run ``block`` as one script, then compare each command's output with what the page shows."""
    printed = place.tmp / f"block-{block.page.stem}-{block.line}.out"
    process = place.start(block, ports, printed)
    try:
        process.wait(BUDGET_S)
    finally:
        _stop(process)  # also whatever the block left in the background
    text = printed.read_text(errors="replace")
    per_command = doc_blocks.outputs(text)
    print(f"--- {block.where} ({block.kind}) ---\n{text}")
    if process.returncode != 0:
        failed = block.commands[max(per_command, default=0)].text
        pytest.fail(f"{block.where}: `{failed}` failed (exit {process.returncode}):\n{text[-3000:]}")
    for index, command in enumerate(block.commands):
        why = doc_blocks.mismatch(command.shown, per_command.get(index, ""))
        assert why is None, f"{block.where}: `{command.text}` printed something else than the page shows: {why}"


def test_every_command_block_is_run_or_says_why_not() -> None:
    found = [problem for page in PAGES for block in blocks(page) for problem in doc_blocks.problems(block)]
    assert not found, "\n".join(found)
    assert [b.kind for b in blocks(README)].count("server") == 1, "README.md starts the one shared server"


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_blocks_run_in_order(page: Path, place: Place, shared: SharedServer) -> None:
    own: Server | None = None
    try:
        for block in blocks(page):
            if block.kind == "server" and page == README:
                continue  # the shared server, started by the first block that needs it
            if block.kind == "server":
                if own is not None:
                    own.stop()
                own = Server(block, place)
            elif block.kind == "run":
                server = own or shared.get()
                _run(block, server.ports, place)
            elif block.runs:
                _run(block, doc_blocks.stand_ins(block, free_port), place)
    finally:
        if own is not None:
            own.stop()


def test_the_readme_is_short_and_every_docs_page_is_linked() -> None:
    """The README stays a first hour (at most ~300 lines); every page under docs/ is reachable from the index."""
    assert len(README.read_text().splitlines()) <= 300
    assert "](docs/README.md)" in README.read_text()
    docs = REPO / "docs"
    index = (docs / "README.md").read_text()
    unlinked = [str(p.relative_to(docs)) for p in docs.rglob("*.md") if p.name != "README.md"]
    unlinked = [name for name in unlinked if f"]({name})" not in index]
    assert not unlinked, f"docs/README.md does not link {', '.join(unlinked)}"
