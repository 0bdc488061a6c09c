"""Random-weight ONNX networks for catalogue entries that are not installed (``allow_random_weights`` only).

A profile such as ``realtime`` names ONNX weights by catalogue name (``rtmpose_onnx = "rtmpose-t"``,
``person_detector_onnx = "yolox-tiny-person"``). When such a file is missing and random weights are allowed, the
loader serves the entry's real architecture (:mod:`model.rtmpose_net`, :mod:`model.yolox_net`) with random
weights instead: exported to ONNX once, cached as ``<weights dir>/random/<name>.onnx`` (seed 0, so every process
that exports it gets the same file), and said as loudly as a torch model on random weights.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Final

from model import rtmpose_net, yolox_net
from service.errors import Unavailable

log = logging.getLogger(__name__)

Exporter = Callable[[Path], Path]


RANDOM_ONNX: Final[Mapping[str, Exporter]] = {
    "rtmpose-t": partial(rtmpose_net.export, "t"),
    "rtmpose-s": partial(rtmpose_net.export, "s"),
    "rtmpose-m": partial(rtmpose_net.export, "m"),
    "yolox-tiny-person": partial(yolox_net.export, "tiny"),
    "yolox-m-person": partial(yolox_net.export, "m"),
}
"""Catalogue name → exporter of its architecture with random weights (``input`` and outputs as published)."""


def random_onnx(what: str, name: str, cache_dir: Path) -> Path:
    """The random-weight ONNX file (in ``cache_dir/random/``, exported on first use) standing in for the catalogue
    entry ``name`` that is not installed, logged loudly naming ``what`` (``"the 2D detector"``). Raises Unavailable
    when no architecture of ours stands for ``name``."""
    exporter = RANDOM_ONNX.get(name)
    if exporter is None:
        known = ", ".join(RANDOM_ONNX)
        raise Unavailable(f"{what}: {name!r} is not installed and has no random-weight stand-in (known: {known})")
    path = cache_dir / "random" / f"{name}.onnx"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        log.warning("%s: exporting %s's architecture with RANDOM WEIGHTS to %s (once)", what, name, path)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on a graph we own are not the user's concern
            exporter(Path(tmp) / path.name)
            os.replace(Path(tmp) / path.name, path)  # atomic: a concurrent reader sees no half-written file
    log.warning(
        "%s serves RANDOM WEIGHTS (%s is not installed; `pose3d weights fetch %s`): its outputs are meaningless",
        what,
        name,
        name,
    )
    return path
