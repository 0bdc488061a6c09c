"""Shared checkpoint mechanics: safe reading, prefix handling, strict loading with named errors."""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, of the wrong format, or has the wrong keys/shapes."""


def sha256_of_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (the weights identity reported by the service)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_checkpoint(path: str | Path, extra_safe_globals: Iterable[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the problem.

    Args:
        path: checkpoint file.
        extra_safe_globals: classes/functions allowed for unpickling besides torch's defaults
            (e.g. the numpy globals inside mmpose ``meta``); never arbitrary code.
    Raises:
        CheckpointError: missing file, truncated/corrupt archive, or a global outside the allow-list.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {p}")
    try:
        with torch.serialization.safe_globals(list(extra_safe_globals)):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"checkpoint {p} holds objects outside the allow-list: {e}") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"checkpoint {p} is truncated or corrupt: {e}") from e


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys starting with ``prefix``, with it removed; other keys are dropped."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def has_prefix(state: Mapping[str, Any], prefix: str) -> bool:
    """True when at least one key starts with ``prefix``."""
    return any(k.startswith(prefix) for k in state)


def remove_module_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DataParallel's ``module.`` prefix when every key carries it."""
    if state and all(k.startswith("module.") for k in state):
        return strip_prefix(state, "module.")
    return dict(state)


def load_state_dict_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str,
    key_map: Callable[[str], str] | None = None,
) -> None:
    """Load ``state`` into ``module`` strictly: same key set, same shapes.

    Args:
        module: the project's model.
        state: checkpoint tensors with the format's key names.
        source: what to name in errors (file path and format).
        key_map: maps a checkpoint key to the project's key (identity when None).
    Raises:
        CheckpointError: naming missing keys, unexpected keys and shape mismatches (first 10 of each).
    """
    mapped = {(key_map(k) if key_map else k): v for k, v in state.items()}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    bad_shape = [
        f"{k}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in mapped and tuple(mapped[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or bad_shape:
        parts = [f"checkpoint {source} does not match the model"]
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatch", bad_shape),
        ):
            if items:
                more = f" (+{len(items) - 10} more)" if len(items) > 10 else ""
                parts.append(f"{label} [{len(items)}]: {', '.join(items[:10])}{more}")
        raise CheckpointError("; ".join(parts))
    module.load_state_dict(mapped, strict=True)
