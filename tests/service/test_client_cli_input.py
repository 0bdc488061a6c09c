"""The client commands given input they cannot use: one line naming it and a non-zero exit, never a traceback (the
gateway is never reached: none listens at the addresses given)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli import main


def test_a_clip_that_is_not_a_video_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = tmp_path / "notes.mp4"
    clip.write_bytes(b"these are notes, not a video")
    assert main(["stream", str(clip), "--grpc", "127.0.0.1:1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pose3d stream: error: ")
    assert f"{clip}: not a video that can be decoded" in err
