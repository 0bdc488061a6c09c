"""Switch between the fast inference kernels and the reference (published-order) computation.

Blocks with two implementations of the same arithmetic derive from :class:`FastPathModule` and read
``self.fast`` in ``forward``. The fast branch (fused ``scaled_dot_product_attention``, ``var_mean``
LayerNorm, k=1 Conv1d as ``F.linear`` on ``(B, T, C)``) and the reference branch (the published op
sequence) agree to float32 rounding; the conformance vectors hold for both (``tests/unit/test_fastpath.py``).
The reference branch exists for the side-by-side benchmark (``python -m bench``) and for checking.
Neither branch changes the parameters or the ``state_dict``: official checkpoints load strictly either way.
"""

from __future__ import annotations

import copy
import itertools
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

M = TypeVar("M", bound=nn.Module)


class FastPathModule(nn.Module):
    """A module with a fast and a reference ``forward``; ``fast`` (default ``True``) picks one."""

    fast: bool = True


def set_fast_path(module: M, enabled: bool) -> M:
    """Set ``fast`` on ``module`` and every :class:`FastPathModule` inside it; returns ``module``."""
    for m in module.modules():
        if isinstance(m, FastPathModule):
            m.fast = enabled
    return module


def uses_fast_path(module: nn.Module) -> bool:
    """Whether every :class:`FastPathModule` inside ``module`` runs its fast branch (``True`` if none)."""
    return all(m.fast for m in module.modules() if isinstance(m, FastPathModule))


def _has_pointwise_convolution() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(  # type: ignore[no-untyped-call]
            torch.ops.mkldnn, "_convolution_pointwise"
        )
    except (AttributeError, RuntimeError):
        return False


POINTWISE_CONVOLUTION = _has_pointwise_convolution()
"""Whether this torch build has oneDNN's fused ``mkldnn::_convolution_pointwise`` (CPU builds with oneDNN)."""


class FusedConv2d(nn.Conv2d):
    """A convolution with its ReLU, and optionally a residual added before it, in one oneDNN call on the CPU.

    ``forward(x, residual)`` is ``relu(conv(x) + residual)`` (``relu`` / ``residual`` optional). On CPU float32
    channels-last inputs outside autograd it runs ``mkldnn::_convolution_pointwise`` (the post-ops run on the
    output tile while it is in cache: no separate pass over memory for the add and the ReLU); anywhere else (CUDA,
    NCHW, half, autograd) the eager ops. Both compute the same oneDNN convolution and the same float32 add.
    """

    relu: bool = True

    @classmethod
    def of(cls, conv: nn.Conv2d, relu: bool) -> FusedConv2d:
        """A :class:`FusedConv2d` sharing ``conv``'s parameters (same ``state_dict`` keys)."""
        fused = cls.__new__(cls)
        fused.__dict__.update(conv.__dict__)
        fused.relu = relu
        return fused

    def _fusable(self, x: torch.Tensor, residual: torch.Tensor | None) -> bool:
        if not (POINTWISE_CONVOLUTION and x.device.type == "cpu" and x.dtype == torch.float32):
            return False
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return False
        cl = torch.channels_last
        return x.is_contiguous(memory_format=cl) and (residual is None or residual.is_contiguous(memory_format=cl))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C_in, H, W)`` (+ ``(B, C_out, H', W')`` residual) → ``(B, C_out, H', W')`` float32."""
        if self._fusable(x, residual):
            conv = (self.weight, self.bias, list(self.padding), list(self.stride), list(self.dilation), self.groups)
            if residual is None:
                out = torch.ops.mkldnn._convolution_pointwise(x, *conv, "relu" if self.relu else "none", [], "")
            else:
                unary = "relu" if self.relu else None
                out = torch.ops.mkldnn._convolution_pointwise.binary(x, residual, *conv, "add", None, unary, [], "")
            return out  # type: ignore[no-any-return]
        out = self._conv_forward(x, self.weight, self.bias)
        if residual is not None:
            out = out + residual
        return F.relu(out) if self.relu else out


def fuse_activations(module: M) -> M:
    """Turn every ``Sequential(Conv2d, Identity, ReLU)`` (a folded conv+BN+ReLU) of ``module`` into one
    :class:`FusedConv2d`, in place, and let modules with a ``fuse_activations()`` method fuse their own
    (HRNet's residual blocks and stem). Returns ``module``."""
    for owner in list(module.modules()):
        if isinstance(owner, nn.Sequential) and len(owner) == 3:
            conv, norm, act = owner[0], owner[1], owner[2]
            plain = type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            if plain and isinstance(norm, nn.Identity) and isinstance(act, nn.ReLU):
                assert isinstance(conv, nn.Conv2d)
                owner[0], owner[2] = FusedConv2d.of(conv, relu=True), nn.Identity()
        hook = getattr(owner, "fuse_activations", None)
        if callable(hook):
            hook()
    return module


def _fold_pair(owner: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
    if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats):
        return False
    setattr(owner, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(owner, bn_name, nn.Identity())
    return True


def fold_batch_norms(module: M, fuse: bool = True) -> M:
    """An inference copy of ``module`` with every eval ``BatchNorm2d`` folded into the ``Conv2d`` before it.

    With ``fuse`` (default), the folded convolutions then take their ReLU, and residual blocks their shortcut add,
    as oneDNN post-ops (:func:`fuse_activations`, :class:`FusedConv2d`; CPU channels-last only, else eager).

    Pairs are a Sequential's consecutive ``Conv2d, BatchNorm2d`` and sibling attributes ``convK`` / ``bnK``
    (HRNet's stem and residual blocks). The folded BatchNorms become ``Identity``, so the copy's
    ``state_dict`` is not the official one: load checkpoints into ``module`` first, then fold. Outputs equal the
    original's to float32 rounding (``w * g / sqrt(v + eps)`` and ``b' = beta + (b - mu) * g / sqrt(v + eps)``).
    The copy is in eval mode; ``module`` is not modified.
    """
    folded = copy.deepcopy(module).eval()
    for owner in list(folded.modules()):
        if isinstance(owner, nn.Sequential):
            names = [name for name, _ in owner.named_children()]
            for a, b in itertools.pairwise(names):
                _fold_pair(owner, a, b)
        for name, _ in list(owner.named_children()):
            if name.startswith("conv") and name[4:].isdigit() and hasattr(owner, "bn" + name[4:]):
                _fold_pair(owner, name, "bn" + name[4:])
    for p in folded.parameters():
        p.requires_grad_(False)
    return fuse_activations(folded) if fuse else folded
