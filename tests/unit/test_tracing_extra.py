"""Trace export named in the settings (``telemetry.otlp_endpoint`` / ``spans_file``) without the ``otel`` extra
installed stops start-up in one line naming the extra and the settings, exit 2: the ModuleNotFoundError escaped as a
traceback (exit 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from service.cli import main

EXPORTER = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


@pytest.mark.parametrize(
    ("variable", "missing"),
    [
        ("POSE3D_TELEMETRY__OTLP_ENDPOINT", EXPORTER),
        ("POSE3D_TELEMETRY__SPANS_FILE", "opentelemetry.sdk.resources"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "gateway", "worker"])
def test_trace_export_without_the_otel_extra_is_one_line_and_exit_2(
    command: str,
    variable: str,
    missing: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed: importing it raises ModuleNotFoundError
    monkeypatch.setenv(variable, "http://127.0.0.1:4317" if "ENDPOINT" in variable else str(tmp_path / "spans.jsonl"))
    assert main([command, "--allow-random-weights", "--port", "0"]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if " INFO " not in line]
    assert len(err) == 1, err
    assert err[0].startswith(f"pose3d {command}: error: exporting traces"), err
    assert "pose3d[otel]" in err[0]
