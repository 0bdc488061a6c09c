"""Catalogue names in settings: ``checkpoint = "pstmo-243"`` → the installed file; ``--weights SET`` → settings.

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


def resolve_path(value: Path | None, root: Path, catalogue: Catalogue) -> Path | None:
    """An existing file stays; a catalogue name becomes its installed file; anything else is left to the loader.

    Raises:
        WeightsError: ``value`` names a catalogue entry that is not installed under ``root``.
    """
    if value is None or value.is_file() or str(value) not in catalogue.names():
        return value
    found = installed(root, str(value))
    if found is None:
        raise WeightsError(not_installed_message(str(value)))
    return found.path


def resolve_settings_paths(settings: Any, catalogue: Catalogue | None = None) -> None:
    """Replace catalogue names in ``settings.detector`` and ``settings.models`` by installed files (in place).

    A gateway with remote workers loads no weights, so it keeps the names for the workers to resolve.
    Raises:
        WeightsError: a name is in the catalogue but not installed (the message names `pose3d weights fetch`).
    """
    if getattr(settings, "workers", None):
        return
    cat = catalogue or load_catalogue()
    root = weights_dir(settings.weights_dir)
    det = settings.detector
    det_update = {f: resolve_path(getattr(det, f), root, cat) for f in DETECTOR_PATH_FIELDS}
    if any(det_update[f] != getattr(det, f) for f in DETECTOR_PATH_FIELDS):
        settings.detector = det.model_copy(update=det_update)
    models = dict(settings.models)
    for name, spec in models.items():
        path = resolve_path(spec.checkpoint, root, cat)
        if path != spec.checkpoint:
            models[name] = spec.model_copy(update={"checkpoint": path})
    if models != settings.models:
        settings.models = models


def resolved(settings: ModelT) -> ModelT:
    """A copy of ``settings`` with catalogue names replaced by installed files: a step of start-up (the
    commands call it once the settings are read), never a settings validator — settings stay pure data.

    Raises:
        WeightsError: a name is in the catalogue but not installed.
    """
    copy = settings.model_copy()
    resolve_settings_paths(copy)
    return copy


def weight_set_overrides(set_name: str, catalogue: Catalogue | None = None) -> dict[str, Any]:
    """Settings overrides (``detector`` and ``models``) that select a complete set by catalogue names.

    Raises:
        WeightsError: no such set.
    """
    cat = catalogue or load_catalogue()
    try:
        chosen = cat.weight_set(set_name)
    except KeyError as e:
        raise WeightsError(str(e.args[0])) from e
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
        models[model_name] = {
            "kind": entry.lifter_kind,
            "arch": entry.arch,
            "frames": entry.frames,
            "checkpoint": entry.name,
        }
    return {"detector": det, "models": models}
