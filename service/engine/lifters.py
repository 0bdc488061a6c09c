"""Serving adapters of the lifters: each answers two batched calls, :meth:`ServedLifter.frame_tokens` (what the
model caches per person and frame in the frame buffer) and :meth:`ServedLifter.lift` (per window, the centre
frame's pose). P-STMO lifts windows of normalised 2D keypoints and caches nothing but them; CA-PF single-frame is
the ``N = 1`` case of CA-PF temporal's scheme (tokens from the detector's features, then the head). Models are
built from settings in :mod:`service.engine.loader`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from model.capf import CAPFLifter
from model.capf_full import crop_to_ref, flip_crop_keypoints
from model.capf_temporal import CAPFTemporal
from model.joints import LIFTER_JOINTS
from model.pstmo import PSTMO
from model.skeleton import H36M_FLIP_PERM, flip_pose
from service.config import ModelSpec
from service.engine.pstmo_onnx import OnnxPSTMO
from service.engine.types import FloatArray, ModelInfo
from service.engine.windows import WindowSpec
from service.errors import InvalidInput, Unavailable

_T = TypeVar("_T")
_K = TypeVar("_K")
_R = TypeVar("_R")


@dataclass(frozen=True)
class TokenInput:
    """One detected person, what CA-PF's trunk reads.

    ``keypoints_norm``: ``(17, 2) float32`` H36M, normalised screen coordinates;
    ``crop_keypoints``: ``(17, 2) float32`` H36M, pixels of the 192×256 crop;
    ``features``: the detector's 4 maps of this crop, each ``(C_l, H_l, W_l) float32``;
    ``flip_features``: the same for the mirrored crop, or None without flip test.
    """

    keypoints_norm: FloatArray
    crop_keypoints: FloatArray
    features: Sequence[torch.Tensor]
    flip_features: Sequence[torch.Tensor] | None


@dataclass(frozen=True)
class LiftWindow:
    """One window to lift. ``keypoints_norm``: ``(N, 17, 2) float32``; ``tokens``: ``(N, V, 17, D) float32``
    (``V`` = 0 for models without tokens); ``flip_test``: average with the mirrored input (P-STMO)."""

    keypoints_norm: FloatArray
    tokens: FloatArray
    flip_test: bool


CPU_LIFT_BATCH: dict[str, int] = {"pstmo-243": 8, "pstmo-243-small": 8}
"""Windows per lift forward on CPU where a smaller batch is faster than ``engine.max_batch_size`` (``python -m
bench``, bench/README.md: P-STMO-S 243 peaks at batch 8, its attention over 243 tokens falls out of cache at 32)."""


class ServedLifter(ABC):
    """A lifting model as the engine serves it."""

    needs_image: bool = False

    def __init__(self, name: str, spec: ModelSpec, weights: str, device: torch.device) -> None:
        self.name = name
        self.spec = spec
        self.weights = weights
        self.device = device
        self.window = WindowSpec(spec.frames, spec.stride)

    def lift_batch_size(self, engine_max: int) -> int:
        """Windows per lift forward: the spec's ``lift_batch``, else the measured CPU default, else ``engine_max``."""
        if self.spec.lift_batch is not None:
            return self.spec.lift_batch
        if self.device.type == "cpu":
            return min(engine_max, CPU_LIFT_BATCH.get(self.spec.arch, engine_max))
        return engine_max

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            kind=self.spec.kind.value,
            version=self.spec.arch,
            weights=self.weights,
            frames=self.spec.frames,
            stride=self.spec.stride,
            joint_set="h36m",
            device=str(self.device),
            needs_image=self.needs_image,
            flip_test=self.spec.flip_test,
        )

    def frame_tokens(self, items: Sequence[TokenInput]) -> list[FloatArray]:
        """Batched: per person ``(V, 17, D) float32`` tokens to cache. Models without tokens never get here."""
        raise InvalidInput(f"model {self.name!r} keeps no per-frame tokens")

    @abstractmethod
    def lift(self, windows: Sequence[LiftWindow]) -> list[FloatArray]:
        """Batched: per window the centre frame's ``(17, 3) float32`` pose, metres, root-relative camera frame."""

    def warmup(self) -> None:
        """One tiny forward so the first request does not pay for lazy initialisation."""
        n = self.spec.frames
        kp = np.zeros((n, 17, 2), np.float32)
        self.lift([LiftWindow(kp, self._dummy_tokens(n), self.spec.flip_test)])

    def _dummy_tokens(self, n: int) -> FloatArray:
        return np.zeros((n, 0, 17, 0), np.float32)


def in_groups(items: Sequence[_T], key: Callable[[_T], _K], run: Callable[[_K, list[_T]], Iterable[_R]]) -> list[_R]:
    """``run(k, group)`` once per distinct ``key`` over the items with that key (one batched call per kind of
    item); its results, one per item of the group in order, put back in the items' order."""
    results: dict[int, _R] = {}
    for k in dict.fromkeys(map(key, items)):
        rows = [i for i, item in enumerate(items) if key(item) == k]
        results.update(zip(rows, run(k, [items[i] for i in rows]), strict=True))
    return [results[i] for i in range(len(items))]


def _check_finite(windows: Sequence[LiftWindow]) -> None:
    for w in windows:
        if not (np.isfinite(w.keypoints_norm).all() and np.isfinite(w.tokens).all()):
            raise InvalidInput("non-finite 2D keypoints or tokens in a window")


_METRES_PER_UNIT: dict[str, float] = {"m": 1.0, "mm": 1e-3}


