"""Downloading one file over HTTP(S): resume with ``Range``, retry a dropped connection, Google Drive's
"download anyway" page, checksum verification. Torch-free.

A download is written to ``<dest>.part`` and renamed to ``dest`` only when complete, so an interrupted run
(Ctrl-C, a dropped connection, a machine going offline) resumes where it stopped the next time.
"""

from __future__ import annotations

import os
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
from rich.progress import Progress, TaskID

from service.weights.store import WeightsError

ATTEMPTS: Final = 5
_DRIVE_ID: Final = re.compile(r"/file/d/([\w-]+)")
_CONTENT_RANGE_TOTAL: Final = re.compile(r"/(\d+)\s*$")


class _Incomplete(Exception):
    """The server closed the body before ``total`` bytes arrived."""


def new_client() -> httpx.Client:
    """The HTTP client downloads use: redirects followed, generous read timeout, short connect timeout."""
    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(60.0, connect=15.0))


def _unreachable(url: str, error: Exception) -> WeightsError:
    host = urlsplit(url).netloc
    return WeightsError(
        f"cannot reach {host} ({type(error).__name__}: {error}); are you offline? "
        "Run the same command again to resume, or download the file by hand and `pose3d weights add` it"
    )


def _total(response: httpx.Response, have: int) -> int | None:
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
        if response.status_code == 200:
            have = 0  # the server ignored Range: start over
        total = _total(response, have)
        if progress is not None:
            progress.update(task, total=total, completed=have)
        with part.open("ab" if have else "wb") as f:
            for chunk in response.iter_bytes():  # as received: nothing buffered is lost when the body breaks off
                f.write(chunk)
                if progress is not None:
                    progress.advance(task, len(chunk))
        if total is not None and part.stat().st_size != total:
            raise _Incomplete(f"{part.stat().st_size} of {total} bytes")


def download(
    client: httpx.Client, url: str, dest: Path, progress: Progress | None = None, attempts: int = ATTEMPTS
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` and retrying dropped connections.
    WeightsError: unreachable host (offline), an HTTP error status, or a body that kept breaking off."""
    task = progress.add_task(dest.name, total=None) if progress is not None else TaskID(0)
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    for _ in range(attempts):
        try:
            _one_attempt(client, url, part, progress, task)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise _unreachable(url, e) from e
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ReadTimeout, _Incomplete) as e:
            last = e  # dropped mid-body: resume from what arrived
            continue
        except httpx.HTTPError as e:
            raise WeightsError(f"{url}: {type(e).__name__}: {e}") from e
        os.replace(part, dest)
        return dest
    raise WeightsError(
        f"the download of {url} broke off {attempts} times ({last}); run the same command again to resume"
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
    try:
        with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise WeightsError(f"{url}: HTTP {response.status_code} {response.reason_phrase}")
            if not response.headers.get("content-type", "").startswith("text/html"):
                return url  # the file itself: small files come without the warning page
            html = response.read().decode("utf-8", "replace")
            cookies = response.cookies
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        raise _unreachable(url, e) from e
    except httpx.HTTPError as e:
        raise WeightsError(f"{url}: {type(e).__name__}: {e}") from e
    confirmed = _confirmed_url(url, html, cookies)
    if confirmed is None:
        raise WeightsError(
            f"Google Drive answered {view_url} with a page that has no download link (quota exceeded or not "
            "shared?): open it in a browser, download the file and run `pose3d weights add FILE`"
        )
    return confirmed
