"""docker/Dockerfile parsed instruction by instruction (no Docker engine here): torch==2.13.0 installed before the
package and never an unpinned torch, non-root, no weights, the ports and entry point the deployment files use; and
the build context its .dockerignore admits is enough to build the package's wheel."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.conftest import REPO
from tests.deploy.support import DOCKER, Instruction, dockerignore_patterns, in_build_context, read_dockerfile

DOCKERFILE = DOCKER / "Dockerfile"
INSTRUCTIONS = read_dockerfile(DOCKERFILE)
PINNED_TORCH = "torch==2.13.0"


def of(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.keyword == keyword and (stage is None or i.stage == stage)]


def arg_defaults() -> dict[str, str]:
    return dict(i.args.split("=", 1) for i in of("ARG") if "=" in i.args)


def pip_installs() -> list[tuple[int, list[str]]]:
    """``(position, words after 'pip install')`` of every ``pip install`` in a RUN, in file order."""
    found = []
    for position, instruction in enumerate(INSTRUCTIONS):
        if instruction.keyword != "RUN":
            continue
        lexer = shlex.shlex(instruction.args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        commands: list[list[str]] = [[]]
        for word in lexer:
            if word in {"&&", ";", "||", "|"}:
                commands.append([])
            else:
                commands[-1].append(word)
        for words in commands:
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    found.append((position, words[i + 2 :]))
    return found


def test_two_stages_on_python_311_slim() -> None:
    defaults = arg_defaults()
    images = [i.args.split()[0].replace("${PYTHON_IMAGE}", defaults["PYTHON_IMAGE"]) for i in of("FROM")]
    assert images == ["python:3.11-slim", "python:3.11-slim"]
    assert [i.args.split()[-1] for i in of("FROM")] == ["build", "runtime"]
    assert any(i.args.startswith("--from=build /opt/venv") for i in of("COPY", stage=1))


def test_torch_2_13_0_is_installed_first_and_never_unpinned() -> None:
    installs = pip_installs()
    assert installs, "no pip install found"
    torch_words = [(pos, w) for pos, words in installs for w in words if re.match(r"torch\b", w)]
    assert torch_words, "torch is never installed"
    assert all(w == PINNED_TORCH for _, w in torch_words), torch_words
    first_position, first_words = installs[0]
    assert PINNED_TORCH in first_words
    assert "--index-url" in first_words
    assert first_words[first_words.index("--index-url") + 1] == "${TORCH_INDEX_URL}"
    assert "/whl/cpu" in arg_defaults()["TORCH_INDEX_URL"]
    package = [(pos, words) for pos, words in installs if "." in words]
    assert len(package) == 1, "the package is installed exactly once, with `pip install .`"
    package_position, package_words = package[0]
    assert package_position > first_position
    assert not {"-e", "--editable"} & set(package_words)
    assert INSTRUCTIONS[package_position].stage == INSTRUCTIONS[first_position].stage == 0


def test_runtime_is_non_root_without_weights_with_ports_healthcheck_and_entrypoint() -> None:
    runtime = 1
    (user,) = of("USER", runtime)
    assert user.args.split(":")[0] not in {"root", "0"}
    ports = {int(p) for i in of("EXPOSE", runtime) for p in i.args.split()}
    assert ports == {8000, 50051, 50061, 9100}
    (healthcheck,) = of("HEALTHCHECK", runtime)
    assert healthcheck.args.split("CMD", 1)[1].strip() == '["python", "/opt/pose3d/healthcheck.py"]'
    assert "COPY docker/healthcheck.py /opt/pose3d/healthcheck.py" in {f"COPY {i.args}" for i in of("COPY")}
    (entrypoint,) = of("ENTRYPOINT")
    assert json.loads(entrypoint.args) == ["pose3d"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pose3d"] == "service.cli:main"
    assert any("/weights" in i.args for i in of("RUN", runtime)), "the /weights mount point is created"
    sources = [w for i in of("COPY") if not i.args.startswith("--from") for w in i.args.split()[:-1]]
    assert not [s for s in sources if re.search(r"weights|\.(pth|pt|bin|onnx)$", s)], sources


def build_context() -> list[str]:
    """Repository files (relative, posix) the .dockerignore admits into the build context."""
    patterns = dockerignore_patterns(DOCKER / "Dockerfile.dockerignore")
    files = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in {".git", ".venv"}]
        for name in names:
            relative = (Path(root) / name).relative_to(REPO).as_posix()
            if in_build_context(relative, patterns):
                files.append(relative)
    return sorted(files)


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_else(tmp_path: Path) -> None:
    context = build_context()
    sources = [w.rstrip("/") for i in of("COPY") if not i.args.startswith("--from") for w in i.args.split()[:-1]]
    for source in sources:
        assert any(f == source or f.startswith(source + "/") for f in context), f"COPY {source}: not in the context"
    stray = [f for f in context if not any(f == s or f.startswith(s + "/") for s in sources)]
    assert not stray, stray
    assert not [f for f in context if "__pycache__" in f or f.startswith(("tests/", "bench/"))]

    # `pip install .` in the image sees exactly these files: they must build a wheel holding every module.
    for relative in context:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, tmp_path / relative)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", ".", "-w", "dist"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("pose3d_serve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "pose3d = service.cli:main" in archive.read(entry_points).decode()
    modules = {f for f in context if f.endswith(".py") and f.startswith(("model/", "service/"))}
    assert modules, "no modules in the context"
    assert modules <= names, sorted(modules - names)
