"""Temporal window maths, pure (no I/O, no torch): which frames feed which target, and when a target is ready.

A window of ``N`` frames at stride ``s`` centred on target frame ``t`` covers
``t + s·(k − (N−1)//2)`` for ``k = 0 … N−1``. Frame indices outside the known range are replaced by
the nearest known frame toward the target, which at the ends of a sequence is exactly the published
evaluation's edge padding (repeat the first/last frame); inside a track with holes it holds the nearest
frame on the target's side.

Emission (per stream, frame indices ``0, 1, 2, …``):

- ``centred``: target ``t`` is emitted once every frame up to ``t + lag_right`` has arrived, where
  ``lag_right = s·(N − 1 − (N−1)//2)`` (``s·(N−1)/2`` for odd ``N``); the window sees real future frames.
- ``causal``: target ``t`` is emitted as soon as frames ``0 … t`` are in; its window only sees frames
  ``≤ t`` (the future is padded with frame ``t``, the newest frame at that moment).
- At stream end every remaining target is emitted, windows padded at the last received frame.

Both the in-memory and the Redis frame buffer apply these rules (the Redis Lua script mirrors
:func:`emission_range`), so a clip posted whole and the same frames pushed one by one give the same windows.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from service.engine.types import WindowMode


@dataclass(frozen=True)
class WindowSpec:
    """Window length ``frames`` (N) and stride (s) of a temporal model; ``frames=1`` is single-frame."""

    frames: int = 1
    stride: int = 1

    def __post_init__(self) -> None:
        if self.frames < 1 or self.stride < 1:
            raise ValueError(f"window needs frames >= 1 and stride >= 1, got {self.frames}, {self.stride}")

    @property
    def lag_left(self) -> int:
        """Frames the window reaches into the past: ``s·((N−1)//2)``."""
        return self.stride * ((self.frames - 1) // 2)

    @property
    def lag_right(self) -> int:
        """Frames the window reaches into the future: ``s·(N−1−(N−1)//2)``."""
        return self.stride * (self.frames - 1 - (self.frames - 1) // 2)

    def offsets(self) -> list[int]:
        """The ``N`` signed offsets from the target, in window order."""
        half = (self.frames - 1) // 2
        return [self.stride * (k - half) for k in range(self.frames)]


def emission_range(next_emit: int, contiguous_high: int, spec: WindowSpec, mode: WindowMode) -> range:
    """Targets that become ready, ``range(next_emit, stop)`` (possibly empty), from the stream's emission cursor
    ``next_emit`` once frames ``0 … contiguous_high`` have all arrived (−1: none), by ``mode``'s rule above."""
    last = contiguous_high - spec.lag_right if mode is WindowMode.CENTRED else contiguous_high
    return range(next_emit, max(next_emit, last + 1))


def visible_limit(target: int, newest: int, mode: WindowMode) -> int:
    """Highest frame index a target's window may use: ``newest`` (centred/flush) or the target itself (causal)."""
    return target if mode is WindowMode.CAUSAL else newest


def needed_range(targets: range, spec: WindowSpec, newest: int, mode: WindowMode) -> range:
    """Frame indices that may feed the windows of ``targets`` (clipped to ``0 … newest``)."""
    if len(targets) == 0:
        return range(0)
    hi = targets[-1] if mode is WindowMode.CAUSAL else min(newest, targets[-1] + spec.lag_right)
    return range(max(0, targets[0] - spec.lag_left), hi + 1)


def window_sources(target: int, present: Sequence[int], spec: WindowSpec, limit: int) -> list[int]:
    """The frame index that fills each of the ``N`` window slots of ``target`` (one of the track's sorted ``present``
    indices), none past ``limit`` (:func:`visible_limit`): slot ``t + o`` itself when present, else the nearest
    present index between it and the target (edge padding at a track's first/last frame)."""
    pos = bisect.bisect_left(present, target)
    if pos >= len(present) or present[pos] != target:
        raise ValueError(f"target frame {target} is not among the present frames")
    sources: list[int] = []
    for offset in spec.offsets():
        want = min(target + offset, limit) if offset > 0 else target + offset
        # at or after the target: the last present index <= want; before it: the first present index >= want
        i = bisect.bisect_right(present, want) - 1 if want >= target else bisect.bisect_left(present, want)
        sources.append(present[i])
    return sources
