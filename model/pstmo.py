"""P-STMO lifter (Shan et al., "P-STMO: Pre-Trained Spatial Temporal Many-to-One Model", ECCV 2022).

The inference (stage II) model: SEM (per-frame MLP) → TEM (vanilla transformer over all frames) →
two heads: the full-sequence VTE head on TEM's output, and MOFA (strided transformer that reduces
the window to one token) followed by the centre-frame head. It reproduces the published
``model.stmo.Model`` exactly (see ``tests/data/conformance/pstmo_small_*.pt``) and loads the released
checkpoints through :mod:`model.checkpoints.pstmo`.

Units and frames: inputs are 2D keypoints in normalised screen coordinates
(:func:`model.skeleton.normalize_screen_coordinates`: ``X / w * 2 - [1, h / w]``), Human3.6M-17
order. Outputs are 3D joints in the camera frame, metres, Human3.6M-17 order, relative to the pelvis
(the model is trained on root-relative targets; the published evaluation sets joint 0 to exactly 0,
and :meth:`PSTMO.lift` does the same). The one exception is the published MPI-INF-3DHP checkpoint: P-STMO's
3DHP loader (``common/load_data_3dhp_mae.py``) trains it in MPI-INF-3DHP-17 order (pelvis = joint 14, flip
pairs left ``[5, 6, 7, 11, 12, 13]`` / right ``[2, 3, 4, 8, 9, 10]``) on millimetre targets (``univ_annot3``
as it is); :meth:`PSTMO.lift` takes that order's flip pairs and root, and the serving adapter maps joint
orders and units (``service.engine.lifters``).

Temporal downsampling (TDS, paper §3.2) is a windowing concern, not part of the network: the model
always sees a window of ``frames`` samples; the serving window takes them at stride ``s`` around the
target frame, i.e. frames ``t + s * k`` for ``k = -(frames-1)/2 ... (frames-1)/2`` (the paper uses
``s = 2`` for N = 243, ``s = 3`` for N = 81 and ``s = 9`` for N = 27 in its TDS ablation). The
weights do not depend on ``s``; the stride used in training is a property of the checkpoint that the
serving configuration must match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from model.fastpath import FastPathModule
from model.pstmo_blocks import FrameAggregator, PoseHead, SpatialEncoderMLP, TemporalEncoder, reduced_length
from model.skeleton import H36M_FLIP_PERM, NUM_JOINTS


@dataclass(frozen=True)
class PSTMOConfig:
    """Hyperparameters of the published ``model.stmo.Model``.

    Attributes:
        frames: window length N (input tokens of TEM).
        stride_num: MOFA's per-layer temporal strides (its depth is ``len(stride_num)``); they must
            reduce ``frames`` to exactly one token (``3 ** len == frames`` in every published model).
        layers: TEM depth.
        channel: feature width d of every transformer (SEM's hidden width is ``2 * channel``).
        d_hid: hidden width of the transformers' MLPs.
        n_joints: input joints; out_joints: output joints.
        heads: attention heads (hard-coded 8 in the published code).
    """

    frames: int
    stride_num: tuple[int, ...]
    layers: int
    channel: int
    d_hid: int
    n_joints: int = NUM_JOINTS
    out_joints: int = NUM_JOINTS
    heads: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "stride_num", tuple(int(s) for s in self.stride_num))  # lists welcome
        if self.frames < 1 or self.layers < 0 or self.channel < 1 or self.d_hid < 1:
            raise ValueError(f"invalid P-STMO sizes: {self}")
        if not self.stride_num or any(s < 1 for s in self.stride_num):
            raise ValueError(f"stride_num must be a non-empty list of positive strides, got {self.stride_num}")
        if self.channel % self.heads:
            raise ValueError(f"channel ({self.channel}) must be divisible by heads ({self.heads})")
        left = reduced_length(self.frames, self.stride_num)
        if left != 1:
            raise ValueError(
                f"stride_num {list(self.stride_num)} reduces {self.frames} frames to {left} tokens, not 1; "
                "the centre-frame head needs exactly one"
            )


PSTMO_PRESETS: dict[str, PSTMOConfig] = {
    # Published sizes (paper supplementary + official key sets): d = 256, MLP hidden 512,
    # MOFA stride 3 per layer with depth 5 / 4 / 3 for N = 243 / 81 / 27, TEM depth 4 (P-STMO) or 3 (-S).
    "pstmo-243": PSTMOConfig(frames=243, stride_num=(3, 3, 3, 3, 3), layers=4, channel=256, d_hid=512),
    "pstmo-243-small": PSTMOConfig(frames=243, stride_num=(3, 3, 3, 3, 3), layers=3, channel=256, d_hid=512),
    "pstmo-81": PSTMOConfig(frames=81, stride_num=(3, 3, 3, 3), layers=3, channel=256, d_hid=512),
    "pstmo-27": PSTMOConfig(frames=27, stride_num=(3, 3, 3), layers=3, channel=256, d_hid=512),
    # Tiny test presets (random weights only).
    "pstmo-tiny-9": PSTMOConfig(frames=9, stride_num=(3, 3), layers=1, channel=32, d_hid=64),
    "pstmo-tiny-27": PSTMOConfig(frames=27, stride_num=(3, 3, 3), layers=1, channel=32, d_hid=64),
}


def flip_official_layout(t: torch.Tensor, perm: list[int] = H36M_FLIP_PERM) -> torch.Tensor:
    """Mirror a tensor in the official layout: negate channel 0 (x) and swap left/right joints.

    Args:
        t: ``(B, C, T, J, 1)`` with C = 2 (2D input) or 3 (3D output), joints on axis 3.
    Returns:
        A new tensor of the same shape (the input is not modified).
    """
    out = t.index_select(3, torch.as_tensor(perm, device=t.device)).clone()
    out[:, 0].neg_()
    return out


class PSTMO(FastPathModule):
    """The P-STMO inference model for any :class:`PSTMOConfig`.

    Call ``.eval()`` before inference: BatchNorm uses its running statistics only in eval mode
    (the published model has dropout, which this inference implementation omits). The fast path
    (default; :func:`model.fastpath.set_fast_path` switches it) keeps every activation as ``(B, T, C)``
    tokens — SEM, heads and MOFA's convolutions as matmuls — and needs eval mode.
    """

    def __init__(self, cfg: PSTMOConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.sem = SpatialEncoderMLP(2 * cfg.n_joints, cfg.channel, 2 * cfg.channel, blocks=1)
        self.tem = TemporalEncoder(cfg.layers, cfg.channel, cfg.d_hid, cfg.heads, cfg.frames)
        self.mofa = FrameAggregator(cfg.stride_num, cfg.channel, cfg.d_hid, cfg.heads, cfg.frames)
        self.head_centre = PoseHead(cfg.channel, cfg.out_joints)
        self.head_sequence = PoseHead(cfg.channel, cfg.out_joints)

    def _to_official(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, 3 * J, T)`` joint-major head output → ``(B, 3, T, J, 1)``."""
        b, _, t = y.shape
        return y.view(b, self.cfg.out_joints, 3, t).permute(0, 2, 3, 1).unsqueeze(-1)

    def _tokens_to_official(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3 * J)`` joint-major head output → ``(B, 3, T, J, 1)``."""
        b, t, _ = y.shape
        return y.view(b, t, self.cfg.out_joints, 3).permute(0, 3, 1, 2).unsqueeze(-1)

    def _forward_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast path of :meth:`forward` from ``(B, T, J*2)`` tokens (eval mode only: BatchNorm statistics)."""
        temporal = self.tem(self.sem.forward_tokens(tokens))  # (B, T, C)
        out_vte = self._tokens_to_official(self.head_sequence.forward_tokens(temporal))
        out = self._tokens_to_official(self.head_centre.forward_tokens(self.mofa(temporal)))
        return out, out_vte

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network in the published layout.

        Args:
            x: ``(B, 2, frames, n_joints, 1)`` float32, normalised screen coordinates (channel 0 = x).
        Returns:
            ``out``: ``(B, 3, 1, out_joints, 1)`` centre-frame 3D pose (MOFA head), metres, camera frame;
            ``out_vte``: ``(B, 3, frames, out_joints, 1)`` every frame's 3D pose (VTE head).
            Neither has the root zeroed (see :meth:`lift`).
        """
        if x.dim() != 5 or tuple(x.shape[1:]) != (2, self.cfg.frames, self.cfg.n_joints, 1):
            raise ValueError(f"expected (B, 2, {self.cfg.frames}, {self.cfg.n_joints}, 1), got {tuple(x.shape)}")
        b, c, t, j, _ = x.shape
        tokens = x[..., 0].permute(0, 2, 3, 1).reshape(b, t, j * c)  # (B, T, J*2) joint-major
        if self.fast and not self.training:
            return self._forward_tokens(tokens)
        features = self.sem(tokens.transpose(1, 2))  # (B, C, T)
        temporal = self.tem(features.transpose(1, 2))  # (B, T, C)
        out_vte = self._to_official(self.head_sequence(temporal.transpose(1, 2)))
        reduced = self.mofa(temporal)  # (B, 1, C)
        out = self._to_official(self.head_centre(reduced.transpose(1, 2)))
        return out, out_vte

    def forward_flip_tta(
        self, x: torch.Tensor, x_flip: torch.Tensor, perm: Sequence[int] = H36M_FLIP_PERM
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The published test-time flip average: ``(model(x) + unflip(model(x_flip))) / 2``.

        Args:
            x: ``(B, 2, frames, J, 1)`` input; x_flip: the same windows mirrored
                (:func:`flip_official_layout`), as the published test loader supplies them.
            perm: the left/right swap of the checkpoint's joint order (H36M-17's by default).
        Returns:
            ``(out, out_vte)`` averaged, shapes as :meth:`forward`.
        """
        out, out_vte = self(x)
        out_f, out_vte_f = self(x_flip)
        p = list(perm)
        return (out + flip_official_layout(out_f, p)) / 2, (out_vte + flip_official_layout(out_vte_f, p)) / 2

    def lift(
        self, kp: torch.Tensor, flip_test: bool = False, flip_perm: Sequence[int] = H36M_FLIP_PERM, root: int = 0
    ) -> torch.Tensor:
        """Serving entry point: the centre frame's 3D pose of each window, in the checkpoint's own joint order.

        Args:
            kp: ``(B, frames, n_joints, 2)`` float32, normalised screen coordinates, in the joint order the
                checkpoint was trained in (H36M-17 for the Human3.6M checkpoints; MPI-INF-3DHP-17 for the 3DHP
                one, see :data:`model.joints.LIFTER_JOINTS`); frame ``frames // 2`` is the target.
            flip_test: average with the prediction on the mirrored input, as the published test does.
            flip_perm: the left/right swap of that joint order (the published test's joints_left/right).
            root: that order's pelvis: the joint set to exactly 0 (0 in H36M-17, 14 in MPI-INF-3DHP-17).
        Returns:
            ``(B, out_joints, 3)`` float32 in the units of the training targets (metres for the Human3.6M
            checkpoints, millimetres for the 3DHP one), camera frame, root-relative with joint ``root`` set to
            0 (as the published evaluation does). ``kp`` is not modified.
        """
        if kp.dim() != 4 or kp.shape[-1] != 2:
            raise ValueError(f"expected (B, {self.cfg.frames}, {self.cfg.n_joints}, 2), got {tuple(kp.shape)}")
        x = kp.permute(0, 3, 1, 2).unsqueeze(-1)  # (B, 2, T, J, 1)
        if flip_test:
            out, _ = self.forward_flip_tta(x, flip_official_layout(x, list(flip_perm)), flip_perm)
        else:
            out, _ = self(x)
        pose = out[:, :, 0, :, 0].transpose(1, 2).clone()  # (B, J, 3)
        pose[:, root] = 0.0
        return pose
