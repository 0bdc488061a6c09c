"""CA-PF checkpoints: the released formats, config inference, and the temporal extension's own format.

Formats read (always ``torch.load(weights_only=True)``, strict keys, errors naming missing/unexpected keys):

- **Released whole model** ``best_epoch_*.bin``: ``{'epoch', 'lr', 'model', 'optimizer'}`` with the weights
  under ``model``, keys ``module.backbone.*`` (HRNet) and ``module.volume_net.*`` (lifter), saved from
  ``nn.DataParallel``. The project's :class:`~model.capf_full.CAPF` uses the official module names, so the key
  map is "drop ``module.``" and nothing else.
- **Lifter only**: the lifter's state_dict with bare official keys (``Spatial_pos_embed``, ``coord_embed.*``,
  ``feat_embed.*``, ``context_blocks.*``, ``res_blocks.*``, ``joint_blocks.*``, ``head.*``), optionally with
  ``module.`` and/or ``volume_net.`` prefixes, bare or under ``model`` / ``state_dict``. A whole-model file also
  serves as a lifter file (its ``volume_net.*`` part is taken).
- **Temporal extension** (this project's own; no published weights exist): a dict
  ``{'format': 'pose3d-capf-temporal', 'version': 1, 'temporal_config': {frames, depth, num_heads, mlp_ratio},
  'trunk': <lifter state_dict>, 'temporal_head': <TemporalHead state_dict>}`` written by
  :func:`save_capf_temporal`. The trunk may instead come from any single-frame file above.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import torch

from model.capf import CAPFLifter, CAPFLifterConfig
from model.capf_full import CAPF
from model.capf_temporal import CAPFTemporal, CAPFTemporalConfig
from model.checkpoints.common import (
    CheckpointError,
    has_prefix,
    load_state_dict_strict,
    read_checkpoint,
    remove_module_prefix,
    strip_prefix,
)
from model.checkpoints.hrnet import infer_hrnet_config
from model.hrnet import HRNetConfig

TEMPORAL_FORMAT: Final = "pose3d-capf-temporal"
TEMPORAL_FORMAT_VERSION: Final = 1
BACKBONE_PREFIX: Final = "backbone."
LIFTER_PREFIX: Final = "volume_net."


def state_dict_from_file(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded CA-PF file: ``obj['model']`` (released), ``obj['state_dict']``, or ``obj`` itself.

    Returns the state_dict without DataParallel's ``module.`` prefix.
    Raises:
        CheckpointError: when no dict of tensors is found.
    """
    state = obj
    if isinstance(obj, dict):
        for container in ("model", "state_dict"):
            if isinstance(obj.get(container), dict):
                state = obj[container]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{source}: no CA-PF state_dict found (top level: {keys})")
    return remove_module_prefix(state)


def lifter_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The lifter's weights from a lifter-only or whole-model state_dict (``module.``/``volume_net.`` stripped)."""
    plain = remove_module_prefix(state)
    return strip_prefix(plain, LIFTER_PREFIX) if has_prefix(plain, LIFTER_PREFIX) else plain


