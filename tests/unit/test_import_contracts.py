"""The layers contract covers every module of ``service``, and breaking it fails ``lint-imports``.

A copy of ``service`` in a temporary directory gets one deliberate violation per layer named since issue 19 (a
module importing a layer above its own, or a sibling it must stay independent of) plus a subpackage named in no
layer; import-linter, run on the copy with the repository's own configuration, must report every one of them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = "service-layers"

VIOLATIONS = {  # importing module (a file of the copy gains the import) → the layer it must not import
    "service.config": "service.weights",  # settings are pure data: no catalogue look-up in a validator
    "service.weights.store": "service.profiles",  # independent siblings
    "service.profiles": "service.weights",
    "service.startup": "service.telemetry",
    "service.geometry.camera": "service.engine",
    "service.export.formats": "service.render",
    "service.telemetry.tracing": "service.engine",
    "service.jobs.store": "service.gateway",
    "service.render.compose": "service.jobs",
    "service.engine.windows": "service.security",
    "service.security": "service.rpc",
    "service.api.estimate": "service.gateway",  # the application layer sits below every transport
    "service.rpc.status": "service.api",
}


def _lint(root: Path, contract: str = CONTRACT) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], limit_to_contracts=(sys.argv[2],), no_cache=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(root / "pyproject.toml"), contract],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _add_import(root: Path, module: str, target: str) -> None:
    path = root.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    path.write_text(path.read_text() + f"\nimport {target}  # noqa\n")


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("contracts")
    shutil.copytree(ROOT / "service", root / "service", ignore=shutil.ignore_patterns("__pycache__", "demo_static"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_every_module_of_service_is_in_the_layers_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c.get("id") == CONTRACT]
    assert layers["exhaustive"] is True
    named = {name.strip(" ()") for layer in layers["layers"] for name in layer.split("|")}
    present = {p.stem for p in (ROOT / "service").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert present - {"__init__"} <= named


def test_a_deliberate_violation_of_each_layer_fails(copy: Path) -> None:
    clean = _lint(copy)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    for module, target in VIOLATIONS.items():
        _add_import(copy, module, target)
    (copy / "service" / "newpart").mkdir()
    (copy / "service" / "newpart" / "__init__.py").write_text("")
    broken = _lint(copy)
    report = broken.stdout + broken.stderr
    assert broken.returncode != 0, report
    assert "service.newpart" in report  # exhaustive: a subpackage in no layer is reported
    for module, target in VIOLATIONS.items():
        assert f"{module} -> {target}" in report, (module, report)


def test_the_application_layer_importing_a_transport_fails(tmp_path: Path) -> None:
    """``service.api`` takes plain inputs: importing Starlette, FastAPI or gRPC there breaks its contract."""
    shutil.copytree(ROOT / "service", tmp_path / "service", ignore=shutil.ignore_patterns("__pycache__", "demo_static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert _lint(tmp_path, "api-transport-neutral").returncode == 0
    for module, target in {"service.api.estimate": "starlette", "service.api.media": "grpc"}.items():
        _add_import(tmp_path, module, target)
    broken = _lint(tmp_path, "api-transport-neutral")
    report = broken.stdout + broken.stderr
    assert broken.returncode != 0, report
    assert "service.api.estimate -> starlette" in report, report
    assert "service.api.media -> grpc" in report, report
