"""A download whose body is cut short never installs: a chunked body that ends without its last chunk is a broken
download (resumed, then refused), and a body ended only by the connection's close — which looks complete — is
installed for an entry that publishes no size or checksum only when it is a whole PyTorch checkpoint."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
import torch

from service.weights.fetch import ATTEMPTS, fetch_entry
from service.weights.store import DOWNLOADS, WeightsError, installed
from tests.service.weights.local_http import FileServer, Served
from tests.service.weights.test_fetch import entry


def _checkpoint(zipped: bool = True) -> bytes:
    """A small torch.save file: a zip archive, or the legacy pickle format."""
    buf = io.BytesIO()
    torch.manual_seed(0)
    torch.save({"w": torch.randn(40_000)}, buf, _use_new_zipfile_serialization=zipped)
    return buf.getvalue()


def test_a_chunked_body_cut_short_is_resumed(server: FileServer, client: httpx.Client, tmp_path: Path) -> None:
    body = _checkpoint()
    server.files["/w.pth"] = Served(body, framing="chunked", drop_after=len(body) // 2)
    done = fetch_entry(client, entry(server.url("/w.pth")), tmp_path)  # no size, no checksum published
    assert done.path.read_bytes() == body
    assert [r for _, r in server.requests] == [None, f"bytes={len(body) // 2}-"]


def test_a_chunked_body_always_cut_short_fails_and_installs_nothing(
    server: FileServer, client: httpx.Client, tmp_path: Path
) -> None:
    body = _checkpoint()
    server.files["/w.pth"] = Served(body, framing="chunked", drop_after=1000, drops=ATTEMPTS)
    with pytest.raises(WeightsError, match=rf"broke off {ATTEMPTS} times"):
        fetch_entry(client, entry(server.url("/w.pth")), tmp_path)
    assert installed(tmp_path, "test-pstmo") is None
    assert [p.suffix for p in (tmp_path / DOWNLOADS).iterdir()] == [".part"]  # kept to resume, never renamed


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_body_ended_by_a_close_cut_short_is_refused(
    server: FileServer, client: httpx.Client, tmp_path: Path, zipped: bool
) -> None:
    body = _checkpoint(zipped)
    server.files["/w.pth"] = Served(body, framing="close", drop_after=len(body) // 2)
    wanted = entry(server.url("/w.pth"))  # no size, no checksum published
    with pytest.raises(WeightsError, match=r"test-pstmo: the download is no whole checkpoint .*not installed"):
        fetch_entry(client, wanted, tmp_path)
    assert installed(tmp_path, "test-pstmo") is None
    assert not (tmp_path / "test-pstmo").exists()
    assert list((tmp_path / DOWNLOADS).iterdir()) == []  # the cut file is not reused by the next run
    assert fetch_entry(client, wanted, tmp_path).path.read_bytes() == body  # the next run gets it whole


def test_a_download_that_is_no_checkpoint_is_refused(server: FileServer, client: httpx.Client, tmp_path: Path) -> None:
    server.files["/w.pth"] = Served(b"\x00\x01 not a checkpoint", framing="close")
    with pytest.raises(WeightsError, match=r"no PyTorch checkpoint \(it starts 00 01 20 6e\)"):
        fetch_entry(client, entry(server.url("/w.pth")), tmp_path)
    assert installed(tmp_path, "test-pstmo") is None
