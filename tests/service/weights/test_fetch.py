"""``fetch`` against a local HTTP server: resume, checksums, archives, Google Drive's confirm page, offline."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.weights.catalogue import Entry, Fetch, Format, Kind
from service.weights.fetch import drive_download_url, fetch_entry
from service.weights.store import DOWNLOADS, WeightsError, installed
from tests.service.weights.local_http import (
    DRIVE_FORM_PAGE,
    DRIVE_LINK_PAGE,
    DRIVE_QUOTA_PAGE,
    FileServer,
    Served,
)


def _zip_of_random_bytes(size: int) -> bytes:
    """``size`` random bytes stored in a zip, as torch.save writes a checkpoint: a download with no published size
    or checksum is installed only as a whole zip (or legacy pickle)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data/0", os.urandom(size))
    return buf.getvalue()


BODY = _zip_of_random_bytes(300_000)
SOURCE = "https://example.org/publisher-page"


def entry(url: str, **fields: Any) -> Entry:
    base: dict[str, Any] = {
        "name": "test-pstmo",
        "title": "test",
        "kind": Kind.LIFTER,
        "format": Format.PSTMO,
        "arch": "pstmo-243",
        "lifter_kind": "pstmo",
        "file": "weights.pth",
        "fetch": Fetch.HTTP,
        "url": url,
        "source": SOURCE,
        "licence": "test",
    }
    return Entry(**(base | fields))


def test_a_dropped_connection_is_resumed_with_range(server: FileServer, client: httpx.Client, tmp_path: Path) -> None:
    server.files["/w.pth"] = Served(BODY, drop_after=100_000, drops=2)
    prefix = hashlib.sha256(BODY).hexdigest()[:8]
    done = fetch_entry(client, entry(server.url("/w.pth"), sha256_prefix=prefix, size=len(BODY)), tmp_path)
    assert done.path.read_bytes() == BODY
    assert done.sha256 == hashlib.sha256(BODY).hexdigest()
    assert [r for _, r in server.requests] == [None, "bytes=100000-", "bytes=200000-"]
    assert installed(tmp_path, "test-pstmo") == done


