"""``pose3d weights fetch NAME``: download a catalogue entry, verify it, unpack it, install it. Torch-free.

A download is written to ``<dest>.part`` and renamed to ``dest`` only when complete, so an interrupted run resumes
(HTTP ``Range``) where it stopped; dropped connections are retried and Google Drive's "download anyway" page is
followed. Downloads stay in ``<weights dir>/.downloads`` because one archive can hold several entries (P-STMO's).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from html import unescape
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import IO, Final
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
from rich.progress import Progress, TaskID

from service.weights.catalogue import Entry, Fetch, Format
from service.weights.store import DOWNLOADS, Installed, WeightsError, install, installed, sha256_file

ATTEMPTS: Final = 5
_DRIVE_ID: Final = re.compile(r"/file/d/([\w-]+)")
_CONTENT_RANGE_TOTAL: Final = re.compile(r"/(\d+)\s*$")


class _Incomplete(Exception):
    """The server closed the body before ``total`` bytes arrived."""


class _BadArchive(WeightsError):
    """The download is not a readable zip/tar archive (an error page, a truncated or corrupt file)."""


_ARCHIVE_READ_ERRORS: Final = (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error)


def new_client() -> httpx.Client:
    """The HTTP client downloads use: redirects followed, generous read timeout, short connect timeout."""
    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0, connect=15.0))


@contextmanager
def _http_errors(url: str) -> Iterator[None]:
    """httpx errors inside as one-line WeightsErrors: an unreachable host (offline?), or any other failure."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        raise WeightsError(
            f"cannot reach {urlsplit(url).netloc} ({type(e).__name__}: {e}); are you offline? "
            "Run the same command again to resume, or download the file by hand and `pose3d weights add` it"
        ) from e
    except httpx.HTTPError as e:
        raise WeightsError(f"{url}: {type(e).__name__}: {e}") from e


def _total(response: httpx.Response) -> int | None:
    """The full file size from ``Content-Range`` (206) or ``Content-Length`` (200), when the server says."""
    if response.status_code == 206:
        m = _CONTENT_RANGE_TOTAL.search(response.headers.get("content-range", ""))
        return int(m.group(1)) if m else None
    length = response.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


def _one_attempt(client: httpx.Client, url: str, part: Path, progress: Progress | None, task: TaskID) -> None:
    """Fetch what ``part`` lacks (resuming with ``Range``) with ``progress`` in bytes on ``task``; raises
    _Incomplete/httpx errors on a broken body."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and have:
            return  # the server has nothing past what we hold: the file is complete
        if response.status_code not in (200, 206):
            raise WeightsError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
        if response.headers.get("content-type", "").lower().startswith("text/html"):
            raise WeightsError(
                f"{urlsplit(url).netloc} answered a web page instead of the file (quota exceeded, a sign-in or an "
                "error page?); nothing was installed: try again later, or download it in a browser and "
                "`pose3d weights add FILE`"
            )
        if response.status_code == 200:
            have = 0  # the server ignored Range: start over
        total = _total(response)
        if progress is not None:
            progress.update(task, total=total, completed=have)
        with part.open("ab" if have else "wb") as f:
            for chunk in response.iter_bytes():  # as received: nothing buffered is lost when the body breaks off
                f.write(chunk)
                if progress is not None:
                    progress.advance(task, len(chunk))
        if total is not None and part.stat().st_size != total:
            raise _Incomplete(f"{part.stat().st_size} of {total} bytes")


def download(client: httpx.Client, url: str, dest: Path, progress: Progress | None = None) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` and retrying dropped connections.
    WeightsError: unreachable host (offline), an HTTP error status, or a body that kept breaking off."""
    task = progress.add_task(dest.name, total=None) if progress is not None else TaskID(0)
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for _ in range(ATTEMPTS):
        with _http_errors(url):
            try:
                _one_attempt(client, url, part, progress, task)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout, _Incomplete) as e:
                last = e  # dropped mid-body: resume from what arrived
                continue
        os.replace(part, dest)
        return dest
    raise WeightsError(
        f"the download of {url} broke off {ATTEMPTS} times ({last}); run the same command again to resume"
    )


class _DrivePage(HTMLParser):
    """Collects the "download anyway" form (action + hidden inputs) and links carrying ``confirm=``."""

    def __init__(self) -> None:
        super().__init__()
        self.form_action: str | None = None
        self.inputs: dict[str, str] = {}
        self.confirm_links: list[str] = []
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and ("download" in a.get("id", "") or "download" in a.get("action", "")):
            self.form_action, self._in_form = a.get("action", ""), True
        elif tag == "input" and self._in_form and a.get("name"):
            self.inputs[a["name"]] = a.get("value", "")
        elif tag == "a" and "confirm=" in a.get("href", ""):
            self.confirm_links.append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def drive_download_url(view_url: str) -> str:
    """``https://drive.google.com/file/d/ID/view`` (or ``…?id=ID``) → ``https://<same host>/uc?export=download&id=ID``."""
    parts = urlsplit(view_url)
    m = _DRIVE_ID.search(parts.path)
    file_id = m.group(1) if m else parse_qs(parts.query).get("id", [""])[0]
    if not file_id:
        raise WeightsError(f"{view_url} is not a Google Drive file address (no /file/d/ID/ or id=)")
    return f"{parts.scheme}://{parts.netloc}/uc?{urlencode({'export': 'download', 'id': file_id})}"


