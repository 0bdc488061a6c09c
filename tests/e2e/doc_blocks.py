"""The command blocks of README.md and docs/**/*.md: how they are found, rewritten to free ports and a temp
directory, turned into one bash script, and how their output is compared with what the page shows.

The convention every page follows: each fenced block of commands (```console, ```bash, ```sh, ```shell, or a
fence without a language whose lines start with ``$ ``) sits right under a marker comment (nothing but blank
lines between them):

- ``<!-- readme-test: server -->`` — starts a server (``make serve``, ``pose3d serve ...``) in the background; the
  ``run`` blocks after it on the same page talk to it. README.md's server block is the one shared by every page
  that has no server block of its own;
- ``<!-- readme-test: run -->`` — run against that server;
- ``<!-- readme-test: standalone -->`` / ``<!-- readme-test: deployment -->`` — self-contained: needs no server,
  or starts its own processes with ``&`` (and stops them with ``kill $(jobs -p)``);
- ``<!-- readme-test: output REASON -->`` — not run; REASON says in one line why (needs the internet, a GPU,
  Docker, a camera, minutes of CPU, ...).

Inside a block, ``$ `` starts a command (a trailing ``\\`` continues it on the next line) and the lines up to the
next ``$`` are the output the page shows for it (``...`` lines are elisions). What is compared, for each command
that shows output: every JSON key the shown output names appears in the real output, and the first words of
the shown lines appear, in order, as the first words of real output lines — literally, except words that vary
from run to run (numbers with a fraction or of 5+ digits, ids, hex key ids), which only have to be there.
Stale text (a renamed field, another message, a different count or status code) fails; random numbers do not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

COMMAND_FENCES = frozenset({"console", "bash", "sh", "shell"})
KINDS = frozenset({"server", "run", "standalone", "deployment", "output"})
FENCE = re.compile(r"^[ \t]*```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^[ \t]*```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!-- readme-test: (?P<kind>[a-z]+)(?P<why>.*?)-->")
# A port number in a context that names a port: host:PORT, --port PORT / --grpc-port=PORT, FOO_PORT=PORT.
PORT = re.compile(r"(?P<pre>(?:localhost|127\.0\.0\.1|0\.0\.0\.0):|--[\w-]*port[ =]|\b[A-Z_]*PORT=)(?P<port>\d{4,5})\b")
TMP = re.compile(r"(?<![\w./-])/tmp(?=[/\s'\";)]|$)", re.M)
SEPARATOR = "\x1epose3d-doc-command"
SPLIT = re.compile(rf"\n?{SEPARATOR} (\d+)\n")
JSON_KEY = re.compile(r'"([A-Za-z_][\w.-]*)"\s*:')
ELLIPSIS = ("...", "…")
DOCUMENTED_HTTP, DOCUMENTED_GRPC = 8000, 50051


@dataclass(frozen=True)
class Command:
    """One ``$`` command (continuation lines joined by newlines) and the output lines the page shows under it."""

    text: str
    shown: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    kind: str | None  # None: no marker above it
    why: str
    commands: tuple[Command, ...]

    @property
    def where(self) -> str:
        return f"{self.page.name}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.kind in KINDS - {"output"}


def _commands(body: str) -> tuple[Command, ...]:
    commands: list[Command] = []
    text: list[str] = []
    shown: list[str] = []
    continuing, indent = False, 0
    for raw in body.splitlines():
        line = raw.strip()
        if continuing:
            text.append(line)
        elif line.startswith("$ ") or line == "$":
            if text:
                commands.append(Command("\n".join(text), tuple(shown)))
            text, shown, indent = [line[2:]], [], len(raw) - len(raw.lstrip())
        elif text:
            shown.append((raw[indent:] if not raw[:indent].strip() else raw).rstrip())
        continuing = bool(text) and line.endswith("\\") and not shown
    if text:
        commands.append(Command("\n".join(text), tuple(shown)))
    return tuple(commands)


def blocks(page: Path) -> list[Block]:
    """Every fenced block of commands on ``page``, in order, with its marker (if any)."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        lang = match["lang"].lower()
        prompts = lang == "" and re.search(r"^[ \t]*\$ ", match["body"], re.M)
        if lang not in COMMAND_FENCES and not prompts:
            continue
        above = text[: match.start()].rstrip().rsplit("\n", 1)[-1].strip()
        marker = MARKER.fullmatch(above)
        kind, why = (marker["kind"], marker["why"].strip()) if marker else (None, "")
        line = text[: match.start()].count("\n") + 1
        found.append(Block(page, line, lang, kind, why, _commands(match["body"])))
    return found


def problems(block: Block) -> list[str]:
    """What is wrong with a block's marking (empty when it follows the convention)."""
    if block.kind is None:
        return [
            f"{block.where}: a ```{block.lang} block without a readme-test marker above it (run it, or say why not)"
        ]
    if block.kind not in KINDS:
        return [f"{block.where}: unknown marker kind {block.kind!r} (one of {', '.join(sorted(KINDS))})"]
    if block.kind == "output" and not block.why:
        return [f"{block.where}: an output block must say in one line why it is not run"]
    if block.runs and not block.commands:
        return [f"{block.where}: a {block.kind} block without $ commands"]
    return []


def documented_ports(script: str) -> set[int]:
    return {int(m["port"]) for m in PORT.finditer(script)}


