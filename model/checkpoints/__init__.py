"""Loading released checkpoint files: safe unpickling, strict key checks, one key map per format.

Format-specific loaders live beside this module (``pstmo``, ``capf``, ``hrnet``); the shared
mechanics are in :mod:`model.checkpoints.common`.
"""

from model.checkpoints.common import (
    CheckpointError,
    load_state_dict_strict,
    read_checkpoint,
    sha256_of_file,
    strip_prefix,
)

__all__ = ["CheckpointError", "load_state_dict_strict", "read_checkpoint", "sha256_of_file", "strip_prefix"]
