"""Where weights live on disk: ``<weights dir>/<name>/<file>`` plus ``<name>/installed.json``; downloads in progress
and archives in ``<weights dir>/.downloads``. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from service.weights.catalogue import Entry
from service.weights.catalogue import WeightsError as WeightsError  # defined beside the catalogue that raises it

RECORD: Final = "installed.json"
DOWNLOADS: Final = ".downloads"


def cache_home(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/pose3d``, or ``~/.cache/pose3d`` when XDG_CACHE_HOME is unset or relative."""
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "pose3d"


def weights_dir(configured: Path | None) -> Path:
    """The configured directory, else ``<cache_home>/weights`` (:func:`cache_home` of the process environment)."""
    if configured is not None:
        return configured.expanduser()
    return cache_home(os.environ) / "weights"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` (mode 0600), flush it to disk, rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@dataclass(frozen=True)
class Installed:
    """An installed entry: its file and what was recorded when it was installed."""

    name: str
    path: Path
    sha256: str
    size: int
    origin: str  # the URL it was fetched from, or "add: <original path>"


def installed(root: Path, name: str) -> Installed | None:
    """The installed entry ``name`` under ``root``, or None (also when its file has gone)."""
    record = root / name / RECORD
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        path = root / name / str(data["file"])
        info = Installed(name, path, str(data["sha256"]), int(data["size"]), str(data.get("origin", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if path.is_file() else None


def install(root: Path, entry: Entry, source: Path, origin: str, move: bool = False) -> Installed:
    """Copy (or move) ``source`` to ``<root>/<entry.name>/<entry.file>`` atomically, replacing an earlier
    installation, and record its sha256."""
    target_dir = root / entry.name
    target_dir.mkdir(parents=True, exist_ok=True)
    staging = target_dir / f".{entry.file}.incoming"
    if move:
        shutil.move(str(source), staging)
    else:
        shutil.copyfile(source, staging)
    digest, size = sha256_file(staging), staging.stat().st_size
    os.replace(staging, target_dir / entry.file)
    record = {"name": entry.name, "file": entry.file, "sha256": digest, "size": size, "origin": origin}
    record["installed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write(target_dir / RECORD, (json.dumps(record, indent=2) + "\n").encode())
    return Installed(entry.name, target_dir / entry.file, digest, size, origin)


def not_installed_message(*names: str) -> str:
    """One line naming every missing catalogue entry and the one command that installs them all."""
    quoted = ", ".join(repr(n) for n in names)
    return f"weights {quoted} are not installed: run `pose3d weights fetch {' '.join(names)}` (or `pose3d weights add FILE`)"
