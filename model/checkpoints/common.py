"""Shared checkpoint mechanics: safe reading, prefix handling, strict loading with named errors."""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

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


_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-9;]*m")
_UNPICKLER_DETAIL: Final = re.compile(r"GLOBAL [\w.]*\w|Unsupported operand \d+")


def _refusal_detail(error: pickle.UnpicklingError) -> str:
    """The part of torch's weights-only refusal that names what was refused (its advice to load unsafely dropped)."""
    text = _ANSI_ESCAPE.sub("", str(error))
    found = _UNPICKLER_DETAIL.findall(text)
    if found:
        return "; ".join(dict.fromkeys(found))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else "refused by the weights-only unpickler"


def read_checkpoint(path: str | Path, extra_safe_globals: Iterable[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that name the problem.

    Never unpickles arbitrary objects: whatever the file holds, the only outcomes are the loaded object (tensors,
    containers, numbers, strings and the ``extra_safe_globals``) or a :class:`CheckpointError`.

    Args:
        path: checkpoint file.
        extra_safe_globals: classes/functions allowed for unpickling besides torch's defaults
            (e.g. the numpy globals inside mmpose ``meta``); never arbitrary code.
    Raises:
        CheckpointError: missing file, not a regular file, empty, truncated/corrupt archive, not a torch file
            at all, or a global outside the allow-list.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint is not a regular file: {p}")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {p}")
    try:
        with torch.serialization.safe_globals(list(extra_safe_globals)):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = _refusal_detail(e)
        if "GLOBAL" in detail:
            raise CheckpointError(f"checkpoint {p} holds objects outside the allow-list ({detail}); refused") from e
        raise CheckpointError(f"checkpoint {p} is not a torch checkpoint readable safely ({detail})") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"checkpoint {p} is truncated or corrupt: {type(e).__name__}: {e}") from e
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, UnicodeDecodeError) as e:
        # What torch's legacy (pre-zip) reader raises on bytes that are not a torch file at all.
        raise CheckpointError(f"checkpoint {p} is not a torch checkpoint: {type(e).__name__}: {e}") from e


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


def _listing(items: list[str], limit: int = 10) -> str:
    """The first ``limit`` items, comma-separated, with a count of the rest."""
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


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
        CheckpointError: naming entries that are not tensors, checkpoint keys that map to the same model key,
            missing keys, unexpected keys, shape mismatches and tensors holding NaN or infinity (first 10 of
            each; torch does not checksum tensor data, so a damaged file can otherwise load as NaN weights).
    """
    not_tensors = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"checkpoint {source}: entries that are not tensors: {_listing(not_tensors)}")
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    collisions: list[str] = []
    for k, v in state.items():
        key = key_map(k) if key_map else k
        if key in mapped:
            collisions.append(f"{origin[key]} and {k} -> {key}")
        mapped[key], origin[key] = v, k
    if collisions:
        raise CheckpointError(f"checkpoint {source}: keys that load into the same parameter: {_listing(collisions)}")
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
                parts.append(f"{label} [{len(items)}]: {_listing(items)}")
        raise CheckpointError("; ".join(parts))
    non_finite = [origin[k] for k, v in mapped.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise CheckpointError(
            f"checkpoint {source} is corrupt: NaN or infinite values in {len(non_finite)} tensors: {_listing(non_finite)}"
        )
    module.load_state_dict(mapped, strict=True)
