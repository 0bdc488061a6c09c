"""Reading deployment files as their tools do: compose ``${VAR}`` interpolation and ``.env`` files,
Dockerfile instructions, ``.dockerignore`` patterns, and ``POSE3D_*`` variables resolved to settings fields."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from service.cli import build_parser
from service.config import CommonSettings, GatewaySettings, WorkerSettings, build_settings
from tests.conftest import DATA, REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKER = REPO / "docker"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
COMPOSE_GPU_FILE = DEPLOY / "docker-compose.gpu.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
COMPOSE_SCHEMA = DATA / "schemas" / "compose-spec.json"
ENV_PREFIX = "POSE3D_"

SETTINGS_OF_COMMAND: Mapping[str, type[CommonSettings]] = {
    "worker": WorkerSettings,
    "gateway": GatewaySettings,
    "serve": GatewaySettings,
}

# ----------------------------------------------------------------------------------------------- compose


class InterpolationError(ValueError):
    """A ``${VAR:?message}`` whose variable is unset, or syntax compose would refuse."""


_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^{}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?|:\+|\+)(?P<arg>.*))?", re.DOTALL)


def interpolate_text(text: str, env: Mapping[str, str], used: set[str] | None = None) -> str:
    """One string as compose interpolates it: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?err}``, ``${VAR?err}``, ``${VAR:+alt}``, ``${VAR+alt}`` (``:`` = unset *or empty*). Names seen go
    into ``used``. Nested references inside a default are not supported (and not used by our files)."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["named"]:
            if used is not None:
                used.add(match["named"])
            return env.get(match["named"], "")
        braced = _BRACED.fullmatch(match["braced"])
        if braced is None:
            raise InterpolationError(f"invalid interpolation {match[0]!r} in {text!r}")
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        if used is not None:
            used.add(name)
        value = env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in {":-", "-"}:
            return arg if missing else str(value)
        if op in {":?", "?"}:
            if missing:
                raise InterpolationError(f"required variable {name} is missing: {arg}")
            return str(value)
        if op in {":+", "+"}:
            return "" if missing else arg
        return value or ""

    result = _REFERENCE.sub(replace, text)
    if "${" in _REFERENCE.sub("", text):
        raise InterpolationError(f"unterminated or nested interpolation in {text!r}")
    return result


def interpolate(node: Any, env: Mapping[str, str], used: set[str] | None = None) -> Any:
    """Every string value of a parsed compose document interpolated (keys are left alone, as compose does)."""
    if isinstance(node, str):
        return interpolate_text(node, env, used)
    if isinstance(node, dict):
        return {key: interpolate(value, env, used) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env, used) for item in node]
    return node


def load_compose(path: Path = COMPOSE_FILE, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The compose file parsed (YAML merge keys applied) and interpolated with ``env`` (default: nothing set)."""
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: top level is not a mapping"
    result: dict[str, Any] = interpolate(data, env or {})
    return result


def variables_used(path: Path = COMPOSE_FILE) -> set[str]:
    """Names of every variable the compose file interpolates."""
    used: set[str] = set()
    interpolate(yaml.safe_load(path.read_text()), {}, used)
    return used


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a compose ``.env`` file (comments and blank lines skipped; no quoting used)."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}:{number}: not KEY=VALUE: {line!r}"
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path}:{number}: bad variable name {key!r}"
        values[key] = value
    return values


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's ``environment`` (mapping or ``KEY=VALUE`` list form) as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_of(service: Mapping[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value after ``flag`` (or in ``flag=value``) in ``argv``, else None."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


# ----------------------------------------------------------------------------------------------- pose3d


def parse_pose3d_args(argv: list[str]) -> str:
    """Run ``pose3d``'s real argument parser on ``argv``; returns the subcommand, fails the test if refused."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`pose3d {' '.join(argv)}` is refused by the pose3d argument parser (exit {exc.code})")
    command: str = args.command
    return command


def settings_field(cls: type[BaseModel], env_name: str) -> list[str]:
    """The attribute path (``["engine", "max_batch_size"]``) a ``POSE3D_*`` variable sets on ``cls``; fails if none."""
    assert env_name.startswith(ENV_PREFIX), env_name
    parts = env_name[len(ENV_PREFIX) :].lower().split("__")
    model: type[BaseModel] | None = cls
    for i, part in enumerate(parts):
        if model is None or part not in model.model_fields:
            pytest.fail(f"{env_name} names no settings field of {cls.__name__} ({'.'.join(parts[: i + 1])})")
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return parts


def _expected(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _assert_arrived(expected: Any, actual: Any, where: str) -> None:
    """``actual`` (settings dumped as JSON) holds ``expected``; a dict may carry more keys (defaults)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a mapping, settings hold {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: key {key!r} did not reach the settings ({sorted(actual)})"
            _assert_arrived(value, actual[key], f"{where}.{key}")
    else:
        assert actual == expected, f"{where}: settings hold {actual!r}, the file says {expected!r}"


def check_env_reaches_settings(
    cls: type[CommonSettings], env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> CommonSettings:
    """Build ``cls`` the way ``pose3d`` does with exactly the ``POSE3D_*`` variables of ``env``; every variable must
    name a settings field, validate, and arrive with its value."""
    import os

    for name in [name for name in os.environ if name.upper().startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    ours = {name: value for name, value in env.items() if name.startswith(ENV_PREFIX)}
    for name, value in ours.items():
        monkeypatch.setenv(name, value)
    settings = build_settings(cls)
    dumped = settings.model_dump(mode="json")
    for name, value in ours.items():
        actual: Any = dumped
        for part in settings_field(cls, name):
            actual = actual[part]
        _assert_arrived(_expected(value), actual, name)
    return settings


# ----------------------------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    stage: int  # index of the FROM this instruction belongs to (-1 before the first FROM)
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str


def read_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, f"{path}: ends inside a continued line"
    stage = -1
    result: list[Instruction] = []
    for text in logical:
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(stage, keyword, args.strip()))
    return result


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_patterns(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """``(include, regex)`` per line of a .dockerignore (``!`` = include), in order."""
    patterns: list[tuple[bool, re.Pattern[str]]] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        patterns.append((include, _glob_regex(line.lstrip("!").strip("/"))))
    return patterns


def in_build_context(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parent directories) decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for include, regex in patterns:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = include
    return included
