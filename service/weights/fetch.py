"""``pose3d weights fetch NAME``: download a catalogue entry, verify it, unpack it, install it. Torch-free.

Downloads stay in ``<weights dir>/.downloads`` because one archive can hold several entries (P-STMO's Drive file).
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from service.weights.catalogue import Entry, Fetch
from service.weights.download import download, resolve_drive
from service.weights.store import DOWNLOADS, Installed, WeightsError, install, sha256_file

if TYPE_CHECKING:
    from rich.progress import Progress


def verify(entry: Entry, path: Path) -> str:
    """Check ``path`` against the entry's published size and checksums (WeightsError naming the difference);
    returns its sha256."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise WeightsError(f"{entry.name}: downloaded {size} bytes, the publisher says {entry.size}; not installed")
    digest = sha256_file(path)
    if entry.sha256 and digest != entry.sha256:
        raise WeightsError(f"{entry.name}: sha256 {digest} differs from the published {entry.sha256}; not installed")
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        raise WeightsError(
            f"{entry.name}: sha256 {digest[:16]}… does not start with the published {entry.sha256_prefix}; "
            "not installed"
        )
    return digest


def _pick(names: list[str], member: str, archive: Path) -> str:
    found = [n for n in names if PurePosixPath(n).name == member]
    if len(found) != 1:
        listing = ", ".join(names[:12]) + (" …" if len(names) > 12 else "")
        what = "no" if not found else f"{len(found)}"
        raise WeightsError(f"{archive.name} holds {what} file named {member!r} (it holds: {listing})")
    return found[0]


def _copy_out(stream: IO[bytes] | None, out: Path) -> Path:
    if stream is None:
        raise WeightsError(f"{out.name}: archive member is not a regular file")
    with stream, out.open("wb") as f:
        shutil.copyfileobj(stream, f)
    return out


def extract_member(archive: Path, member: str, out_dir: Path) -> Path:
    """Copy the one member whose base name is ``member`` out of a zip or tar archive to ``out_dir/member`` (archive
    paths are never used as paths here). WeightsError: not a zip/tar archive, or no / several such members."""
    out = out_dir / member
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
            return _copy_out(zf.open(_pick(names, member, archive)), out)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = {m.name: m for m in tf.getmembers() if m.isfile()}
            return _copy_out(tf.extractfile(members[_pick(list(members), member, archive)]), out)
    raise WeightsError(f"{archive.name} is neither a zip nor a tar archive; cannot take {member!r} out of it")


def download_key(url: str) -> str:
    """A stable file name for a URL's download: a short hash plus the URL's own last path part."""
    tail = PurePosixPath(urlsplit(url).path).name or "download"
    return f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{tail}"


def unavailable_message(entry: Entry) -> str:
    """Why a folder / unpublished entry cannot be fetched, and what to do instead."""
    if entry.fetch is Fetch.FOLDER:
        return (
            f"{entry.name} is published in a folder ({entry.url}), which cannot be fetched as one file: "
            f"download {entry.file} from it in a browser, then run `pose3d weights add {entry.file} --name {entry.name}`"
        )
    return f"{entry.name} is not published ({entry.notes or 'no download address'}); `pose3d weights add` your own file"


def fetch_entry(client: httpx.Client, entry: Entry, root: Path, progress: Progress | None = None) -> Installed:
    """Download, verify, unpack and install ``entry`` under ``root``. WeightsError: not fetchable (folder /
    unpublished), offline, HTTP error, checksum mismatch, bad archive."""
    if not entry.fetchable:
        raise WeightsError(unavailable_message(entry))
    dl = root / DOWNLOADS / download_key(entry.url)
    if not dl.is_file():
        url = resolve_drive(client, entry.url) if entry.fetch is Fetch.GDRIVE else entry.url
        download(client, url, dl, progress)
    try:
        verify(entry, dl)
    except WeightsError:
        dl.unlink(missing_ok=True)  # a wrong file must not be reused by the next attempt
        raise
    if not entry.archive:
        return install(root, entry, dl, origin=entry.url, move=True)
    with tempfile.TemporaryDirectory(dir=dl.parent) as tmp:
        member = extract_member(dl, entry.file, Path(tmp))
        return install(root, entry, member, origin=f"{entry.url} ({entry.file})", move=True)
