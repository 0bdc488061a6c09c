from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.engine.types import WindowMode
from service.engine.windows import WindowSpec, emission_range, needed_range, visible_limit, window_sources


def edge_padded_reference(length: int, spec: WindowSpec, target: int) -> list[int]:
    """What the published evaluation feeds: the sequence edge-padded, then a dilated slice."""
    pad_left, pad_right = spec.lag_left, spec.lag_right
    padded = np.pad(np.arange(length), (pad_left, pad_right), mode="edge")
    start = target  # index of target in padded is target + pad_left; window starts pad_left before it
    return [int(v) for v in padded[start : start + pad_left + pad_right + 1 : spec.stride]]


def test_lags_and_offsets() -> None:
    spec = WindowSpec(frames=9, stride=2)
    assert spec.lag_left == spec.lag_right == 8
    assert spec.offsets() == [-8, -6, -4, -2, 0, 2, 4, 6, 8]
    assert WindowSpec(1, 1).offsets() == [0]
    with pytest.raises(ValueError, match="frames >= 1"):
        WindowSpec(0, 1)


@given(length=st.integers(1, 40), frames=st.sampled_from([1, 3, 5, 9, 27]), stride=st.integers(1, 3))
def test_whole_clip_windows_equal_edge_padding(length: int, frames: int, stride: int) -> None:
    spec = WindowSpec(frames, stride)
    present = list(range(length))
    for t in range(length):
        got = window_sources(t, present, spec, limit=length - 1)
        assert got == edge_padded_reference(length, spec, t)


def stream_windows(length: int, spec: WindowSpec, mode: WindowMode, order: list[int]) -> dict[int, list[int]]:
    """Push frames in ``order``, emit as the rules say, flush at the end; targets → window sources."""
    received: set[int] = set()
    cursor, high = 0, -1
    out: dict[int, list[int]] = {}
    for idx in order:
        received.add(idx)
        while high + 1 in received:
            high += 1
        for t in emission_range(cursor, high, spec, mode):
            assert t not in out
            out[t] = window_sources(t, list(range(high + 1)), spec, visible_limit(t, high, mode))
            assert set(out[t]) <= set(needed_range(range(t, t + 1), spec, high, mode))
        cursor = max(cursor, emission_range(cursor, high, spec, mode).stop)
    for t in range(cursor, length):  # flush: the tail, padded at the last frame
        out[t] = window_sources(t, list(range(length)), spec, visible_limit(t, length - 1, mode))
    return out


@given(
    length=st.integers(1, 30),
    frames=st.sampled_from([1, 3, 9]),
    stride=st.integers(1, 3),
    seed=st.integers(0, 1000),
)
def test_centred_stream_equals_whole_clip_in_any_arrival_order(
    length: int, frames: int, stride: int, seed: int
) -> None:
    spec = WindowSpec(frames, stride)
    order = list(np.random.default_rng(seed).permutation(length))
    got = stream_windows(length, spec, WindowMode.CENTRED, [int(i) for i in order])
    assert sorted(got) == list(range(length))
    for t in range(length):
        assert got[t] == edge_padded_reference(length, spec, t)


def test_centred_emits_with_lag_and_causal_at_once() -> None:
    spec = WindowSpec(5, 2)  # lag_right = 4
    assert list(emission_range(0, 3, spec, WindowMode.CENTRED)) == []
    assert list(emission_range(0, 4, spec, WindowMode.CENTRED)) == [0]
    assert list(emission_range(1, 10, spec, WindowMode.CENTRED)) == [1, 2, 3, 4, 5, 6]
    assert list(emission_range(0, 0, spec, WindowMode.CAUSAL)) == [0]
    assert list(emission_range(3, 5, spec, WindowMode.CAUSAL)) == [3, 4, 5]


def test_causal_window_sees_only_the_past_padded_with_the_newest() -> None:
    spec = WindowSpec(5, 1)
    present = list(range(10))
    assert window_sources(6, present, spec, visible_limit(6, 9, WindowMode.CAUSAL)) == [4, 5, 6, 6, 6]
    assert window_sources(0, present, spec, visible_limit(0, 0, WindowMode.CAUSAL)) == [0, 0, 0, 0, 0]
    got = stream_windows(8, spec, WindowMode.CAUSAL, list(range(8)))
    for t, sources in got.items():
        assert max(sources) == t
        assert sources == [max(0, t - 2), max(0, t - 1), t, t, t]


def test_track_with_holes_holds_the_nearest_frame_toward_the_target() -> None:
    spec = WindowSpec(5, 1)
    present = [3, 4, 7, 8]  # a track that appears at 3, vanishes at 5-6, and is last seen at 8
    assert window_sources(4, present, spec, limit=20) == [3, 3, 4, 4, 4]
    assert window_sources(7, present, spec, limit=20) == [7, 7, 7, 8, 8]
    assert window_sources(7, present, spec, limit=7) == [7, 7, 7, 7, 7]
    with pytest.raises(ValueError, match="not among"):
        window_sources(5, present, spec, limit=20)
