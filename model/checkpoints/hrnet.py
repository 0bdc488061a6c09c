"""HRNet checkpoints: the three released file formats, one key map each, strict loading.

Formats (recognised from the file's layout and key names, never from its name):

| format | file layout | keys |
| --- | --- | --- |
| ``hrnet_authors`` | bare state_dict (``pose_hrnet_w32_256x192.pth``), or ``{'state_dict': ...}`` | backbone keys at top level (``conv1.weight``, ``stage4.2.fuse_layers...``) + ``final_layer.weight/bias`` |
| ``mmpose`` | ``{'state_dict': ..., 'meta': ...}``; ``meta`` may hold numpy arrays/scalars | ``backbone.*`` + ``head.final_layer.*`` (mmpose 1.x) or ``keypoint_head.final_layer.*`` (0.x) |
| ``capf`` | ``{'epoch', 'lr', 'model', 'optimizer'}`` (``best_epoch_*.bin``) | ``backbone.*`` + ``volume_net.*`` (lifter, ignored here); no heatmap head |

Any of them may carry DataParallel's ``module.`` prefix on every key. Each format has one explicit key map
(:data:`KEY_MAPS`) to :class:`~model.hrnet.PoseHRNet`'s names (``backbone.*``, ``final_layer.*``); the
backbone names themselves are the official ones in all three. Files are read with
``torch.load(weights_only=True)`` plus :data:`NUMPY_SAFE_GLOBALS`, a small allow-list for mmpose ``meta``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from model.checkpoints.common import (
    CheckpointError,
    load_state_dict_strict,
    read_checkpoint,
    remove_module_prefix,
    strip_prefix,
)
from model.hrnet import HRNET_PRESETS, HRNetBackbone, HRNetConfig, HRStageConfig, PoseHRNet
from model.hrnet_blocks import BlockName


class HRNetFormat(StrEnum):
    """Released HRNet checkpoint formats."""

    HRNET_AUTHORS = "hrnet_authors"
    MMPOSE = "mmpose"
    CAPF = "capf"


def _numpy_safe_globals() -> list[Any]:
    """numpy globals that plain arrays, scalars and dtypes pickle to, under numpy 1.x and 2.x module paths."""
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    allowed: list[Any] = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(multiarray, name)
        allowed += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    allowed += sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGSUVOMm"}, key=lambda t: t.__name__)
    return allowed


NUMPY_SAFE_GLOBALS: Final[tuple[Any, ...]] = tuple(_numpy_safe_globals())
"""Allow-list for ``read_checkpoint``: ndarray reconstruction, numpy scalars, dtypes. Nothing that runs code."""

_HEAD = "final_layer."
_MMPOSE_HEADS: Final = ("head.final_layer.", "keypoint_head.final_layer.")


def _authors_key(key: str) -> str:
    return key if key.startswith(_HEAD) else "backbone." + key


def _mmpose_key(key: str) -> str:
    for head in _MMPOSE_HEADS:
        if key.startswith(head):
            return _HEAD + key[len(head) :]
    return key


def _capf_key(key: str) -> str:
    return key


KEY_MAPS: Final[Mapping[HRNetFormat, Callable[[str], str]]] = {
    HRNetFormat.HRNET_AUTHORS: _authors_key,  # conv1.weight -> backbone.conv1.weight; final_layer.* kept
    HRNetFormat.MMPOSE: _mmpose_key,  # backbone.* kept; head.final_layer.* / keypoint_head.final_layer.* -> final_layer.*
    HRNetFormat.CAPF: _capf_key,  # backbone.* kept (volume_net.* dropped before mapping)
}
"""Checkpoint key (after ``module.`` removal) → :class:`PoseHRNet` key, per format."""


def _unwrap(obj: Any, source: str) -> tuple[dict[str, Any], bool]:
    """The state_dict inside a checkpoint object, and whether it came from a CA-PF training wrapper."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, found {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], Mapping) and ("epoch" in obj or "optimizer" in obj):
        return dict(obj["model"]), True
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        return dict(obj["state_dict"]), False
    return dict(obj), False


