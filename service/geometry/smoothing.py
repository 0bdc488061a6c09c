"""Temporal smoothing of per-track pose sequences (numpy only): One-Euro (causal) and Savitzky–Golay (centred).

:class:`TrackSmoother` takes frames in increasing key order — a payload and, per track id, an array (e.g.
``(18, 3)`` metres) — and releases them smoothed, in order: at once with One-Euro, ``half_window`` keys later with
Savitzky–Golay. A track's value at key ``k`` depends only on its samples at keys ``k ± half_window`` (or ``≤ k``),
so a clip and the same frames streamed give identical results (a stream's state lives in the frame buffer).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
T = TypeVar("T")

DEFAULT_FPS: Final = 30.0
"""Frame rate assumed for One-Euro's time steps when frames carry no timestamps."""
TRACK_IDLE_KEYS: Final = 900
"""A track unseen for this many frame keys is forgotten (its filter restarts if it comes back)."""


class SmoothingMethod(StrEnum):
    NONE = "none"
    ONE_EURO = "one_euro"
    SAVGOL = "savgol"


@dataclass(frozen=True)
class SmoothingSpec:
    """Which filter and its parameters (the defaults are the documented ones).

    One-Euro (Casiez et al., CHI 2012): ``min_cutoff_hz`` the cutoff at rest (lower = smoother, more lag when
    slow), ``beta`` how fast the cutoff rises with speed (in Hz per m/s: higher = less lag when fast),
    ``d_cutoff_hz`` the cutoff of the speed estimate. Savitzky–Golay: a degree-``polyorder`` polynomial
    least-squares fit over ``2·half_window + 1`` frames, evaluated at the centre (at clip ends and gaps the fit
    uses the frames there are, with the degree lowered if too few).
    """

    method: SmoothingMethod = SmoothingMethod.NONE
    min_cutoff_hz: float = 4.0
    beta: float = 5.0
    d_cutoff_hz: float = 1.0
    half_window: int = 4
    polyorder: int = 2

    def __post_init__(self) -> None:
        if not (self.min_cutoff_hz > 0 and self.d_cutoff_hz > 0 and self.beta >= 0):
            raise ValueError("one_euro needs min_cutoff_hz > 0, d_cutoff_hz > 0 and beta >= 0")
        if not 1 <= self.half_window <= 60:
            raise ValueError("savgol half_window must be in [1, 60] frames")
        if not 0 <= self.polyorder < 2 * self.half_window + 1 or self.polyorder > 6:
            raise ValueError("savgol polyorder must be in [0, 6] and below the window length 2*half_window+1")

    @property
    def lag_frames(self) -> int:
        """How many frames a stream's results are held back (Savitzky–Golay's half window; else 0)."""
        return self.half_window if self.method is SmoothingMethod.SAVGOL else 0


@lru_cache(maxsize=4096)
def fit_weights(offsets: tuple[int, ...], polyorder: int) -> F64:
    """Weights ``(n,)`` giving the value at offset 0 of the least-squares polynomial (degree ``min(polyorder,
    n - 1)``) through samples at integer ``offsets``; for ``-h … h`` these are Savitzky–Golay's coefficients."""
    off = np.asarray(offsets, np.float64)
    degree = min(polyorder, len(off) - 1)
    vander = off[:, None] ** np.arange(degree + 1)[None, :]
    w = np.linalg.pinv(vander)[0]
    w.setflags(write=False)
    return np.asarray(w, np.float64)


@dataclass
class _Euro:
    x: F64
    dx: F64
    time_s: float
    key: int


def _alpha(cutoff: F64 | float, dt: float) -> F64:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return np.asarray(1.0 / (1.0 + tau / dt), np.float64)


@dataclass
class _Pending(Generic[T]):
    key: int
    payload: T
    tracks: dict[int, F64]


