"""A JPEG (or PNG, or WebP) whose EXIF orientation turns it a quarter (a phone's portrait photo: stored landscape, tagged to be shown
turned) is decoded turned, as every viewer shows it; its header probe, and so the check of the client's boxes, use
the size of that image — not the stored one, which has width and height swapped."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator

import httpx
import pytest

from service.api.media import MediaKind, probe_image_size
from service.engine.prepare import decode_image
from tests.service.media_samples import encode_image, person_image
from tests.service.rest_support import assert_problem, live_server, tiny_settings

pytestmark = pytest.mark.slow


def exif(orientation: int, byte_order: bytes = b"MM") -> bytes:
    """EXIF data (from its TIFF header) whose IFD0 holds only the Orientation tag (0x0112, SHORT)."""
    fmt = ">" if byte_order == b"MM" else "<"
    entry = struct.pack(fmt + "HHI", 0x0112, 3, 1) + struct.pack(fmt + "HH", orientation, 0)
    return byte_order + struct.pack(fmt + "HI", 42, 8) + struct.pack(fmt + "H", 1) + entry + struct.pack(fmt + "I", 0)


def with_orientation(jpeg: bytes, orientation: int, byte_order: bytes = b"MM", tiff: bytes | None = None) -> bytes:
    """``jpeg`` with an APP1 Exif segment (``tiff``, else :func:`exif` of ``orientation``)."""
    app1 = b"Exif\x00\x00" + (exif(orientation, byte_order) if tiff is None else tiff)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def webp_with_orientation(webp: bytes, width: int, height: int, orientation: int) -> bytes:
    """A simple (VP8) ``webp`` of ``width`` x ``height`` made an extended one (VP8X, EXIF flag) with an EXIF chunk
    after its image data."""
    tiff = exif(orientation)
    vp8x = bytes([0x08, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x + webp[12:] + b"EXIF" + struct.pack("<I", len(tiff))
    body += tiff + b"\x00" * (len(tiff) & 1)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def png_with_orientation(png: bytes, orientation: int) -> bytes:
    """``png`` with an eXIf chunk after its IHDR."""
    chunk = b"eXIf" + exif(orientation)
    return png[:33] + struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


STORED = encode_image(person_image(256, 192))  # stored 256 wide, 192 tall


@pytest.mark.parametrize("byte_order", [b"MM", b"II"])
@pytest.mark.parametrize(("orientation", "size"), [(1, (256, 192)), (3, (256, 192)), (6, (192, 256)), (8, (192, 256))])
def test_the_probe_gives_the_size_of_the_image_the_engine_decodes(
    orientation: int, size: tuple[int, int], byte_order: bytes
) -> None:
    data = with_orientation(STORED, orientation, byte_order)
    decoded = decode_image(data)
    assert (decoded.shape[1], decoded.shape[0]) == size
    assert probe_image_size(data, MediaKind.JPEG) == size
    png = png_with_orientation(encode_image(person_image(256, 192), ".png"), orientation)
    decoded = decode_image(png)
    assert (decoded.shape[1], decoded.shape[0]) == size
    assert probe_image_size(png, MediaKind.PNG) == size
    webp = webp_with_orientation(encode_image(person_image(256, 192), ".webp"), 256, 192, orientation)
    decoded = decode_image(webp)
    assert (decoded.shape[1], decoded.shape[0]) == size
    assert probe_image_size(webp, MediaKind.WEBP) == size


def test_cut_or_broken_exif_data_is_read_as_the_decoder_reads_it() -> None:
    tiff = exif(6)
    far = tiff[:4] + struct.pack(">I", 2**31) + tiff[8:]  # IFD0 past the end
    for broken in [tiff[:cut] for cut in range(len(tiff))] + [far]:
        data = with_orientation(STORED, 6, tiff=broken)
        decoded = decode_image(data)
        assert probe_image_size(data, MediaKind.JPEG) == (decoded.shape[1], decoded.shape[0]), broken


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with live_server(tiny_settings()) as live, live.client() as http:
        yield http


def _post(client: httpx.Client, data: bytes, boxes: list[list[float]]) -> httpx.Response:
    files = {"file": ("portrait.jpg", data, "image/jpeg")}
    return client.post("/v1/pose3d", files=files, data={"boxes": json.dumps(boxes), "flip_test": "false"})


def test_a_box_inside_the_turned_photo_is_accepted(client: httpx.Client) -> None:
    portrait = with_orientation(STORED, 6)  # shown 192 wide, 256 tall
    response = _post(client, portrait, [[4.0, 200.0, 150.0, 250.0]])  # below the stored image's 192 rows
    assert response.status_code == 200, response.text
    (frame,) = response.json()["frames"]
    assert len(frame["people"]) == 1


def test_a_box_outside_the_turned_photo_is_refused(client: httpx.Client) -> None:
    portrait = with_orientation(STORED, 6)
    response = _post(client, portrait, [[200.0, 10.0, 250.0, 100.0]])  # right of the shown image's 192 columns
    assert_problem(response, 422, "invalid-input")


@pytest.mark.parametrize("orientation", range(10))
def test_every_orientation_value_is_read_as_the_decoder_reads_it(orientation: int) -> None:
    image = person_image(256, 192)
    for data, kind in ((with_orientation(STORED, orientation, b"II"), MediaKind.JPEG),
                       (png_with_orientation(encode_image(image, ".png"), orientation), MediaKind.PNG),
                       (webp_with_orientation(encode_image(image, ".webp"), 256, 192, orientation), MediaKind.WEBP)):  # fmt: skip
        decoded = decode_image(data)
        assert probe_image_size(data, kind) == (decoded.shape[1], decoded.shape[0])
