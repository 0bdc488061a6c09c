"""Settings that validate must also start: a value the process cannot use is refused when the settings are built, so
``pose3d serve|gateway|worker`` stops in one line and exit 2 (:mod:`service.startup`) — never a traceback after the
models have loaded, nor a server that refuses every request."""

from __future__ import annotations

import pytest

from service.cli import main


@pytest.mark.parametrize(
    "url", ["localhost:6379", "http://localhost:6379", "redis://localhost:port", "redis+cluster://[::1"]
)
@pytest.mark.parametrize("command", ["serve", "gateway", "worker"])
def test_a_redis_url_redis_cannot_open_is_one_line_and_exit_2(
    command: str, url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSE3D_REDIS_URL", url)
    assert main([command, "--allow-random-weights", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d {command}: error: invalid settings (redis_url: "), err