def detect_format(state: Mapping[str, Any], source: str, capf_wrapper: bool = False) -> HRNetFormat:
    """Recognise the format from key names (``module.`` already removed).

    Raises:
        CheckpointError: no HRNet stem key under any known naming (e.g. a P-STMO or CA-PF lifter file).
    """
    if "conv1.weight" in state:
        return HRNetFormat.HRNET_AUTHORS
    if "backbone.conv1.weight" in state:
        if capf_wrapper or any(k.startswith("volume_net.") for k in state):
            return HRNetFormat.CAPF
        return HRNetFormat.MMPOSE
    sample = ", ".join(sorted(state)[:5]) or "(no keys)"
    raise CheckpointError(
        f"{source} is not an HRNet checkpoint: expected 'conv1.weight' (HRNet authors' COCO file), "
        f"'backbone.conv1.weight' with 'head.final_layer.*' (mmpose) or with 'volume_net.*' (CA-PF); "
        f"found {len(state)} keys such as {sample}"
    )


def read_hrnet_checkpoint(path: str | Path) -> tuple[HRNetFormat, dict[str, torch.Tensor]]:
    """Read any HRNet checkpoint file safely and recognise its format.

    Returns:
        The format and its state_dict with that format's key names, ``module.`` removed, CA-PF's
        ``volume_net.*`` dropped, every value a tensor.
    Raises:
        CheckpointError: missing, empty, truncated or corrupt file; objects outside the allow-list;
            non-tensor values; not an HRNet checkpoint.
    """
    source = str(path)
    state, capf_wrapper = _unwrap(read_checkpoint(path, extra_safe_globals=NUMPY_SAFE_GLOBALS), source)
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: state_dict entries that are not tensors: {', '.join(map(str, bad[:10]))}")
    state = remove_module_prefix(state)
    fmt = detect_format(state, source, capf_wrapper)
    if fmt is HRNetFormat.CAPF:
        state = {k: v for k, v in state.items() if not k.startswith("volume_net.")}
    return fmt, state