@dataclass
class TrackSmoother(Generic[T]):
    """Per-track smoothing state of one stream or clip (see the module docstring)."""

    spec: SmoothingSpec
    _euro: dict[int, _Euro] = field(default_factory=dict)
    _pending: deque[_Pending[T]] = field(default_factory=deque)
    _samples: dict[int, dict[int, F64]] = field(default_factory=dict)
    _newest: int | None = None

    def push(
        self, key: int, time_s: float | None, tracks: Mapping[int, npt.ArrayLike], payload: T
    ) -> list[tuple[T, dict[int, F64]]]:
        """Add frame ``key`` (greater than every key before) with its tracks' values; returns the frames that
        are now final, oldest first, each as ``(payload, {track_id: smoothed value})``; ValueError otherwise."""
        if self._newest is not None and key <= self._newest:
            raise ValueError(f"frame {key} arrived after frame {self._newest}: smoothing needs increasing frames")
        self._newest = key
        values = {int(tid): np.asarray(v, np.float64) for tid, v in tracks.items()}
        method = self.spec.method
        if method is SmoothingMethod.NONE:
            return [(payload, values)]
        if method is SmoothingMethod.ONE_EURO:
            now = time_s if time_s is not None else key / DEFAULT_FPS
            out = {tid: self._one_euro(tid, key, now, v) for tid, v in values.items()}
            self._euro = {tid: e for tid, e in self._euro.items() if key - e.key <= TRACK_IDLE_KEYS}
            return [(payload, out)]
        for tid, v in values.items():
            self._samples.setdefault(tid, {})[key] = v
        self._pending.append(_Pending(key, payload, values))
        return self._release(key - self.spec.half_window)

    def flush(self) -> list[tuple[T, dict[int, F64]]]:
        """Release every held frame (the end of the stream or clip)."""
        return self._release(None)

    def to_state(self) -> dict[str, Any]:
        """Everything this smoother holds, as plain data (``(…)`` float64 arrays, the payloads as they are):
        ``euro``: track → ``(x, dx, time_s, key)``; ``pending``: held frames ``(key, payload, {track: value})``;
        ``samples``: track → {key: value}; ``newest``: the last key pushed (None before any)."""
        return {
            "euro": {tid: (e.x, e.dx, e.time_s, e.key) for tid, e in self._euro.items()},
            "pending": [(p.key, p.payload, p.tracks) for p in self._pending],
            "samples": self._samples,
            "newest": self._newest,
        }

    @classmethod
    def from_state(cls, spec: SmoothingSpec, state: Mapping[str, Any]) -> TrackSmoother[T]:
        """The smoother :meth:`to_state` described (``spec``: the one it ran with)."""
        smoother: TrackSmoother[T] = cls(spec)
        smoother._euro = {int(t): _Euro(x, dx, float(ts), int(k)) for t, (x, dx, ts, k) in state["euro"].items()}
        smoother._pending = deque(_Pending(int(k), payload, dict(tracks)) for k, payload, tracks in state["pending"])
        smoother._samples = {int(t): dict(v) for t, v in state["samples"].items()}
        newest = state["newest"]
        smoother._newest = None if newest is None else int(newest)
        return smoother

    def _one_euro(self, tid: int, key: int, now: float, x: F64) -> F64:
        s = self.spec
        prev = self._euro.get(tid)
        if prev is None:
            self._euro[tid] = _Euro(x, np.zeros_like(x), now, key)
            return x
        dt = now - prev.time_s
        if not dt > 0:
            dt = (key - prev.key) / DEFAULT_FPS
        dx = (x - prev.x) / dt
        dx_hat = prev.dx + _alpha(s.d_cutoff_hz, dt) * (dx - prev.dx)
        cutoff = s.min_cutoff_hz + s.beta * np.abs(dx_hat)
        x_hat = prev.x + _alpha(cutoff, dt) * (x - prev.x)
        self._euro[tid] = _Euro(x_hat, dx_hat, now, key)
        return x_hat

    def _release(self, upto: int | None) -> list[tuple[T, dict[int, F64]]]:
        h, order = self.spec.half_window, self.spec.polyorder
        out: list[tuple[T, dict[int, F64]]] = []
        while self._pending and (upto is None or self._pending[0].key <= upto):
            frame = self._pending.popleft()
            smoothed: dict[int, F64] = {}
            for tid in frame.tracks:
                samples = self._samples[tid]
                near = sorted(k for k in samples if abs(k - frame.key) <= h)
                w = fit_weights(tuple(k - frame.key for k in near), order)
                stacked = np.stack([samples[k] for k in near])
                smoothed[tid] = np.tensordot(w, stacked, axes=1)
            out.append((frame.payload, smoothed))
        oldest = self._pending[0].key if self._pending else (self._newest or 0) + 1
        kept = {tid: {k: v for k, v in s.items() if k >= oldest - h} for tid, s in self._samples.items()}
        self._samples = {tid: s for tid, s in kept.items() if s}
        return out