def _indices(state: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    found = _indices(state, prefix)
    return found[-1] + 1 if found else 0


def infer_capf_lifter_config(
    state: Mapping[str, torch.Tensor], num_heads: int = 8, qkv_bias: bool = True
) -> CAPFLifterConfig:
    """Read the lifter's sizes from a state_dict's key shapes.

    Args:
        state: lifter-only or whole-model weights (prefixes ``module.`` / ``volume_net.`` allowed).
        num_heads: heads of the transformer stacks (not visible in the weights; 8 in the published code).
        qkv_bias: whether ``qkv`` has a bias (read from the weights when any block exists).
    Raises:
        CheckpointError: when a key the inference needs is missing.
    """
    sd = lifter_state(state)
    try:
        fields = _lifter_fields(sd, num_heads, qkv_bias)
    except (KeyError, ValueError, IndexError, ZeroDivisionError) as e:
        detail = repr(e.args[0]) if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise CheckpointError(f"not a CA-PF lifter state_dict: missing or malformed {detail}") from e
    try:
        return CAPFLifterConfig(**fields)
    except ValueError as e:
        raise CheckpointError(f"inconsistent CA-PF lifter sizes: {e}") from e


def _lifter_fields(sd: Mapping[str, torch.Tensor], num_heads: int, qkv_bias: bool) -> dict[str, Any]:
    """:class:`CAPFLifterConfig` fields read from lifter key shapes (KeyError/ValueError/IndexError when malformed)."""
    _, tokens, joints, c = (int(n) for n in sd["Spatial_pos_embed"].shape)
    in_chans = int(sd["coord_embed.weight"].shape[1])
    head_width = int(sd["head.1.weight"].shape[1])
    levels = _count(sd, "feat_embed.")
    channels = tuple(int(sd[f"feat_embed.{i}.weight"].shape[1]) for i in range(levels))
    if levels + 1 != tokens or head_width != tokens * c:
        raise ValueError(f"inconsistent CA-PF lifter: {levels} feat_embed layers, Spatial_pos_embed {tokens}")
    fields: dict[str, Any] = {"embed_dim_ratio": c, "feature_channels": channels, "num_joints": joints}
    fields |= {"in_chans": in_chans, "num_heads": num_heads, "qkv_bias": qkv_bias}
    fields["context_depth"] = _count(sd, "context_blocks.")
    fields["res_depth"] = _count(sd, "res_blocks.")
    fields["joint_depth"] = _count(sd, "joint_blocks.")
    if "res_blocks.0.mlp.fc1.weight" in sd:
        fields["mlp_ratio"] = int(sd["res_blocks.0.mlp.fc1.weight"].shape[0]) / c
        fields["qkv_bias"] = "res_blocks.0.attn.qkv.bias" in sd
    if "context_blocks.0.embed_proj.0.weight" in sd:
        heads = c // int(sd["context_blocks.0.embed_proj.0.weight"].shape[0])
        fields["deformable_heads"] = heads
        fields["deformable_points"] = int(sd["context_blocks.0.attention_weights.weight"].shape[0]) // heads
        fields["deformable_mlp_ratio"] = int(sd["context_blocks.0.mlp.fc1.weight"].shape[0]) / c
    return fields


def infer_capf_config(state: Mapping[str, torch.Tensor], num_heads: int = 8) -> tuple[HRNetConfig, CAPFLifterConfig]:
    """``(HRNet config, lifter config)`` of a whole-model state_dict (``module.`` optional).

    Raises:
        CheckpointError: when the weights are not a whole CA-PF (no ``backbone.*`` or ``volume_net.*``).
    """
    plain = remove_module_prefix(state)
    if not (has_prefix(plain, BACKBONE_PREFIX) and has_prefix(plain, LIFTER_PREFIX)):
        raise CheckpointError("not a whole CA-PF state_dict: needs backbone.* and volume_net.* keys")
    backbone = strip_prefix(plain, BACKBONE_PREFIX)
    try:
        hrnet = infer_hrnet_config(backbone)
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"cannot read the HRNet sizes from backbone.*: {e}") from e
    return hrnet, infer_capf_lifter_config(plain, num_heads=num_heads)