def to_pose_hrnet_keys(fmt: HRNetFormat, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a format's keys to :class:`PoseHRNet`'s (``backbone.*``, ``final_layer.*``) through :data:`KEY_MAPS`."""
    key_map = KEY_MAPS[fmt]
    return {key_map(k): v for k, v in state.items()}


def infer_hrnet_config(state: Mapping[str, torch.Tensor]) -> HRNetConfig:
    """Stage layout of an HRNet from its backbone keys (official names, without ``backbone.``).

    Raises:
        CheckpointError: the stage keys are incomplete or malformed.
    """
    try:
        return HRNetConfig(*(_infer_stage(state, s) for s in (2, 3, 4)))
    except (KeyError, ValueError, IndexError) as e:
        if isinstance(e, CheckpointError):
            raise
        detail = f"missing {e.args[0]!r}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise CheckpointError(f"cannot infer the HRNet stages from the keys: {detail}") from e


def _infer_stage(state: Mapping[str, torch.Tensor], s: int) -> HRStageConfig:
    """Stage ``s`` (2, 3 or 4) read from its keys (KeyError/ValueError/IndexError when malformed)."""
    prefix = f"stage{s}."
    modules = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
    branch_prefix = f"{prefix}0.branches."
    branches = {int(k[len(branch_prefix) :].split(".")[0]) for k in state if k.startswith(branch_prefix)}
    if not modules or not branches:
        raise CheckpointError(f"cannot infer HRNet stage {s}: no '{branch_prefix}*' keys")
    blocks, channels = [], []
    for b in sorted(branches):
        bp = f"{branch_prefix}{b}."
        blocks.append(len({k[len(bp) :].split(".")[0] for k in state if k.startswith(bp)}))
        channels.append(int(state[f"{bp}0.conv1.weight"].shape[0]))
    block: BlockName = "BOTTLENECK" if f"{branch_prefix}0.0.conv3.weight" in state else "BASIC"
    return HRStageConfig(len(modules), len(branches), tuple(blocks), tuple(channels), block)


def _with_hint(e: CheckpointError, cfg: HRNetConfig, backbone_state: Mapping[str, torch.Tensor]) -> CheckpointError:
    try:
        found = infer_hrnet_config(backbone_state)
    except (CheckpointError, KeyError, ValueError):
        return e
    if found == cfg:
        return e
    name = next((n for n, c in HRNET_PRESETS.items() if c == found), None)
    what = (
        f"preset {name!r}"
        if name
        else f"stage channels {[st.num_channels for st in (found.stage2, found.stage3, found.stage4)]}"
    )
    return CheckpointError(f"{e}; the checkpoint's backbone looks like {what}")


def load_pose_hrnet(model: PoseHRNet, path: str | Path) -> HRNetFormat:
    """Load a COCO HRNet checkpoint (HRNet authors' or mmpose) into ``model`` strictly, head included.

    Raises:
        CheckpointError: see :func:`read_hrnet_checkpoint`; a CA-PF file (it has no heatmap head);
            missing/unexpected/shape-mismatched keys, named.
    """
    fmt, state = read_hrnet_checkpoint(path)
    if fmt is HRNetFormat.CAPF:
        raise CheckpointError(
            f"{path} is a CA-PF checkpoint: it carries the HRNet backbone but no heatmap head "
            "(final_layer); give a COCO HRNet checkpoint for the head and this file as the backbone checkpoint"
        )
    mapped = to_pose_hrnet_keys(fmt, state)
    try:
        load_state_dict_strict(model, mapped, source=f"{path} ({fmt} format)")
    except CheckpointError as e:
        raise _with_hint(e, model.cfg, strip_prefix(mapped, "backbone.")) from None
    return fmt


def load_hrnet_backbone(backbone: HRNetBackbone, path: str | Path) -> HRNetFormat:
    """Load only the backbone from any HRNet checkpoint (CA-PF, HRNet authors', mmpose), strictly.

    The heatmap head of COCO files and CA-PF's ``volume_net.*`` are ignored; every other key must match.
    """
    fmt, state = read_hrnet_checkpoint(path)
    mapped = {k: v for k, v in to_pose_hrnet_keys(fmt, state).items() if not k.startswith(_HEAD)}
    backbone_state = {(k[len("backbone.") :] if k.startswith("backbone.") else k): v for k, v in mapped.items()}
    try:
        load_state_dict_strict(backbone, backbone_state, source=f"{path} ({fmt} format, backbone)")
    except CheckpointError as e:
        raise _with_hint(e, backbone.cfg, backbone_state) from None
    return fmt


def random_pose_hrnet(cfg: HRNetConfig, num_joints: int = 17, seed: int = 0) -> PoseHRNet:
    """A :class:`PoseHRNet` with PyTorch's default random initialisation from ``seed`` (global RNG untouched), eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PoseHRNet(cfg, num_joints)
    return model.eval()


def uninitialised_pose_hrnet(cfg: HRNetConfig, num_joints: int = 17) -> PoseHRNet:
    """A :class:`PoseHRNet` with allocated but uninitialised storage (skips the random init a strict load overwrites).

    Only for loading: every parameter and buffer must then come from a checkpoint (strict loading ensures it).
    """
    with torch.device("meta"):
        model = PoseHRNet(cfg, num_joints)
    return model.to_empty(device="cpu")


def load_detector(
    cfg: HRNetConfig,
    checkpoint: str | Path | None,
    backbone_checkpoint: str | Path | None = None,
    num_joints: int = 17,
    seed: int = 0,
) -> PoseHRNet:
    """The detector network, in eval mode.

    Args:
        cfg: the architecture (e.g. ``HRNET_PRESETS['w32']``); the files must match it exactly.
        checkpoint: COCO HRNet file (HRNet authors' or mmpose, auto-detected) giving backbone and head;
            None: random weights from ``seed`` (see :func:`random_pose_hrnet`).
        backbone_checkpoint: optional file whose backbone replaces the one from ``checkpoint``, typically a CA-PF
            ``best_epoch_*.bin`` (its backbone is the frozen COCO backbone), or any other HRNet format.
        num_joints: heatmap channels (17 for COCO).
    Raises:
        CheckpointError: a file is missing, unreadable, of the wrong format or does not match ``cfg``.
    """
    if checkpoint is None:
        model = random_pose_hrnet(cfg, num_joints, seed)
    else:
        model = uninitialised_pose_hrnet(cfg, num_joints)
        load_pose_hrnet(model, checkpoint)
    if backbone_checkpoint is not None:
        load_hrnet_backbone(model.backbone, backbone_checkpoint)
    return model.eval()
