"""One-Euro and Savitzky–Golay per track: jitter removed, accuracy kept, stream == clip, edges and gaps."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from service.geometry.smoothing import SmoothingMethod, SmoothingSpec, TrackSmoother, fit_weights
from service.geometry.synthetic import moving_sequence

F = npt.NDArray[np.float64]


def _clip(spec: SmoothingSpec, seq: F) -> F:
    smoother: TrackSmoother[int] = TrackSmoother(spec)
    out = [v[0] for k in range(len(seq)) for _, v in smoother.push(k, None, {0: seq[k]}, k)]
    out += [v[0] for _, v in smoother.flush()]
    return np.asarray(np.stack(out))


def _camera(x: F) -> F:
    return np.asarray(x[:, :17] + x[:, 17:18], np.float64)


def _accel_error(x: F, clean: F) -> float:
    return float(np.mean(np.linalg.norm(np.diff(_camera(x), 2, axis=0) - np.diff(_camera(clean), 2, axis=0), axis=-1)))


def _mpjpe(x: F, clean: F) -> float:
    return float(np.mean(np.linalg.norm(_camera(x) - _camera(clean), axis=-1)))


@pytest.mark.parametrize(("method", "min_drop"), [(SmoothingMethod.ONE_EURO, 0.5), (SmoothingMethod.SAVGOL, 0.7)])
@pytest.mark.parametrize("jitter_m", [0.01, 0.02])
def test_smoothing_cuts_acceleration_error_without_raising_mpjpe(
    method: SmoothingMethod, min_drop: float, jitter_m: float
) -> None:
    for seed in range(4):
        clean = moving_sequence(np.random.default_rng(seed))
        noisy = clean + np.random.default_rng(100 + seed).normal(0.0, jitter_m, clean.shape)
        smooth = _clip(SmoothingSpec(method), noisy)
        assert smooth.shape == noisy.shape
        assert _accel_error(smooth, clean) <= (1 - min_drop) * _accel_error(noisy, clean)
        assert _mpjpe(smooth, clean) <= 1.05 * _mpjpe(noisy, clean)


@pytest.mark.parametrize("method", list(SmoothingMethod))
def test_stream_equals_clip_delayed_by_half_window(method: SmoothingMethod) -> None:
    """Two tracks, one with a gap and one leaving early; frames pushed one by one are released with the
    documented lag and equal (bit for bit) the whole clip's."""
    rng = np.random.default_rng(7)
    seq_a, seq_b = rng.normal(size=(40, 18, 3)), rng.normal(size=(40, 18, 3))
    spec = SmoothingSpec(method)
    frames = [{0: seq_a[k], **({1: seq_b[k]} if k < 25 and k not in (10, 11) else {})} for k in range(40)]
    whole: TrackSmoother[int] = TrackSmoother(spec)
    for k, tracks in enumerate(frames):
        whole.push(k, k / 25.0, tracks, k)  # results ignored until the flush (a clip)
    streamed: TrackSmoother[int] = TrackSmoother(spec)
    released: list[tuple[int, dict[int, F]]] = []
    for k, tracks in enumerate(frames):
        got = streamed.push(k, k / 25.0, tracks, k)
        assert [p for p, _ in got] == ([k - spec.lag_frames] if k >= spec.lag_frames else [])
        released += got
    released += streamed.flush()
    clip_smoother: TrackSmoother[int] = TrackSmoother(spec)
    clip = [r for k, tracks in enumerate(frames) for r in clip_smoother.push(k, k / 25.0, tracks, k)]
    clip += clip_smoother.flush()
    assert [p for p, _ in released] == list(range(40)) == [p for p, _ in clip]
    for (_, a), (_, b), tracks in zip(released, clip, frames, strict=True):
        assert a.keys() == b.keys() == tracks.keys()
        for tid in a:
            assert np.array_equal(a[tid], b[tid])


def test_savgol_interior_matches_the_classic_coefficients_and_keeps_polynomials() -> None:
    np.testing.assert_allclose(fit_weights((-2, -1, 0, 1, 2), 2), np.array([-3, 12, 17, 12, -3]) / 35, atol=1e-12)
    np.testing.assert_allclose(
        fit_weights((-3, -2, -1, 0, 1, 2, 3), 2), np.array([-2, 3, 6, 7, 6, 3, -2]) / 21, atol=1e-12
    )
    t = np.arange(30, dtype=np.float64)
    quad = (0.3 * t**2 - 2 * t + 1)[:, None, None] * np.ones((1, 18, 3))
    out = _clip(SmoothingSpec(SmoothingMethod.SAVGOL), quad)  # edges included: a quadratic is kept exactly
    np.testing.assert_allclose(out, quad, atol=1e-8)


def test_one_euro_is_causal_and_none_passes_through() -> None:
    seq = np.random.default_rng(2).normal(size=(20, 18, 3))
    full = _clip(SmoothingSpec(SmoothingMethod.ONE_EURO), seq)
    head = _clip(SmoothingSpec(SmoothingMethod.ONE_EURO), seq[:12])
    np.testing.assert_array_equal(full[:12], head)
    np.testing.assert_array_equal(_clip(SmoothingSpec(), seq), seq)


def test_frames_must_increase_and_parameters_are_checked() -> None:
    smoother: TrackSmoother[int] = TrackSmoother(SmoothingSpec(SmoothingMethod.SAVGOL))
    smoother.push(3, None, {0: np.zeros(3)}, 3)
    with pytest.raises(ValueError, match="increasing"):
        smoother.push(3, None, {0: np.zeros(3)}, 3)
    with pytest.raises(ValueError, match="half_window"):
        SmoothingSpec(SmoothingMethod.SAVGOL, half_window=0)
    with pytest.raises(ValueError, match="polyorder"):
        SmoothingSpec(SmoothingMethod.SAVGOL, half_window=2, polyorder=5)
    with pytest.raises(ValueError, match="one_euro"):
        SmoothingSpec(SmoothingMethod.ONE_EURO, min_cutoff_hz=0.0)
    with pytest.raises(ValueError, match="one_euro"):
        SmoothingSpec(SmoothingMethod.ONE_EURO, beta=-1.0)
