"""P-STMO checkpoints: the released file format, the official ↔ project key map, config inference.

Released files (``no_refine_*.pth``) are a bare state_dict saved from ``nn.DataParallel``, so every key
carries ``module.``; files without the prefix (e.g. the conformance vectors) load as well.

The key map (:data:`KEY_RULES`) is one explicit table of ``(official, project)`` key templates, where
``{i}`` stands for a layer index and ``{p}`` for a parameter/buffer leaf name. Keys that match no rule
map to themselves (so that they surface as *unexpected* in strict-loading errors).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import torch

from model.checkpoints.common import CheckpointError, load_state_dict_strict, read_checkpoint, remove_module_prefix
from model.pstmo import PSTMO, PSTMOConfig
from model.pstmo_blocks import reduced_length


def _transformer_rules(official: str, project: str) -> list[tuple[str, str]]:
    layer_o, layer_p = f"{official}.layers.{{i}}", f"{project}.layers.{{i}}"
    return [
        *[(f"{layer_o}.self_attn.linears.{n}.{{p}}", f"{layer_p}.attn.{name}.{{p}}") for n, name in
          enumerate(("query", "key", "value", "out"))],
        (f"{layer_o}.feed_forward.w_1.{{p}}", f"{layer_p}.ffn.fc1.{{p}}"),
        (f"{layer_o}.feed_forward.w_2.{{p}}", f"{layer_p}.ffn.fc2.{{p}}"),
        (f"{layer_o}.sublayer.0.norm.a_2", f"{layer_p}.norm_attn.weight"),
        (f"{layer_o}.sublayer.0.norm.b_2", f"{layer_p}.norm_attn.bias"),
        (f"{layer_o}.sublayer.1.norm.a_2", f"{layer_p}.norm_ffn.weight"),
        (f"{layer_o}.sublayer.1.norm.b_2", f"{layer_p}.norm_ffn.bias"),
        (f"{official}.norm.a_2", f"{project}.final_norm.weight"),
        (f"{official}.norm.b_2", f"{project}.final_norm.bias"),
    ]  # fmt: skip


KEY_RULES: Final[tuple[tuple[str, str], ...]] = (
    ("encoder.fc_1.{p}", "sem.fc_in.{p}"),
    ("encoder.bn_1.{p}", "sem.bn_in.{p}"),
    ("encoder.layers.{i}.w1.{p}", "sem.blocks.{i}.fc1.{p}"),
    ("encoder.layers.{i}.batch_norm1.{p}", "sem.blocks.{i}.bn1.{p}"),
    ("encoder.layers.{i}.w2.{p}", "sem.blocks.{i}.fc2.{p}"),
    ("encoder.layers.{i}.batch_norm2.{p}", "sem.blocks.{i}.bn2.{p}"),
    ("encoder.fc_2.{p}", "sem.fc_out.{p}"),
    ("Transformer.pos_embedding", "tem.pos_embedding"),
    *_transformer_rules("Transformer.model", "tem"),
    ("Transformer_reduce.model.pos_embedding_{i}", "mofa.pos_embedding_{i}"),
    *_transformer_rules("Transformer_reduce.model", "mofa"),
    ("fcn.0.{p}", "head_centre.norm.{p}"),
    ("fcn.1.{p}", "head_centre.proj.{p}"),
    ("fcn_1.0.{p}", "head_sequence.norm.{p}"),
    ("fcn_1.1.{p}", "head_sequence.proj.{p}"),
)
"""``(official key template, project key template)``; ``{i}``: an index, ``{p}``: a leaf name."""

_PLACEHOLDERS: Final = {"{i}": r"(?P<i>\d+)", "{p}": r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"}


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name, group in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape(name), group)
    return re.compile(pattern + r"\Z")


_OFFICIAL_TO_PROJECT: Final = tuple((_compile(o), p) for o, p in KEY_RULES)
_PROJECT_TO_OFFICIAL: Final = tuple((_compile(p), o) for o, p in KEY_RULES)


def _translate(key: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, template in rules:
        m = pattern.match(key)
        if m:
            out = template
            for name, value in m.groupdict().items():
                out = out.replace("{" + name + "}", value)
            return out
    return key


def official_to_project_key(key: str) -> str:
    """Official P-STMO key (no ``module.``) → this project's :class:`~model.pstmo.PSTMO` key."""
    return _translate(key, _OFFICIAL_TO_PROJECT)


def project_to_official_key(key: str) -> str:
    """Inverse of :func:`official_to_project_key`."""
    return _translate(key, _PROJECT_TO_OFFICIAL)


def to_official_state_dict(model: PSTMO) -> dict[str, torch.Tensor]:
    """The model's state_dict under the official key names (no ``module.`` prefix)."""
    return {project_to_official_key(k): v for k, v in model.state_dict().items()}


