"""``pose3d weights add FILE``: recognise a checkpoint downloaded by hand and install it under its catalogue name.

The format and architecture come from the file's keys and shapes, and the file is then loaded STRICTLY by the
same loaders the service uses (model/checkpoints/), so a file that `add` accepts is one the service loads.
torch and the model code are imported only here, and only when ``add`` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from service.weights.catalogue import Catalogue, Entry, Format, Kind
from service.weights.fetch import verify
from service.weights.store import Installed, WeightsError, install

if TYPE_CHECKING:
    from torch import nn

_M = TypeVar("_M", bound="nn.Module")


@dataclass(frozen=True)
class Identity:
    """What a file is: its layout, the preset it fits, whether it carries an HRNet backbone, in words."""

    format: Format
    arch: str
    detail: str
    has_backbone: bool = False


def _preset_name(presets: Mapping[str, Any], cfg: Any, what: str) -> str:
    for name, preset in presets.items():
        if preset == cfg:
            return name
    raise WeightsError(f"a {what} file whose sizes fit no preset this project serves ({cfg})")


def _empty(factory: Callable[[], _M]) -> _M:
    """A module with allocated, uninitialised storage: a strict load then overwrites every tensor (no slow init)."""
    import torch

    with torch.device("meta"):
        module = factory()
    return module.to_empty(device="cpu")


def _identify_pstmo(path: Path, state: Mapping[str, Any]) -> Identity:
    from model.checkpoints.pstmo import infer_pstmo_config, load_pstmo_state_dict
    from model.pstmo import PSTMO, PSTMO_PRESETS

    cfg = infer_pstmo_config(state)
    arch = _preset_name(PSTMO_PRESETS, cfg, "P-STMO")
    load_pstmo_state_dict(_empty(lambda: PSTMO(cfg)), state, f"{path} (P-STMO)")  # strict: every key and shape
    return Identity(Format.PSTMO, arch, f"P-STMO, {cfg.frames} frames, {cfg.layers} TEM layers ({arch})")


def _identify_capf(path: Path, state: Mapping[str, Any]) -> Identity:
    from model.capf import CAPF_PRESETS, CAPFLifter
    from model.capf_full import CAPF
    from model.checkpoints.capf import (
        BACKBONE_PREFIX,
        infer_capf_config,
        infer_capf_lifter_config,
        lifter_state,
        load_capf_state_dict,
    )
    from model.checkpoints.common import CheckpointError, load_state_dict_strict

    lifter = lifter_state(state)
    cfg = infer_capf_lifter_config(lifter)
    arch = _preset_name(CAPF_PRESETS, cfg, "CA-PF lifter")
    detail = f"CA-PF lifter ({arch}, feature channels {list(cfg.feature_channels)})"
    if not any(k.startswith(BACKBONE_PREFIX) for k in state):
        load_state_dict_strict(_empty(lambda: CAPFLifter(cfg)), lifter, f"{path} (CA-PF lifter)")
        return Identity(Format.CAPF, arch, detail + ", lifter only")
    try:
        hrnet_cfg, _ = infer_capf_config(state)
        model = _empty(lambda: CAPF(hrnet_cfg, cfg))
    except (CheckpointError, ValueError):
        load_state_dict_strict(_empty(lambda: CAPFLifter(cfg)), lifter, f"{path} (CA-PF lifter)")
        return Identity(Format.CAPF, arch, detail + ", with a backbone that is not an HRNet (ignored)")
    load_capf_state_dict(model, state, f"{path} (CA-PF whole model)")  # strict: backbone and lifter
    widths = hrnet_cfg.stage2.num_channels[0]
    return Identity(Format.CAPF, arch, detail + f", with its HRNet-W{widths} backbone", has_backbone=True)


def _identify_hrnet(path: Path) -> Identity:
    from model.checkpoints.common import load_state_dict_strict
    from model.checkpoints.hrnet import HRNetFormat, infer_hrnet_config, read_hrnet_checkpoint, to_pose_hrnet_keys
    from model.hrnet import HRNET_PRESETS, PoseHRNet

    fmt, state = read_hrnet_checkpoint(path)
    mapped = to_pose_hrnet_keys(fmt, state)
    cfg = infer_hrnet_config({k.removeprefix("backbone."): v for k, v in mapped.items()})
    arch = _preset_name(HRNET_PRESETS, cfg, "HRNet")
    if fmt is HRNetFormat.CAPF:
        raise WeightsError(f"{path}: a CA-PF backbone without its lifter, which no catalogue entry lists")
    load_state_dict_strict(_empty(lambda: PoseHRNet(cfg)), mapped, f"{path} ({fmt} format)")  # head included
    who = "the HRNet authors'" if fmt is HRNetFormat.HRNET_AUTHORS else "mmpose's"
    return Identity(Format(fmt.value), arch, f"COCO HRNet-{arch.upper()} top-down in {who} format")


def _identify_onnx(path: Path) -> Identity:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors
        raise WeightsError(f"{path} is not a readable ONNX model ({type(e).__name__})") from e
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) < 2:
        raise WeightsError(f"{path}: an ONNX model, but not a detector with one NCHW input and dets/labels outputs")
    return Identity(Format.ONNX, "", f"ONNX detector, input {inputs[0].shape}, outputs {[o.name for o in outputs]}")


def _tensor_state(obj: Any) -> dict[str, Any]:
    """The flat key → value mapping inside a loaded checkpoint (``model`` / ``state_dict`` / bare; no ``module.``)."""
    for container in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(container), dict):
            obj = obj[container]
            break
    if not isinstance(obj, dict):
        raise WeightsError(f"not a checkpoint this project can serve: holds a {type(obj).__name__}, not a dict")
    import torch

    odd = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if odd:
        raise WeightsError(f"not a checkpoint this project can serve: entries that are not tensors: {odd[:5]}")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
"""How a PyTorch checkpoint starts: a zip archive (torch.save since 1.6) or a pickle (the legacy format)."""


def _require_torch_file(path: Path) -> None:
    """WeightsError saying what ``path`` seems to be (text, or its first bytes) when it is no PyTorch checkpoint."""
    with path.open("rb") as fh:
        head = fh.read(64)
    if head.startswith(TORCH_MAGIC):
        return
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if all(c.isprintable() or c.isspace() for c in text):
        raise WeightsError(f"{path} is not a PyTorch checkpoint: it is a text file starting {text[:40]!r}")
    raise WeightsError(f"{path} is not a PyTorch checkpoint: its first bytes are {head[:8].hex(' ')}")


def _expected_keys(entry: Entry) -> set[str] | None:
    """The parameter names a file for ``entry`` must hold, where one preset says so (P-STMO), else None."""
    if entry.format is not Format.PSTMO:
        return None
    from model.checkpoints.pstmo import project_to_official_key
    from model.pstmo import PSTMO, PSTMO_PRESETS

    preset = PSTMO_PRESETS.get(entry.arch)
    if preset is None:
        return None
    return {project_to_official_key(k) for k in _empty(lambda: PSTMO(preset)).state_dict()}  # the published names


def _listing(keys: set[str]) -> str:
    shown = ", ".join(sorted(keys)[:6])
    return f"{len(keys)}: {shown}{', …' if len(keys) > 6 else ''}"


def _check_keys(path: Path, state: Mapping[str, Any], entry: Entry) -> None:
    """Refuse a file whose keys differ from what ``entry``'s architecture holds, naming the differences."""
    expected = _expected_keys(entry)
    if expected is None:
        return
    present = set(state)
    missing, unexpected = expected - present, present - expected
    if missing or unexpected:
        parts = [f"missing keys ({_listing(missing)})"] if missing else []
        parts += [f"unexpected keys ({_listing(unexpected)})"] if unexpected else []
        raise WeightsError(
            f"{path} is not a {entry.format} {entry.arch} checkpoint as {entry.name} expects: {'; '.join(parts)}"
        )


