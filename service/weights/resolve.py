"""Catalogue names in settings: ``checkpoint = "pstmo-243"`` → the installed file; ``--weights SET`` → settings.

Torch-free. The settings object is used through the attributes it has (``detector``, ``models``,
``weights_dir``, ``workers``), so this module does not import :mod:`service.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.weights.catalogue import Catalogue, load_catalogue
from service.weights.store import WeightsError, installed, not_installed_message, weights_dir

DETECTOR_PATH_FIELDS = ("checkpoint", "backbone_checkpoint", "person_detector_onnx", "rtmpose_onnx")


def resolve_path(value: Path | None, root: Path, catalogue: Catalogue, missing: list[str]) -> Path | None:
    """An existing file stays; a catalogue name becomes its installed file; anything else is left to the loader.

    A catalogue name that is not installed under ``root`` stays as it is and is appended to ``missing``.
    """
    if value is None or value.is_file() or str(value) not in catalogue.names():
        return value
    found = installed(root, str(value))
    if found is None:
        missing.append(str(value))
        return value
    return found.path


def resolve_settings_paths(settings: Any, catalogue: Catalogue | None = None) -> None:
    """Replace catalogue names in ``settings.detector`` and ``settings.models`` by installed files (in place).

    A gateway with remote workers loads no weights, so it keeps the names for the workers to resolve. With
    ``settings.allow_random_weights`` a name that is not installed stays a name: the engine's loader serves that
    network on random weights (an ONNX one exported once from its real architecture) and says so loudly.
    Raises:
        WeightsError: names in the catalogue are not installed and random weights are not allowed; the message
            names all of them and the one `pose3d weights fetch` command that installs them.
    """
    if getattr(settings, "workers", None):
        return
    cat = catalogue or load_catalogue()
    root = weights_dir(settings.weights_dir)
    missing: list[str] = []
    det = settings.detector
    det_update = {f: resolve_path(getattr(det, f), root, cat, missing) for f in DETECTOR_PATH_FIELDS}
    models = dict(settings.models)
    for name, spec in models.items():
        path = resolve_path(spec.checkpoint, root, cat, missing)
        if path != spec.checkpoint:
            models[name] = spec.model_copy(update={"checkpoint": path})
    if missing and not settings.allow_random_weights:
        hint = "; or pass --allow-random-weights to serve them on random weights (meaningless poses)"
        raise WeightsError(not_installed_message(*dict.fromkeys(missing)) + hint)
    if any(det_update[f] != getattr(det, f) for f in DETECTOR_PATH_FIELDS):
        settings.detector = det.model_copy(update=det_update)
    if models != settings.models:
        settings.models = models


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
