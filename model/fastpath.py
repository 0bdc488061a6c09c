"""Switch between the fast inference kernels and the reference (published-order) computation.

Blocks with two implementations of the same arithmetic derive from :class:`FastPathModule` and read
``self.fast`` in ``forward``. The fast branch (fused ``scaled_dot_product_attention``, ``var_mean``
LayerNorm, k=1 Conv1d as ``F.linear`` on ``(B, T, C)``) and the reference branch (the published op
sequence) agree to float32 rounding; the conformance vectors hold for both (``tests/unit/test_fastpath.py``).
The reference branch exists for the side-by-side benchmark (``python -m bench``) and for checking.
Neither branch changes the parameters or the ``state_dict``: official checkpoints load strictly either way.
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn

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
