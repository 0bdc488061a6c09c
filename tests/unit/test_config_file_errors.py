"""A ``--config`` file the settings cannot be read from (a TOML or YAML syntax error, a YAML list, another suffix) is
a failure the user can fix: ``pose3d <command>: error: <file>: <what> — fix the --config file``, exit 2, never a
traceback (:mod:`service.startup`). The command stops before it loads or listens on anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import main


@pytest.mark.parametrize(
    ("name", "text"),
    [("bad.toml", "port = [\n"), ("bad.yaml", "port: [\n"), ("list.yaml", "- 1\n- 2\n"), ("settings.json", "{}")],
)
@pytest.mark.parametrize("command", ["serve", "gateway", "worker"])
def test_an_unreadable_settings_file_is_one_line_and_exit_2(
    command: str, name: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / name
    config.write_text(text)
    assert main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d {command}: error: {config}: ")
    assert err[0].endswith("— fix the --config file")
