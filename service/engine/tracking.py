"""Track ids across the frames of a clip or stream: greedy IoU matching with explicit, serialisable state.

The state (:class:`TrackState`) is kept next to the stream's frames in the frame buffer, so any worker can continue
any stream. :func:`assign_tracks` is pure: ``(state, boxes of frame t) -> (track ids, new state)``.

Rules: pairs (live track, box) are matched greedily by decreasing IoU while IoU >= ``iou_threshold``
(ties broken by track id, then box index, so results are deterministic); an unmatched box starts a
new track with ``next_id``; ids are never reused within a stream; a track not matched for more than
``max_age`` frames is dropped. The caller applies each frame once, in frame order (the engine stores
the state it got for frame t with frame t, so a retried frame reuses it instead of re-running).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Track:
    """One live track: its id, its last box ``(x1, y1, x2, y2)`` in pixels and the frame it was last seen."""

    track_id: int
    box: tuple[float, float, float, float]
    last_frame: int


@dataclass(frozen=True)
class TrackState:
    """Everything the tracker remembers about one stream."""

    next_id: int = 0
    tracks: tuple[Track, ...] = field(default_factory=tuple)

    def to_bytes(self) -> bytes:
        """Compact JSON (a few dozen bytes per track), versioned."""
        payload = {
            "v": _FORMAT_VERSION,
            "next_id": self.next_id,
            "tracks": [[t.track_id, list(t.box), t.last_frame] for t in self.tracks],
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrackState:
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` on anything else."""
        try:
            payload = json.loads(data)
            if payload["v"] != _FORMAT_VERSION:
                raise ValueError(f"unsupported track state version {payload['v']}")
            tracks = tuple(
                Track(int(tid), (float(b[0]), float(b[1]), float(b[2]), float(b[3])), int(last))
                for tid, b, last in payload["tracks"]
            )
            return cls(next_id=int(payload["next_id"]), tracks=tracks)
        except (KeyError, TypeError, IndexError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"not a track state: {e}") from e


def iou_matrix(boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """``(A, 4)`` and ``(B, 4)`` xyxy boxes → ``(A, B) float64`` intersection over union (0 for empty boxes)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    out: npt.NDArray[np.float64] = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return out


def assign_tracks(
    state: TrackState,
    boxes: npt.ArrayLike,
    frame_index: int,
    iou_threshold: float = 0.3,
    max_age: int = 30,
) -> tuple[list[int], TrackState]:
    """Track ids (in box order) for the ``(N, 4)`` xyxy pixel ``boxes`` of frame ``frame_index``, and the new state
    (rules in the module docstring)."""
    box_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    live = [t for t in state.tracks if frame_index - t.last_frame <= max_age]
    ids: list[int | None] = [None] * len(box_arr)
    if live and len(box_arr):
        iou = iou_matrix(np.array([t.box for t in live]), box_arr)
        pairs = sorted(
            ((float(iou[i, j]), live[i].track_id, j, i) for i in range(len(live)) for j in range(len(box_arr))),
            key=lambda p: (-p[0], p[1], p[2]),
        )
        used_tracks: set[int] = set()
        for score, _tid, j, i in pairs:
            if score < iou_threshold or score <= 0:
                break
            if i in used_tracks or ids[j] is not None:
                continue
            used_tracks.add(i)
            ids[j] = live[i].track_id
    fresh = itertools.count(state.next_id)
    final_ids = [next(fresh) if tid is None else tid for tid in ids]
    next_id = next(fresh)
    updated = {
        tid: Track(tid, (float(b[0]), float(b[1]), float(b[2]), float(b[3])), frame_index)
        for tid, b in zip(final_ids, box_arr, strict=True)
    }
    kept = [t for t in live if t.track_id not in updated]
    tracks = tuple(sorted(kept + list(updated.values()), key=lambda t: t.track_id))
    return final_ids, TrackState(next_id=next_id, tracks=tracks)
