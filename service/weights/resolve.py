"""Catalogue names in settings: ``checkpoint = "pstmo-243"`` → the installed file (and the joint order and output
unit the checkpoint was trained with); ``--weights SET`` → settings.

Torch-free. The settings object is used through the attributes it has (``detector``, ``models``,
``weights_dir``, ``workers``), so this module does not import :mod:`service.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from service.weights.catalogue import Catalogue, load_catalogue
from service.weights.store import WeightsError, installed, not_installed_message, weights_dir

ModelT = TypeVar("ModelT", bound=BaseModel)

DETECTOR_PATH_FIELDS = ("checkpoint", "backbone_checkpoint", "person_detector_onnx", "rtmpose_onnx")


def resolve_path(value: Path | None, root: Path, catalogue: Catalogue, missing: list[str]) -> Path | None:
    """An existing file stays; a catalogue name becomes its installed file (one not installed under ``root`` stays,
    and is appended to ``missing``); anything else is left to the loader."""
    if value is None or value.is_file() or str(value) not in catalogue.names():
        return value
    found = installed(root, str(value))
    if found is None:
        missing.append(str(value))
        return value
    return found.path


LIFTER_CONVENTIONS = ("joint_order", "output_unit")
"""What a lifter entry states about how its checkpoint was trained, copied into the model's settings."""


def trained_conventions(model: str, spec: Any, catalogue: Catalogue) -> dict[str, Any]:
    """The catalogue entry's joint order and output unit for a model whose ``checkpoint`` names the entry
    (``{}`` for a file path). WeightsError when the settings contradict it (``h36m`` with ``pstmo-81-3dhp``)."""
    if spec.checkpoint is None or str(spec.checkpoint) not in catalogue.names():
        return {}
    entry = catalogue.entry(str(spec.checkpoint))
    update: dict[str, Any] = {}
    for field in LIFTER_CONVENTIONS:
        wanted, given = getattr(entry, field), getattr(spec, field)
        if field in spec.model_fields_set and given != wanted:
            raise WeightsError(
                f"models.{model}.{field} = {str(given)!r}, but checkpoint {entry.name} was trained with "
                f"{field} {str(wanted)!r}: remove the setting (the catalogue supplies it) or correct it"
            )
        if given != wanted:
            update[field] = wanted
    return update


def resolved(settings: ModelT, catalogue: Catalogue | None = None) -> ModelT:
    """A copy of ``settings`` whose ``detector`` and ``models`` name installed files instead of catalogue names (a
    start-up step, never a settings validator: settings stay pure data). A gateway with remote workers keeps the
    names for its workers; with ``allow_random_weights`` a name not installed stays a name (served on random
    weights); otherwise names not installed raise WeightsError naming all of them and the command that fetches them.
    """
    copy = settings.model_copy()
    s: Any = copy  # used through the attributes it has (see the module docstring)
    if getattr(s, "workers", None):
        return copy
    cat = catalogue or load_catalogue()
    root = weights_dir(s.weights_dir)
    missing: list[str] = []
    det = s.detector
    det_update = {f: resolve_path(getattr(det, f), root, cat, missing) for f in DETECTOR_PATH_FIELDS}
    models = dict(s.models)
    for name, spec in models.items():
        update = trained_conventions(name, spec, cat)
        path = resolve_path(spec.checkpoint, root, cat, missing)
        if path != spec.checkpoint:
            update["checkpoint"] = path
        if update:
            models[name] = spec.model_copy(update=update)
    if missing and not s.allow_random_weights:
        hint = "; or pass --allow-random-weights to serve them on random weights (meaningless poses)"
        raise WeightsError(not_installed_message(*dict.fromkeys(missing)) + hint)
    if any(det_update[f] != getattr(det, f) for f in DETECTOR_PATH_FIELDS):
        s.detector = det.model_copy(update=det_update)
    if models != s.models:
        s.models = models
    return copy


def weight_set_overrides(set_name: str, catalogue: Catalogue | None = None) -> dict[str, Any]:
    """Settings overrides (``detector`` and ``models``) that select a complete set by catalogue names (WeightsError:
    no such set)."""
    cat = catalogue or load_catalogue()
    chosen = cat.weight_set(set_name)
    detector = cat.entry(chosen.detector)
    person = cat.entry(chosen.person_detector)
    det: dict[str, Any] = {
        "arch": detector.arch,
        "checkpoint": detector.name,
        "backbone_checkpoint": chosen.backbone or None,
        "person_detector_onnx": person.name,
        "person_detector_family": person.family,
    }
    models: dict[str, Any] = {}
    for model_name, entry_name in chosen.lifters.items():
        entry = cat.entry(entry_name)
        fields = entry.model_dump(include={"arch", "frames", *LIFTER_CONVENTIONS})
        models[model_name] = {"kind": entry.lifter_kind, "checkpoint": entry.name, **fields}
    return {"detector": det, "models": models}
