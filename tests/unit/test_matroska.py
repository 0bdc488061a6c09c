"""service.render.matroska.ends_inside on hand-made EBML: whole, cut inside a head or data, unknown sizes."""

from __future__ import annotations

import io

from service.render.matroska import ends_inside

HEADER = b"\x1a\x45\xdf\xa3\x81\x00"  # an empty EBML header
UNKNOWN_SEGMENT = b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff"
UNKNOWN_CLUSTER = b"\x1f\x43\xb6\x75\xff"
BLOCK = b"\xa3\x84" + b"abcd"  # a SimpleBlock of 4 bytes


def cut(data: bytes) -> bool:
    file = io.BytesIO(data)
    file.seek(3)
    found = ends_inside(file)
    assert file.tell() == 3  # the position is kept
    return found


def test_a_segment_of_known_size_is_whole_only_when_the_file_holds_it() -> None:
    segment = b"\x18\x53\x80\x67\x88" + 2 * b"\xa3\x82zz"
    assert not cut(HEADER + segment)
    assert not cut(HEADER + segment + b"trailing")
    assert cut(HEADER + segment[:-1])
    assert cut(HEADER + segment[:-4])  # even cut between two elements: the Segment says more


def test_a_live_recording_is_cut_where_its_last_element_runs_past_the_end() -> None:
    recording = HEADER + UNKNOWN_SEGMENT + UNKNOWN_CLUSTER + 3 * BLOCK + UNKNOWN_CLUSTER + 2 * BLOCK
    assert not cut(recording)
    assert cut(recording[:-1])  # inside a block's data
    assert cut(recording[: -len(BLOCK) + 1])  # inside a block's head
    assert cut(recording[: -len(BLOCK) - 2])  # inside the data of the block before
    assert not cut(recording[: -len(BLOCK)])  # between two blocks: nothing tells it from a whole file


def test_what_it_cannot_read_counts_as_whole() -> None:
    assert not cut(b"RIFF\x00\x00\x00\x00AVI ")  # not EBML
    assert not cut(HEADER + UNKNOWN_SEGMENT + b"\x00\x00")  # no length marker: not EBML
    assert not cut(HEADER + UNKNOWN_SEGMENT + b"\x1c\x53\xbb\x6b\xff" + b"cues")  # unknown-size Cues: not read into