def identify(path: Path, expected: Entry | None = None) -> Identity:
    """Recognise ``path`` (format, preset) and prove it loads strictly. ``expected``: the entry the user named
    (``add --name``); a file that does not fit it is refused naming the keys that differ from that entry's
    architecture, not the first format it was tried against. WeightsError: unreadable, unsafe, not a PyTorch
    checkpoint of a model this project serves, or keys/shapes the strict loader refuses (its message says which).
    """
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if path.suffix == ".onnx":
        return _identify_onnx(path)
    _require_torch_file(path)
    from model.checkpoints.common import CheckpointError, read_checkpoint
    from model.checkpoints.hrnet import NUMPY_SAFE_GLOBALS

    try:
        state = _tensor_state(read_checkpoint(path, extra_safe_globals=NUMPY_SAFE_GLOBALS))
        if expected is not None:
            _check_keys(path, state, expected)
        if "encoder.fc_1.weight" in state:
            return _identify_pstmo(path, state)
        if "Spatial_pos_embed" in state or any(k.startswith("volume_net.") for k in state):
            return _identify_capf(path, state)
        return _identify_hrnet(path)
    except CheckpointError as e:
        if expected is not None:
            raise WeightsError(f"not a {expected.format} checkpoint as {expected.name} expects: {e}") from e
        raise WeightsError(f"not a checkpoint this project can serve: {e}") from e


def match_entry(catalogue: Catalogue, identity: Identity, named: Entry | None) -> Entry:
    """The catalogue entry a file of ``identity`` installs as (``named``: the one the user chose). Raises
    WeightsError when no entry fits, several fit and none was named, or the named entry expects another file."""
    fits = [
        e
        for e in catalogue.entries
        if e.format is identity.format
        and (identity.format is Format.ONNX or e.arch == identity.arch)
        and (e.kind is not Kind.LIFTER_BACKBONE or identity.has_backbone)
    ]
    if named is not None:
        if named not in fits:
            expects = f"{named.format} {named.arch}".strip()
            if named.kind is Kind.LIFTER_BACKBONE:
                expects += " (whole model, with its HRNet backbone)"
            raise WeightsError(f"the file is a {identity.detail}; {named.name} expects a {expects} file")
        return named
    if len(fits) == 1:
        return fits[0]
    if not fits:
        raise WeightsError(f"the file is a {identity.detail}, which no catalogue entry lists")
    choices = ", ".join(e.name for e in fits)
    raise WeightsError(f"the file is a {identity.detail}; several entries fit: pass --name (one of {choices})")


def add_file(catalogue: Catalogue, path: Path, root: Path, name: str | None = None) -> tuple[Installed, Identity]:
    """Identify ``path``, check it against the entry's published checksum, install a copy under ``root``."""
    expected = None if name is None else catalogue.entry(name)
    identity = identify(path, expected)
    entry = match_entry(catalogue, identity, expected)
    if not entry.archive:
        verify(entry, path)  # published size / checksum describe this very file
    return install(root, entry, path, origin=f"add: {path.resolve()}"), identity