def load_capf_state_dict(model: CAPF, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load whole-model weights (``module.`` optional) into :class:`CAPF`."""
    load_state_dict_strict(model, remove_module_prefix(state), source)


def load_capf(path: str | Path, model: CAPF | None = None) -> CAPF:
    """Load a released ``best_epoch_*.bin`` (or a bare whole-model state_dict) strictly.

    Args:
        path: the checkpoint file.
        model: the model to fill; built from :func:`infer_capf_config` when None.
    Returns:
        The model (eval mode).
    Raises:
        CheckpointError: unreadable file, or keys/shapes that do not match (named in the message).
    """
    source = f"{path} (CA-PF whole model)"
    state = state_dict_from_file(read_checkpoint(path), source)
    if model is None:
        model = CAPF(*infer_capf_config(state))
    load_capf_state_dict(model, state, source)
    return model.eval()


def load_capf_lifter(path: str | Path, lifter: CAPFLifter | None = None) -> CAPFLifter:
    """Load lifter weights strictly from a lifter-only file or from a whole-model file's ``volume_net.*``.

    Args:
        path: the checkpoint file.
        lifter: the lifter to fill; built from :func:`infer_capf_lifter_config` when None.
    Returns:
        The lifter (eval mode).
    """
    source = f"{path} (CA-PF lifter)"
    state = lifter_state(state_dict_from_file(read_checkpoint(path), source))
    if lifter is None:
        lifter = CAPFLifter(infer_capf_lifter_config(state))
    load_state_dict_strict(lifter, state, source)
    return lifter.eval()


def _is_temporal_file(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == TEMPORAL_FORMAT


def _temporal_config(obj: Mapping[str, Any], source: str) -> CAPFTemporalConfig:
    if obj.get("version") != TEMPORAL_FORMAT_VERSION:
        raise CheckpointError(f"{source}: unsupported {TEMPORAL_FORMAT} version {obj.get('version')!r}")
    try:
        return CAPFTemporalConfig(**obj["temporal_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: bad temporal_config: {e}") from e


def _trunk_state(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if _is_temporal_file(obj):
        if not isinstance(obj.get("trunk"), dict):
            raise CheckpointError(f"{source}: {TEMPORAL_FORMAT} file without a 'trunk' state_dict")
        return lifter_state(obj["trunk"])
    return lifter_state(state_dict_from_file(obj, source))


def _head_file(obj: Any, path: str | Path, temporal_path: str | Path | None) -> tuple[Any, str]:
    """The loaded temporal file that provides the head (``None`` when there is none) and its name."""
    if temporal_path is not None:
        head_obj = read_checkpoint(temporal_path)
        if not _is_temporal_file(head_obj):
            raise CheckpointError(f"{temporal_path}: not a {TEMPORAL_FORMAT} file (no 'format' marker)")
        return head_obj, str(temporal_path)
    return (obj, str(path)) if _is_temporal_file(obj) else (None, "")


def _fill_temporal(model: CAPFTemporal, trunk: Mapping[str, torch.Tensor], source: str, head: tuple[Any, str]) -> bool:
    load_state_dict_strict(model.trunk, trunk, f"{source} (CA-PF temporal trunk)")
    head_obj, head_source = head
    if head_obj is None:
        return False
    cfg = _temporal_config(head_obj, head_source)
    if cfg != model.temporal_cfg:
        raise CheckpointError(f"{head_source}: temporal head {cfg} does not match the model's {model.temporal_cfg}")
    head_state = head_obj.get("temporal_head")
    if not isinstance(head_state, dict):
        raise CheckpointError(f"{head_source}: {TEMPORAL_FORMAT} file without a 'temporal_head' state_dict")
    load_state_dict_strict(model.temporal, head_state, f"{head_source} (CA-PF temporal head)")
    return True


def load_capf_temporal(model: CAPFTemporal, path: str | Path, temporal_path: str | Path | None = None) -> bool:
    """Load the shared trunk (and the temporal head when a trained one exists) strictly.

    Args:
        model: the temporal model to fill.
        path: a single-frame CA-PF file (released whole model or lifter only: loads the trunk; the temporal
            head is left as it is) or a temporal file written by :func:`save_capf_temporal` (loads both).
        temporal_path: optionally, a temporal file whose ``temporal_head`` is loaded (its ``trunk`` is ignored).
    Returns:
        True when the temporal head was loaded from a file, False when it is still untrained.
    Raises:
        CheckpointError: unreadable files, a temporal config different from the model's, or keys/shapes
            that do not match (named in the message).
    """
    obj = read_checkpoint(path)
    return _fill_temporal(model, _trunk_state(obj, str(path)), str(path), _head_file(obj, path, temporal_path))


def build_capf_temporal(
    path: str | Path, frames: int | None = None, temporal_path: str | Path | None = None
) -> tuple[CAPFTemporal, bool]:
    """Build a :class:`CAPFTemporal` from files alone, inferring the trunk's sizes from its weights.

    Args:
        path: single-frame or temporal file (see :func:`load_capf_temporal`).
        frames: the window length; required to agree with a temporal file when there is one; when there is
            none, the temporal head is built untrained with this many frames (default 9).
        temporal_path: optional temporal file with a trained head.
    Returns:
        ``(model in eval mode, temporal_head_loaded)``; when False, call
        :meth:`CAPFTemporal.init_temporal_from_trunk` or train the head before trusting its output.
    """
    obj = read_checkpoint(path)
    trunk = _trunk_state(obj, str(path))
    head = _head_file(obj, path, temporal_path)
    if head[0] is not None:
        temporal_cfg = _temporal_config(head[0], head[1])
        if frames is not None and frames != temporal_cfg.frames:
            raise CheckpointError(f"{head[1]}: temporal head has {temporal_cfg.frames} frames, {frames} requested")
    else:
        temporal_cfg = CAPFTemporalConfig() if frames is None else CAPFTemporalConfig(frames=frames)
    model = CAPFTemporal(infer_capf_lifter_config(trunk), temporal_cfg)
    loaded = _fill_temporal(model, trunk, str(path), head)
    return model.eval(), loaded


def save_capf_temporal(model: CAPFTemporal, path: str | Path) -> None:
    """Write the temporal model in the :data:`TEMPORAL_FORMAT` format (plain tensors and numbers only)."""
    lifter_config = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.lifter_cfg).items()}
    torch.save(
        {
            "format": TEMPORAL_FORMAT,
            "version": TEMPORAL_FORMAT_VERSION,
            "temporal_config": asdict(model.temporal_cfg),
            "lifter_config": lifter_config,
            "trunk": model.trunk.state_dict(),
            "temporal_head": model.temporal.state_dict(),
        },
        Path(path),
    )