@dataclass(frozen=True)
class Ports:
    """Stand-ins for the ports a block names (``mapping``: documented → free), and where a server it starts listens:
    the ``--port`` / ``--grpc-port`` of its ``pose3d serve|gateway`` line, else the defaults 8000 / 50051."""

    mapping: Mapping[int, int]
    http: int
    grpc: int


def stand_ins(block: Block, free: Callable[[], int]) -> Ports:
    text = "\n".join(command.text for command in block.commands)
    mapping = {port: free() for port in documented_ports(text) | {DOCUMENTED_HTTP, DOCUMENTED_GRPC}}
    servers = "\n".join(c.text for c in block.commands if re.search(r"\bpose3d\s+(?:serve|gateway)\b", c.text))

    def flag(name: str, default: int) -> int:
        named = re.search(rf"(?<![\w-])--{name}[ =](\d{{4,5}})\b", servers)
        return mapping[int(named[1]) if named else default]

    return Ports(mapping, flag("port", DOCUMENTED_HTTP), flag("grpc-port", DOCUMENTED_GRPC))


def rewrite(script: str, ports: Mapping[int, int], tmp: Path) -> str:
    """``script`` with each documented port replaced by its free stand-in, and ``/tmp`` by ``tmp``."""
    script = PORT.sub(lambda m: m["pre"] + str(ports.get(int(m["port"]), int(m["port"]))), script)
    return TMP.sub(str(tmp), script)


# `pose3d` as the pages write it, pointed at the test's ports where a command relies on a default address.
PREAMBLE = r"""set -euo pipefail
exec 2>&1
pose3d() {
  local arg has_url=0 has_grpc=0 has_port=0
  for arg in "$@"; do
    case "$arg" in --url|--url=*) has_url=1;; --grpc|--grpc=*) has_grpc=1;; --port|--port=*) has_port=1;; esac
  done
  case "${1:-}" in
    estimate|jobs) if (( ! has_url )); then set -- "$@" --url "http://127.0.0.1:$P3D_HTTP"; fi;;
    stream) if (( ! has_grpc )); then set -- "$@" --grpc "127.0.0.1:$P3D_GRPC"; fi;;
    serve|gateway) if (( ! has_port )); then set -- "$@" --port "$P3D_HTTP"; fi;;
  esac
  command pose3d "$@"
}
"""


def script(block: Block, ports: Mapping[int, int], tmp: Path) -> str:
    """The block as one bash script; a separator line before each command splits the output per command."""
    parts = [PREAMBLE]
    for index, command in enumerate(block.commands):
        parts.append(f"printf '\\n{SEPARATOR} %d\\n' {index}")
        parts.append(rewrite(command.text, ports, tmp))
    return "\n".join(parts) + "\n"


def outputs(printed: str) -> dict[int, str]:
    """The script's output per command index."""
    pieces = SPLIT.split(printed)
    return {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces) - 1, 2)}


def _word_shape(line: str) -> str:
    """The first word of a line as compared: literal, or ``<var>`` (+ its trailing punctuation) when it varies."""
    word = line.split(maxsplit=1)[0]
    core = word.rstrip(":,;")
    tail = word[len(core) :]
    if re.fullmatch(r"\d{1,4}", core) or not core:
        return word
    variable = (
        re.match(r"-?\.?\d", core)
        or re.fullmatch(r"[0-9a-f]{8,}", core)
        or (
            len(core) >= 8
            and re.fullmatch(r"[\w-]+", core)
            and not re.fullmatch(r"[a-z][a-z0-9]*(?:[_.-][a-z0-9]+)*|[A-Z][a-z]+|[A-Z0-9_]+", core)
        )
    )
    # quoted values with a digit inside a word vary too: pose3d_key_requests_total{key="364f7c23",outcome="admitted"}
    return "<var>" + tail if variable else re.sub(r'"[^"\s]*\d[^"\s]*"', '"<var>"', word)


def _same_shape(got: str, want: str) -> bool:
    """``got`` (a printed line's first word as :func:`_word_shape` gives it) has the shape ``want`` of a shown one. A
    shown varying word also takes a printed one that happens to look like a constant or a name (a random id of
    upper-case letters and digits, ``NFMRR8HL:``, or of lower-case ones, ``abc3def9:``): 8 or more word characters
    with the same trailing punctuation."""
    if got == want:
        return True
    tail = want.removeprefix("<var>")
    return (
        want.startswith("<var>")
        and got.endswith(tail)
        and re.fullmatch(r"[\w-]{8,}", got[: len(got) - len(tail)] or "") is not None
    )


def _compared(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not line[0].isspace() and not stripped.startswith(("{", "[", '"', *ELLIPSIS))


def mismatch(shown: Sequence[str], actual: str) -> str | None:
    """Why ``actual`` does not have the shape of the ``shown`` output, or None when it does."""
    missing = sorted(set(JSON_KEY.findall("\n".join(shown))) - set(JSON_KEY.findall(actual)))
    if missing:
        return f"JSON keys shown but not printed: {', '.join(missing)}"
    lines = [line for line in re.split(r"[\r\n]+", actual) if line.strip()]
    printed = iter([_word_shape(line) for line in lines])
    for line in filter(_compared, shown):
        want = _word_shape(line)
        if not any(_same_shape(got, want) for got in printed):
            return f"shown line {line!r}: no printed line (after the ones matched before) starts with {want!r}"
    return None
