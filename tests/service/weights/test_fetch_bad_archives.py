"""``fetch`` of an archive entry (no published checksum) that arrives unreadable: one WeightsError line, and the
bad download is not kept, so the next run downloads again instead of failing the same way for ever."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.weights.catalogue import Entry, Format, Kind
from service.weights.fetch import fetch_entry
from service.weights.store import DOWNLOADS, WeightsError, installed
from tests.service.weights.local_http import DRIVE_QUOTA_PAGE, FileServer, Served
from tests.service.weights.test_fetch import _tgz, _zip, entry


def _det(url: str) -> Entry:
    return entry(
        url,
        name="det",
        kind=Kind.PERSON_DETECTOR,
        format=Format.ONNX,
        family="yolox",
        file="end2end.onnx",
        archive=True,
    )


def _corrupt_member_zip() -> bytes:
    good = _zip({"yolox/end2end.onnx": b"onnx-bytes" * 100})
    at = good.index(b"onnx-bytes")
    return good[:at] + b"X" + good[at + 1 :]  # the member's bytes no longer match its CRC


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (DRIVE_QUOTA_PAGE.encode(), r"neither a zip nor a tar archive"),
        (_zip({"yolox/end2end.onnx": b"onnx-bytes" * 100})[:-30], r"neither a zip nor a tar archive"),
        (_corrupt_member_zip(), r"end2end\.onnx"),
        (_tgz({"yolox/end2end.onnx": bytes(range(256)) * 400})[:-200], r"corrupt"),
    ],
    ids=["html-page", "truncated-zip", "bad-crc", "truncated-tgz"],
)
def test_an_unreadable_archive_is_not_kept_for_the_next_run(
    server: FileServer, client: httpx.Client, tmp_path: Path, bad: bytes, message: str
) -> None:
    server.files["/det.zip"] = Served(bad)
    det = _det(server.url("/det.zip"))
    with pytest.raises(WeightsError, match=message) as info:
        fetch_entry(client, det, tmp_path)
    assert "\n" not in str(info.value)
    assert installed(tmp_path, "det") is None
    assert list((tmp_path / DOWNLOADS).iterdir()) == []  # nothing left for the next run to trust
    server.files["/det.zip"] = Served(_zip({"yolox/end2end.onnx": b"onnx-bytes"}))  # the publisher's file again
    assert fetch_entry(client, det, tmp_path).path.read_bytes() == b"onnx-bytes"
    assert len(server.requests) == 2