def _official_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``module.``, and translate project names back to official ones where needed."""
    plain = remove_module_prefix(state)
    return {project_to_official_key(k): v for k, v in plain.items()}


def _layer_count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def _uniform_strides(frames: int, depth: int) -> tuple[int, ...]:
    """The smallest uniform stride that reduces ``frames`` tokens to one in ``depth`` layers."""
    for s in range(2, frames + 1):
        strides = (s,) * depth
        if reduced_length(frames, strides) == 1:
            return strides
    return (1,) * depth  # frames == 1


def infer_pstmo_config(
    state: Mapping[str, torch.Tensor], stride_num: tuple[int, ...] | None = None, heads: int = 8
) -> PSTMOConfig:
    """Read the P-STMO sizes from a state_dict's key shapes.

    Args:
        state: official (optionally ``module.``-prefixed) or project key names.
        stride_num: MOFA strides; the weights fix only their number, so by default the smallest
            uniform stride that reduces ``frames`` to one token is taken (3 for every published model).
        heads: attention heads (not visible in the weights; 8 in the published code).
    Raises:
        CheckpointError: when a key the inference needs is missing or shapes are inconsistent.
    """
    sd = _official_names(state)
    try:
        sem_width, in_features = (int(n) for n in sd["encoder.fc_1.weight"].shape[:2])  # (2C, 2J, 1)
        channel = int(sd["encoder.fc_2.weight"].shape[0])
        frames = int(sd["Transformer.pos_embedding"].shape[1])
        d_hid = int(sd["Transformer_reduce.model.layers.0.feed_forward.w_1.weight"].shape[0])
        out_joints = int(sd["fcn.1.weight"].shape[0]) // 3
    except KeyError as e:
        raise CheckpointError(f"not a P-STMO state_dict: missing {e.args[0]!r}") from e
    except IndexError as e:
        raise CheckpointError(f"not a P-STMO state_dict: a key the sizes are read from has too few dims ({e})") from e
    except ValueError as e:  # fewer than two dims to unpack
        raise CheckpointError(f"not a P-STMO state_dict: encoder.fc_1.weight is not (2C, 2J, 1) ({e})") from e
    if sem_width != 2 * channel:
        raise CheckpointError(f"SEM width {sem_width} is not 2 * channel ({channel}): not a P-STMO state_dict")
    depth = _layer_count(sd, "Transformer_reduce.model.layers.")
    if depth == 0:
        raise CheckpointError("not a P-STMO state_dict: no Transformer_reduce (MOFA) layers")
    strides = stride_num if stride_num is not None else _uniform_strides(frames, depth)
    if len(strides) != depth:
        raise CheckpointError(f"stride_num {list(strides)} has {len(strides)} entries, the weights have {depth} layers")
    try:
        return PSTMOConfig(
            frames=frames,
            stride_num=tuple(strides),
            layers=_layer_count(sd, "Transformer.model.layers."),
            channel=channel,
            d_hid=d_hid,
            n_joints=in_features // 2,
            out_joints=out_joints,
            heads=heads,
        )
    except ValueError as e:
        raise CheckpointError(f"inconsistent P-STMO sizes: {e}") from e


_KEY_TOKEN: Final = re.compile(r"[A-Za-z_][\w.]*")


def load_pstmo_state_dict(model: PSTMO, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load official-named weights (``module.`` optional) into ``model`` through the key map.

    Raises:
        CheckpointError: naming missing / unexpected / mis-shaped keys by their official names.
    """
    try:
        load_state_dict_strict(model, remove_module_prefix(state), source, key_map=official_to_project_key)
    except CheckpointError as e:
        message = _KEY_TOKEN.sub(lambda m: project_to_official_key(m.group(0)), str(e))
        raise CheckpointError(message) from e


def read_pstmo_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a released P-STMO file (bare state_dict, ``module.`` prefixes) safely; prefixes kept."""
    obj = read_checkpoint(path)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a bare P-STMO state_dict (dict of tensors), got {type(obj).__name__}")
    return obj


def load_pstmo_checkpoint(path: str | Path, cfg: PSTMOConfig | None = None) -> PSTMO:
    """Build a :class:`~model.pstmo.PSTMO` and load a released checkpoint into it strictly.

    Args:
        path: a released ``.pth`` (bare state_dict, keys with or without ``module.``).
        cfg: the architecture; inferred from the key shapes (:func:`infer_pstmo_config`) when None.
    Returns:
        The model in eval mode, on CPU.
    Raises:
        CheckpointError: unreadable/truncated file, or keys/shapes that do not match ``cfg``
            (the message names missing, unexpected and mis-shaped keys).
    """
    state = read_pstmo_state_dict(path)
    model = PSTMO(cfg if cfg is not None else infer_pstmo_config(state))
    load_pstmo_state_dict(model, state, f"{path} (P-STMO)")
    return model.eval()
