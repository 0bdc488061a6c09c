"""What FFmpeg's Matroska/WebM demuxer does not say: that a file ends before its data does.

A Matroska file is a tree of EBML elements, each an ID and a size ahead of its data. FFmpeg drops a block the file
ends inside and ends the stream as at the clip's end (no corrupt packet, unlike MP4/MOV/AVI), so a cut file decodes as
a shorter whole one. Its element sizes tell: a Segment of known size ends past the file's end, or (a Segment of
unknown size, as a live recorder such as a browser's MediaRecorder writes it, with no Duration and no Cues and maybe
Clusters of unknown size too) the last element's declared size runs past it.
"""

from __future__ import annotations

import io
from typing import BinaryIO, Final

EBML_HEADER: Final = 0x1A45DFA3
SEGMENT: Final = 0x18538067
CLUSTER: Final = 0x1F43B675
"""The EBML IDs walked (with their length marker bits, as written)."""
MAX_ELEMENTS: Final = 1 << 20
"""Elements walked at most (a recorded clip has about one a frame and track); past it the file counts as whole."""
_HEAD: Final = 12
"""The longest element head: a 4-byte ID and an 8-byte size."""


def _number(head: bytes, at: int) -> tuple[int, int] | None:
    """``(value as written, bytes)`` of the EBML variable-length number at ``head[at]``; None where ``head`` ends
    first. ValueError for a first byte of 0 (no length marker: not EBML)."""
    if at >= len(head):
        return None
    width = 9 - head[at].bit_length()
    if width > 8:
        raise ValueError("not an EBML number")
    if at + width > len(head):
        return None
    return int.from_bytes(head[at : at + width], "big"), width


def _element(head: bytes) -> tuple[int, int | None, int] | None:
    """``(ID, data size or None when unknown, head bytes)`` of the element ``head`` starts with; None where ``head``
    (the file) ends inside it."""
    found = _number(head, 0)
    if found is None:
        return None
    element, id_width = found
    sized = _number(head, id_width)
    if sized is None:
        return None
    value, width = sized
    size = value & ((1 << (7 * width)) - 1)
    unknown = size == (1 << (7 * width)) - 1
    return element, None if unknown else size, id_width + width


def ends_inside(file: BinaryIO) -> bool:
    """Whether the Matroska/WebM data in ``file`` (seekable) ends inside an element: its Segment's declared size, or
    (a Segment of unknown size) the size of an element in it, runs past the end of the file. False for a whole
    file, a file cut exactly between two elements of an unknown-size Segment (nothing tells those apart), data that
    is not EBML, or past :data:`MAX_ELEMENTS`. ``file``'s position is kept."""
    position = file.tell()
    try:
        end = file.seek(0, io.SEEK_END)
        return _walk(file, end)
    except ValueError:
        return False
    finally:
        file.seek(position)


def _walk(file: BinaryIO, end: int) -> bool:
    """:func:`ends_inside` over a file of ``end`` bytes: the top-level elements, into the Segment and into each
    Cluster of unknown size (its children and the elements after it then read as one flat run)."""
    at = 0
    for count in range(MAX_ELEMENTS):
        if at >= end:
            return False
        file.seek(at)
        found = _element(file.read(_HEAD))
        if found is None:
            return True  # the file ends inside an element's head
        element, size, head = found
        if count == 0 and element != EBML_HEADER:
            return False
        if element == SEGMENT:
            if size is not None:
                return at + head + size > end
            at += head
        elif size is None:
            if element != CLUSTER:
                return False  # an element of unknown size we do not read into: nothing to tell
            at += head
        elif at + head + size > end:
            return True
        else:
            at += head + size
    return False
