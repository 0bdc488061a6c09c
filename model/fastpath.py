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


def _fold_pair(owner: nn.Module, conv_name: str, bn_name: str) -> bool:
    conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
    if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats):
        return False
    setattr(owner, conv_name, fuse_conv_bn_eval(conv, bn))
    setattr(owner, bn_name, nn.Identity())
    return True


def fold_batch_norms(module: M) -> M:
    """An inference copy of ``module`` with every eval ``BatchNorm2d`` folded into the ``Conv2d`` before it.

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
    return folded
