"""Settings profiles shipped with the package: ``pose3d serve --profile NAME`` reads ``NAME.toml`` beside this
module as its settings file (the same format as ``--config``). ``default``: the faithful models, as the papers
run them; ``realtime``: RTMPose + a short causal P-STMO for a CPU (see README, "Real time on a CPU")."""

from __future__ import annotations

from pathlib import Path
from typing import Final

PROFILES_DIR: Final = Path(__file__).parent


def profile_names() -> list[str]:
    """The shipped profiles' names, sorted."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def profile_path(name: str) -> Path:
    """The settings file of profile ``name``. Raises ValueError naming the known profiles."""
    if name not in profile_names():
        raise ValueError(f"unknown profile {name!r}; known: {', '.join(profile_names())}")
    return PROFILES_DIR / f"{name}.toml"