class PSTMOLifter(ServedLifter):
    """P-STMO over windows of normalised 2D keypoints.

    The network runs in the joint order its checkpoint was trained in (``spec.joint_order``, see
    :data:`model.joints.LIFTER_JOINTS`): each window's ``(N, 17, 2)`` Human3.6M-17 input is reordered to it, the
    flip test swaps that order's left/right joints and zeroes that order's pelvis, and the ``(17, 3)`` output is
    reordered back to Human3.6M-17 and converted from ``spec.output_unit`` to metres before anything else sees it.
    ``onnx``: the same network on ONNX Runtime (:mod:`service.engine.pstmo_onnx`) instead of torch, once
    :mod:`service.engine.loader` sets it (``models.<name>.backend``).
    """

    onnx: OnnxPSTMO | None = None
    backend = "torch"
    """Where the network runs, for ``/readyz`` (``onnx cached at <file>`` once the loader sets ``onnx``)."""

    def __init__(self, name: str, spec: ModelSpec, weights: str, device: torch.device, model: PSTMO) -> None:
        super().__init__(name, spec, weights, device)
        if model.cfg.frames != spec.frames:
            raise Unavailable(f"model {name!r}: checkpoint has {model.cfg.frames} frames, settings say {spec.frames}")
        self.model = model.to(device).eval()
        self.joints = LIFTER_JOINTS[spec.joint_order]
        self._scale = _METRES_PER_UNIT[spec.output_unit]

    @torch.inference_mode()
    def lift(self, windows: Sequence[LiftWindow]) -> list[FloatArray]:
        _check_finite(windows)
        return in_groups(windows, lambda w: w.flip_test, self._lift_flipped)

    def _lift_flipped(self, flip: bool, windows: list[LiftWindow]) -> FloatArray:
        """Windows of one flip setting → ``(B, 17, 3)`` H36M-17 poses, metres."""
        j = self.joints
        kp = j.to_network(np.stack([w.keypoints_norm for w in windows]))  # (B, T, 17, 2), the network's order
        if self.onnx is not None:
            native = self.onnx.lift(kp, flip, j.flip_perm, j.root)  # (B, 17, 3), the network's order and units
        else:
            pose = self.model.lift(torch.from_numpy(kp).to(self.device), flip, j.flip_perm, j.root)
            native = pose.float().cpu().numpy()
        return j.to_h36m_order(native) * np.float32(self._scale)


class CAPFLifterServed(ServedLifter):
    """CA-PF: single-frame (``temporal is None``, N = 1) or temporal over cached per-frame tokens."""

    needs_image = True

    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        weights: str,
        device: torch.device,
        trunk: CAPFLifter,
        temporal: CAPFTemporal | None,
    ) -> None:
        super().__init__(name, spec, weights, device)
        self.trunk = trunk.to(device).eval()
        self.temporal = temporal.to(device).eval() if temporal is not None else None
        if temporal is None and spec.frames != 1:
            raise Unavailable(f"model {name!r}: single-frame CA-PF needs frames = 1, settings say {spec.frames}")
        if temporal is not None and temporal.frames != spec.frames:
            raise Unavailable(f"model {name!r}: temporal head has {temporal.frames} frames, settings say {spec.frames}")

    @torch.inference_mode()
    def frame_tokens(self, items: Sequence[TokenInput]) -> list[FloatArray]:
        kp = torch.from_numpy(np.stack([it.keypoints_norm for it in items])).to(self.device)
        crop = torch.from_numpy(np.stack([it.crop_keypoints for it in items])).to(self.device)
        plain = self.trunk.joint_tokens(kp, crop_to_ref(crop), self._levels([it.features for it in items]))
        mirrored = {i: it.flip_features for i, it in enumerate(items) if it.flip_features is not None}
        flipped: dict[int, torch.Tensor] = {}
        if mirrored:
            rows = torch.as_tensor(list(mirrored), device=self.device)
            kp_f = flip_pose(kp.index_select(0, rows), H36M_FLIP_PERM)
            ref_f = crop_to_ref(flip_crop_keypoints(crop.index_select(0, rows)))
            tokens = self.trunk.joint_tokens(kp_f, ref_f, self._levels(list(mirrored.values())))
            flipped = dict(zip(mirrored, tokens, strict=True))
        return [
            (torch.stack([plain[i], flipped[i]]) if i in flipped else plain[i : i + 1]).float().cpu().numpy()
            for i in range(len(items))
        ]

    def _levels(self, maps: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
        """Per person the 4 maps ``(C_l, H_l, W_l)`` → per level ``(B, C_l, H_l, W_l)`` float32 on the device."""
        return [torch.stack([person[level] for person in maps]).to(self.device).float() for level in range(4)]

    def _head(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, 17, D)`` → ``(B, 17, 3)`` for one view."""
        if self.temporal is None:
            return self.trunk.head_from_tokens(tokens[:, 0])[:, 0]
        return self.temporal.temporal_head(tokens)

    @torch.inference_mode()
    def lift(self, windows: Sequence[LiftWindow]) -> list[FloatArray]:
        _check_finite(windows)
        return in_groups(windows, lambda w: w.tokens.shape[1], self._lift_views)

    def _lift_views(self, views: int, windows: list[LiftWindow]) -> FloatArray:
        """Windows of ``views`` token views (2: with the mirrored crop's) → ``(B, 17, 3)`` root-relative poses."""
        tokens = torch.from_numpy(np.stack([w.tokens for w in windows])).to(self.device)  # (B, N, V, 17, D)
        pose = self._head(tokens[:, :, 0])
        if views == 2:
            pose = (pose + flip_pose(self._head(tokens[:, :, 1]), H36M_FLIP_PERM)) / 2
        poses: FloatArray = (pose - pose[:, :1]).float().cpu().numpy()
        return poses

    def _dummy_tokens(self, n: int) -> FloatArray:
        views = 2 if self.spec.flip_test else 1
        return np.zeros((n, views, 17, self.trunk.cfg.embed_dim), np.float32)