def _confirmed_url(page_url: str, html: str, cookies: httpx.Cookies) -> str | None:
    page = _DrivePage()
    page.feed(html)
    if page.form_action is not None:
        action = urljoin(page_url, unescape(page.form_action))
        return f"{action}?{urlencode(page.inputs)}" if page.inputs else action
    if page.confirm_links:
        return urljoin(page_url, unescape(page.confirm_links[0]))
    token = next((v for k, v in cookies.items() if k.startswith("download_warning")), None)
    return f"{page_url}&{urlencode({'confirm': token})}" if token else None


def resolve_drive(client: httpx.Client, view_url: str) -> str:
    """The address that serves a Google Drive file's bytes, following the "can't scan for viruses" page.
    WeightsError: unreachable, or Drive answered a page with no way on (quota exceeded, private file)."""
    url = drive_download_url(view_url)
    with _http_errors(url), client.stream("GET", url) as response:
        if response.status_code != 200:
            raise WeightsError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
        if not response.headers.get("content-type", "").startswith("text/html"):
            return url  # the file itself: small files come without the warning page
        html = response.read().decode("utf-8", "replace")
        cookies = response.cookies
    confirmed = _confirmed_url(url, html, cookies)
    if confirmed is None:
        raise WeightsError(
            f"Google Drive answered {view_url} with a page that has no download link (quota exceeded or not "
            "shared?): open it in a browser, download the file and run `pose3d weights add FILE`"
        )
    return confirmed


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


def check_checkpoint(entry: Entry, path: Path) -> None:
    """Refuse (WeightsError) a download of ``entry`` that nothing published describes (no size, no checksum) and
    that is no whole PyTorch checkpoint: a body whose end was only the connection's close may be cut short. A zip
    (``torch.save`` since 1.6) must pass its CRC check; a legacy pickle must load (torch, imported only then)."""
    if entry.archive or entry.format is Format.ONNX or entry.size or entry.sha256 or entry.sha256_prefix:
        return  # archives are checked as they are unpacked; published numbers are checked by :func:`verify`
    with path.open("rb") as fh:
        head = fh.read(4)
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except _ARCHIVE_READ_ERRORS as e:
            raise _cut_short(entry, e) from e
        if bad is not None:
            raise _cut_short(entry, zipfile.BadZipFile(f"member {bad!r} fails its CRC check"))
        return
    if head[:1] == b"\x80":
        from model.checkpoints.common import CheckpointError, read_checkpoint

        try:
            read_checkpoint(path)
        except CheckpointError as e:
            raise _cut_short(entry, e) from e
        return
    raise WeightsError(
        f"{entry.name}: the download is no PyTorch checkpoint (it starts {head.hex(' ')}); not installed"
    )


def _cut_short(entry: Entry, error: Exception) -> WeightsError:
    return WeightsError(
        f"{entry.name}: the download is no whole checkpoint ({type(error).__name__}: {error}): cut short or "
        "corrupt; not installed: run the same command again"
    )


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
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir()]
                return _copy_out(zf.open(_pick(names, member, archive)), out)
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = {m.name: m for m in tf.getmembers() if m.isfile()}
                return _copy_out(tf.extractfile(members[_pick(list(members), member, archive)]), out)
    except _ARCHIVE_READ_ERRORS as e:
        raise _BadArchive(
            f"{archive.name} is corrupt ({type(e).__name__}: {e}); cannot take {member!r} out of it"
        ) from e
    raise _BadArchive(f"{archive.name} is neither a zip nor a tar archive; cannot take {member!r} out of it")


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


def _wait_for_lock(fd: int) -> None:
    """Block until the other fetch holding the lock on ``fd`` (another process or thread) is done."""
    fcntl.flock(fd, fcntl.LOCK_EX)


@contextmanager
def _one_fetch_at_a_time(downloads: Path) -> Iterator[None]:
    """Hold an exclusive lock on the ``downloads`` directory itself (no lock file is left behind): two fetches
    sharing a weights directory (two terminals, two sets with an entry in common) never write into one ``.part``;
    the second waits, then finds the first one's work."""
    downloads.mkdir(parents=True, exist_ok=True)
    fd = os.open(downloads, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _wait_for_lock(fd)
        yield
    finally:
        os.close(fd)  # releases the lock


def fetch_entry(client: httpx.Client, entry: Entry, root: Path, progress: Progress | None = None) -> Installed:
    """Download, verify, unpack and install ``entry`` under ``root`` (an entry another fetch installed while this
    one waited for it is returned as it is). WeightsError: not fetchable (folder / unpublished), offline, HTTP
    error, checksum mismatch, bad archive."""
    if not entry.fetchable:
        raise WeightsError(unavailable_message(entry))
    dl = root / DOWNLOADS / download_key(entry.url)
    with _one_fetch_at_a_time(dl.parent):
        found = installed(root, entry.name)
        return found if found is not None else _fetch_locked(client, entry, root, dl, progress)


def _fetch_locked(client: httpx.Client, entry: Entry, root: Path, dl: Path, progress: Progress | None) -> Installed:
    if not dl.is_file():
        url = resolve_drive(client, entry.url) if entry.fetch is Fetch.GDRIVE else entry.url
        download(client, url, dl, progress)
    try:
        verify(entry, dl)
        check_checkpoint(entry, dl)
    except WeightsError:
        dl.unlink(missing_ok=True)  # a wrong file must not be reused by the next attempt
        raise
    if not entry.archive:
        return install(root, entry, dl, origin=entry.url, move=True)
    with tempfile.TemporaryDirectory(dir=dl.parent) as tmp:
        try:
            member = extract_member(dl, entry.file, Path(tmp))
        except _BadArchive:
            dl.unlink(missing_ok=True)  # an error page or a broken file: the next run downloads it again
            raise
        return install(root, entry, member, origin=f"{entry.url} ({entry.file})", move=True)