def test_a_partial_download_from_an_earlier_run_is_continued(
    server: FileServer, client: httpx.Client, tmp_path: Path
) -> None:
    from service.weights.fetch import download_key

    server.files["/w.pth"] = Served(BODY)
    url = server.url("/w.pth")
    part = tmp_path / DOWNLOADS / (download_key(url) + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(BODY[:123_456])
    done = fetch_entry(client, entry(url), tmp_path)
    assert done.path.read_bytes() == BODY
    assert server.requests == [("/w.pth", "bytes=123456-")]
    assert not part.exists()


def test_a_wrong_checksum_is_refused_and_nothing_is_installed(
    server: FileServer, client: httpx.Client, tmp_path: Path
) -> None:
    server.files["/w.pth"] = Served(BODY)
    with pytest.raises(WeightsError, match=r"differs from the published .*not installed"):
        fetch_entry(client, entry(server.url("/w.pth"), sha256="0" * 64), tmp_path)
    assert installed(tmp_path, "test-pstmo") is None
    assert not (tmp_path / "test-pstmo" / "weights.pth").exists()
    assert list((tmp_path / DOWNLOADS).iterdir()) == []  # the wrong file is not kept for the next attempt
    with pytest.raises(WeightsError, match=r"does not start with the published abcdef12"):
        fetch_entry(client, entry(server.url("/w.pth"), sha256_prefix="abcdef12"), tmp_path)
    with pytest.raises(WeightsError, match=rf"downloaded {len(BODY)} bytes, the publisher says 5"):
        fetch_entry(client, entry(server.url("/w.pth"), size=5), tmp_path)
    assert installed(tmp_path, "test-pstmo") is None


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize(("suffix", "pack"), [(".zip", _zip), (".tar.gz", _tgz)])
def test_an_archive_is_unpacked_and_kept_for_sibling_entries(
    server: FileServer, client: httpx.Client, tmp_path: Path, suffix: str, pack: Any
) -> None:
    archive = pack({"20230928/yolox/end2end.onnx": b"onnx-bytes", "20230928/yolox/pipeline.json": b"{}"})
    server.files["/det" + suffix] = Served(archive)
    url = server.url("/det" + suffix)
    onnx = entry(url, name="det", kind=Kind.PERSON_DETECTOR, format=Format.ONNX, family="yolox", file="end2end.onnx")
    done = fetch_entry(client, onnx.model_copy(update={"archive": True}), tmp_path)
    assert done.path == tmp_path / "det" / "end2end.onnx"
    assert done.path.read_bytes() == b"onnx-bytes"
    sibling = onnx.model_copy(update={"name": "det-config", "file": "pipeline.json", "archive": True})
    assert fetch_entry(client, sibling, tmp_path).path.read_bytes() == b"{}"
    assert len(server.requests) == 1  # the archive was downloaded once
    missing = onnx.model_copy(update={"name": "det-x", "file": "nothing.onnx", "archive": True})
    with pytest.raises(WeightsError, match=r"holds no file named 'nothing.onnx'"):
        fetch_entry(client, missing, tmp_path)


@pytest.mark.parametrize("page", [DRIVE_FORM_PAGE, DRIVE_LINK_PAGE])
def test_google_drive_confirm_page_is_followed(
    server: FileServer, client: httpx.Client, tmp_path: Path, page: str
) -> None:
    server.drive["1vLtC86_abc"] = (page, BODY)
    view = server.url("/file/d/1vLtC86_abc/view?usp=sharing")
    done = fetch_entry(client, entry(view, fetch=Fetch.GDRIVE), tmp_path)
    assert done.path.read_bytes() == BODY
    first, second = (path for path, _ in server.requests)
    assert first == "/uc?export=download&id=1vLtC86_abc"
    assert "confirm=" in second


def test_google_drive_page_without_a_way_on_says_to_download_by_hand(
    server: FileServer, client: httpx.Client, tmp_path: Path
) -> None:
    server.drive["quota"] = (DRIVE_QUOTA_PAGE, BODY)
    with pytest.raises(WeightsError, match=r"no download link .*pose3d weights add FILE"):
        fetch_entry(client, entry(server.url("/file/d/quota/view"), fetch=Fetch.GDRIVE), tmp_path)


def test_drive_download_url() -> None:
    assert drive_download_url("https://drive.google.com/file/d/1nh8BLCy-E_x/view?usp=sharing") == (
        "https://drive.google.com/uc?export=download&id=1nh8BLCy-E_x"
    )
    with pytest.raises(WeightsError, match=r"not a Google Drive file address"):
        drive_download_url("https://drive.google.com/drive/folders/")


def test_offline_fails_with_one_clear_line(client: httpx.Client, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(WeightsError) as info:
        fetch_entry(client, entry(f"http://127.0.0.1:{port}/w.pth"), tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert f"cannot reach 127.0.0.1:{port}" in message
    assert "offline" in message
    assert installed(tmp_path, "test-pstmo") is None


def test_http_errors_and_unfetchable_entries(server: FileServer, client: httpx.Client, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"HTTP 404"):
        fetch_entry(client, entry(server.url("/missing.pth")), tmp_path)
    folder = entry("https://drive.google.com/drive/folders/xyz", fetch=Fetch.FOLDER, name="capf-x", file="b.bin")
    with pytest.raises(WeightsError, match=r"cannot be fetched as one file.*pose3d weights add b\.bin --name capf-x"):
        fetch_entry(client, folder, tmp_path)
    assert server.requests == [("/missing.pth", None)]


def test_one_drive_archive_serves_several_entries_like_pstmo(
    server: FileServer, client: httpx.Client, tmp_path: Path
) -> None:
    archive = _zip({"checkpoint/PSTMO_a.pth": b"243-full", "checkpoint/PSTMOS_b.pth": b"243-small"})
    server.drive["pstmo"] = (DRIVE_FORM_PAGE, archive)
    view = server.url("/file/d/pstmo/view?usp=sharing")
    full = entry(view, fetch=Fetch.GDRIVE, archive=True, file="PSTMO_a.pth")
    small = full.model_copy(update={"name": "test-pstmo-s", "file": "PSTMOS_b.pth"})
    assert fetch_entry(client, full, tmp_path).path.read_bytes() == b"243-full"
    assert fetch_entry(client, small, tmp_path).path.read_bytes() == b"243-small"
    assert len(server.requests) == 2  # the warning page and the archive, once


def test_cli_fetch_downloads_with_a_progress_bar(
    server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import service.weights.cli as weights_cli
    from service.weights.catalogue import parse_catalogue

    server.files["/w.pth"] = Served(BODY, drop_after=50_000)
    text = f'''
[[entry]]
name = "local-pstmo"
title = "a P-STMO file on a local server"
kind = "lifter"
format = "pstmo"
arch = "pstmo-243"
lifter_kind = "pstmo"
frames = 243
file = "w.pth"
fetch = "http"
url = "{server.url("/w.pth")}"
sha256 = "{hashlib.sha256(BODY).hexdigest()}"
source = "{SOURCE}"
licence = "test"
'''
    monkeypatch.setattr(weights_cli, "load_catalogue", lambda: parse_catalogue("set = []\n" + text))
    args = ["weights", "--weights-dir", str(tmp_path), "fetch", "local-pstmo"]
    from service.cli import main

    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"local-pstmo: installed at {tmp_path / 'local-pstmo' / 'w.pth'}")
    assert "w.pth" in err  # the progress bar's description, on stderr
    assert (tmp_path / "local-pstmo" / "w.pth").read_bytes() == BODY
