"""The tiny-model settings file for the ``pose3d eval`` tests (holds no tests); the synthetic data comes from
:mod:`service.evaluation.synthetic`."""

from __future__ import annotations

from pathlib import Path

TINY_CONFIG = """\
allow_random_weights = true
default_image_model = "capf"
default_clip_model = "pstmo"

[detector]
arch = "hrnet-micro"
flip_test = false

[models.pstmo]
kind = "pstmo"
arch = "pstmo-tiny-9"
frames = 9
stride = 2
flip_test = true

[models.capf]
kind = "capf"
arch = "capf-tiny"
frames = 1
flip_test = false

[engine]
max_batch_size = 16
max_delay_ms = 2.0
torch_threads = 1
request_timeout_s = 3600
"""


def tiny_config(folder: Path, name: str = "tiny", flip_test: bool = True) -> Path:
    """A settings file of tiny random-weight models (P-STMO over 9 frames, with flip test unless ``flip_test`` is
    false, and CA-PF single frame on hrnet-micro features)."""
    path = folder / f"{name}.toml"
    path.write_text(TINY_CONFIG.replace("flip_test = true", f"flip_test = {str(flip_test).lower()}"))
    return path
