"""Finding 7 of issue 20 (the small ones but WebSocket close codes) and issue 21's key-file line, each with a test.

On faaed5b: the '@' password leaked its tail, ``/readyz`` said ready with Redis down or the password wrong,
``/metrics`` listed key ids (tests/service/test_security_rest.py), ``auth=off`` on 0.0.0.0 logged INFO, a
world-readable key file passed silently, an unreadable one gave 401s with nothing logged and was not re-read
after a ``chown``, ``--host`` help said 0.0.0.0. The upload demuxer already refused the crafted playlist (the
sniffer never names HLS), but FFmpeg would have opened the file it names had a demuxer followed it: now no
protocol is allowed for any nested open.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.config import GatewaySettings, SecuritySettings
from service.engine.clips import UPLOAD_DEMUX_OPTIONS
from service.errors import DecodeFailed
from service.gateway.app import create_app
from service.metrics import Metrics
from service.redaction import redact
from service.security import keys as keys_module
from service.security.guard import Security, SecurityConfigError, log_auth_summary
from service.security.keys import KeyStore, create_key
from service.startup import explain
from tests.conftest import REPO, free_port
from tests.e2e.deployment import deployment_env, pose3d_command
from tests.service.grpc_toy_engine import ToyEngine

PASSWORD = "RedisPw9@x@y"

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def test_redact_hides_a_password_holding_at_signs() -> None:
    url = f"rediss://:{PASSWORD}@127.0.0.1:6391/0"
    assert redact(f"redis {url} failed") == "redis rediss://***@127.0.0.1:6391/0 failed"
    assert redact("redis://u:p@h/0 then mail a@b.c") == "redis://***@h/0 then mail a@b.c"
    assert "x@y" not in explain(ConnectionError(f"cannot reach {url}"))


def test_the_serve_log_shows_no_part_of_the_password(tmp_path: Path) -> None:
    """``pose3d serve`` with that password in ``redis_url`` (nothing listens there): the start line is redacted."""
    env = deployment_env(f"rediss://:{PASSWORD}@127.0.0.1:{free_port()}/0") | {"POSE3D_SECURITY__AUTH": "off"}
    log = tmp_path / "serve.log"
    args = pose3d_command("serve", "--port", str(free_port()), "--grpc-port", "0")
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "listening on" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "listening on http://127.0.0.1" in text, text
    assert "rediss://***@127.0.0.1" in text
    assert "RedisPw9" not in text
    assert "x@y" not in text


def _readyz(redis_url: str) -> tuple[int, dict[str, str]]:
    settings = GatewaySettings(host="127.0.0.1", grpc_port=0, redis_url=redis_url, default_image_model="toy")
    app = create_app(settings, engine=ToyEngine())
    with TestClient(app) as client:
        answer = client.get("/readyz")
    return answer.status_code, answer.json()["detail"]


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[int]:
    """A redis-server requiring ``PASSWORD``; yields its port."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed (make test installs it with apt-get)")
    port = free_port()
    args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", PASSWORD, "--save", "",
            "--appendonly", "no", "--dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_readyz_is_not_ready_while_redis_is_down_or_refuses_the_password(redis_with_password: int) -> None:
    quoted = PASSWORD.replace("@", "%40")
    assert _readyz(f"redis://:{quoted}@127.0.0.1:{redis_with_password}/0")[0] == 200
    status, detail = _readyz(f"redis://:wrong-password@127.0.0.1:{redis_with_password}/0")
    assert status == 503
    assert "redis" in detail
    assert "wrong-password" not in str(detail)
    status, detail = _readyz(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    assert status == 503
    assert "unreachable" in detail["redis"]


def test_auth_off_beyond_loopback_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pose3d.security"):
        log_auth_summary(GatewaySettings(host="0.0.0.0", security=SecuritySettings(auth="off")))
        log_auth_summary(GatewaySettings(host="127.0.0.1"))
    levels = [(r.levelno, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert levels == [(logging.WARNING, "API keys NOT required"), (logging.INFO, "API keys NOT required")]


def test_a_key_file_readable_by_others_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = tmp_path / "keys.json"
    create_key(file, "a")
    with caplog.at_level(logging.WARNING, logger="pose3d.security"):
        KeyStore(file)
        assert not caplog.records  # 0600 as written
        file.chmod(0o644)
        KeyStore(file)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert f"chmod 600 {file}" in caplog.records[0].getMessage()


def _secured(file: Path) -> GatewaySettings:
    return GatewaySettings(host="0.0.0.0", security=SecuritySettings(api_keys_file=file))


def test_a_key_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(SecurityConfigError, match="pose3d keys create"):
        Security(_secured(tmp_path / "missing.json"), Metrics())
    (tmp_path / "dir.json").mkdir()  # an OSError even for root
    with pytest.raises(SecurityConfigError, match="IsADirectoryError"):
        Security(_secured(tmp_path / "dir.json"), Metrics())
    env = deployment_env("") | {"POSE3D_SECURITY__API_KEYS_FILE": str(tmp_path / "dir.json")}
    args = pose3d_command("serve", "--host", "0.0.0.0", "--port", str(free_port()), "--grpc-port", "0")
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"pose3d serve: error: API key file {tmp_path / 'dir.json'} holds no usable keys"), last
    assert "Traceback" not in done.stderr


def test_the_reload_notices_an_owner_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file could not be read (as a gateway's uid meets a root-owned 0600 file); a ``chown`` alone (same
    size and mtime) fixes it, and the next lookup reads it."""
    file = tmp_path / "keys.json"
    _, key = create_key(file, "a")
    real_read = keys_module.read_records

    def denied(path: Path) -> dict[str, keys_module.KeyRecord]:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(keys_module, "read_records", denied)
    store = KeyStore(file, check_interval_s=0.0)
    assert store.error is not None
    assert "chown" in store.error
    assert store.verify(key) is None
    monkeypatch.setattr(keys_module, "read_records", real_read)
    assert store.verify(key) is None  # nothing changed on disk: not re-read
    st = file.stat()
    os.chown(file, st.st_uid + 1, st.st_gid)
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, same size: only the owner differs
    assert store.verify(key) is not None
    assert store.error is None


@pytest.mark.parametrize("command", ["serve", "gateway"])
def test_host_help_names_the_real_default(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    help_text = " ".join(done.stdout.split())
    assert "listen address (default 127.0.0.1)" in help_text
    assert GatewaySettings().host == "127.0.0.1"


def _crafted_playlist(tmp: Path) -> tuple[bytes, Path]:
    """An HLS playlist naming a local file (a tiny MPEG-TS clip) by a ``file:`` URL."""
    secret = tmp / "secret.ts"
    with av.open(str(secret), mode="w", format="mpegts") as out:
        stream = out.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    text = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.0,\nfile:{secret}\n#EXT-X-ENDLIST\n"
    return text.encode(), secret


def test_a_crafted_playlist_opens_no_file(tmp_path: Path) -> None:
    """FFmpeg's HLS demuxer, given the playlist, would open the file it names; with the upload options no
    protocol is allowed, so the named file is never opened."""
    playlist, _ = _crafted_playlist(tmp_path)
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # PyAV forwards no FFmpeg log unless a level is set
    try:
        with av.logging.Capture() as logs, pytest.raises(av.FFmpegError):
            av.open(io.BytesIO(playlist), mode="r", format="hls", options=dict(UPLOAD_DEMUX_OPTIONS))
    finally:
        av.logging.set_level(level)
    messages = " ".join(str(m) for m in logs)
    assert "Protocol 'file' not on whitelist" in messages, messages


def test_a_crafted_playlist_upload_is_a_4xx(tmp_path: Path) -> None:
    from service.engine.clips import ClipReader
    from tests.service.rest_support import tiny_settings

    playlist, _ = _crafted_playlist(tmp_path)
    with pytest.raises(DecodeFailed):
        ClipReader(io.BytesIO(playlist), "mp4", tiny_settings().limits)  # even forced past the sniffer
    from service.assembly import in_process_engine

    app = create_app(tiny_settings(), engine_factory=in_process_engine)
    with TestClient(app) as client:
        for name, kind in (("x.m3u8", "application/vnd.apple.mpegurl"), ("x.mp4", "video/mp4")):
            answer = client.post("/v1/pose3d", files={"file": (name, playlist, kind)})
            assert 400 <= answer.status_code < 500, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
