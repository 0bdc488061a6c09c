"""``python -m model.conformance FILE [FILE ...]``: reproduce conformance vectors.

A vector file (``torch.load(weights_only=True)``) is a dict with ``state_dict``, ``inputs``,
``outputs``, ``config`` and ``notes``. :func:`detect_kind` recognises the model from ``config``;
the runner of that kind (a typed mapping in :mod:`model.conformance.registry`) builds the
project's model from the config, loads the state_dict through the project's key map, runs every
input and returns the outputs by name; :func:`compare` checks them against the stored ones.
"""

from model.conformance.core import ConformanceError, OutputCheck, check_file, compare, detect_kind

__all__ = ["ConformanceError", "OutputCheck", "check_file", "compare", "detect_kind"]
