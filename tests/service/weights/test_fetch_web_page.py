"""Google Drive can answer the confirmed download address with a web page again ("too many users have viewed or
downloaded this file recently"). For an entry without a published checksum (trust on first use), that page was
installed as the checkpoint; a page is never a weights file, so it is refused and nothing is kept."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from service.weights.catalogue import Fetch
from service.weights.fetch import fetch_entry
from service.weights.store import DOWNLOADS, WeightsError, installed
from tests.service.weights.local_http import DRIVE_QUOTA_PAGE, FileServer, Served
from tests.service.weights.test_fetch import BODY, entry

FORM_TO_QUOTA = """<html><body><form id="download-form" action="/quota" method="get">
<input type="hidden" name="id" value="{id}"><input type="hidden" name="confirm" value="t"></form></body></html>"""


def test_a_web_page_instead_of_the_file_is_refused(server: FileServer, client: httpx.Client, tmp_path: Path) -> None:
    server.drive["capf"] = (FORM_TO_QUOTA, BODY)
    server.files["/quota"] = Served(DRIVE_QUOTA_PAGE.encode(), content_type="text/html; charset=utf-8")
    wanted = entry(server.url("/file/d/capf/view"), fetch=Fetch.GDRIVE)  # no size, no checksum published
    with pytest.raises(WeightsError, match=r"web page") as info:
        fetch_entry(client, wanted, tmp_path)
    assert "\n" not in str(info.value)
    assert installed(tmp_path, "test-pstmo") is None
    assert list((tmp_path / DOWNLOADS).iterdir()) == []
