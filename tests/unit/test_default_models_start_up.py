"""A default-model setting that names no served model stops start-up in one line naming the setting and the served
models, exit 2: it started, and then every request without a model was a 404 naming the served ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import main
from tests.service.test_rest_settings import TINY_TOML

WORKER_TOML = TINY_TOML.split("[limits]")[0].replace("grpc_port = 0\n", "")  # a worker has no REST limits


@pytest.mark.parametrize(
    ("field", "value"),
    [("default_image_model", "nope"), ("default_clip_model", "pstmo-243"), ("default_keypoints_model", "kp")],
)
@pytest.mark.parametrize("command", ["serve", "gateway", "worker"])
def test_an_unserved_default_model_is_one_line_and_exit_2(
    command: str,
    field: str,
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "pose3d.toml"
    config.write_text(WORKER_TOML if command == "worker" else TINY_TOML)
    monkeypatch.setenv(f"POSE3D_{field.upper()}", value)
    argv = [command, "--config", str(config), "--allow-random-weights", "--port", "0"]
    assert main(argv + (["--metrics-port", "0"] if command == "worker" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d {command}: error: {field} = {value!r} is not a served model"), err
    assert "(served: capf, pstmo-9)" in err[0], err
    assert f"POSE3D_{field.upper()}" in err[0], err
