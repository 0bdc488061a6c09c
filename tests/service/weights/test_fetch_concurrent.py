"""Two ``pose3d weights fetch`` runs sharing one weights directory (two terminals, or two sets with an entry in
common) download one ``.downloads`` file: the second waits for the first instead of writing into the same
``.part``, and both end with the entry installed."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from service.weights import fetch
from service.weights.fetch import fetch_entry, new_client
from service.weights.store import Installed, installed
from tests.service.weights.local_http import Pause, Served, file_server
from tests.service.weights.test_fetch import entry

BODY = os.urandom(400_000)


class Waited(Exception):
    """Raised instead of waiting for the other fetch (no test waits on a clock)."""


def test_a_second_fetch_of_the_same_download_waits_for_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with file_server() as server:
        pause = Pause(after=150_000)
        server.files["/w.pth"] = Served(BODY, pause=pause)
        wanted = entry(server.url("/w.pth"), sha256=hashlib.sha256(BODY).hexdigest(), size=len(BODY))
        first: list[Installed | BaseException] = []

        def run_first() -> None:
            try:
                with new_client() as client:
                    first.append(fetch_entry(client, wanted, tmp_path))
            except BaseException as exc:
                first.append(exc)

        thread = threading.Thread(target=run_first)
        thread.start()
        try:
            assert pause.reached.wait(60.0)  # the first fetch is part-way through the body
            with monkeypatch.context() as patched:
                patched.setattr(fetch, "_wait_for_lock", _refuse_to_wait, raising=False)
                with new_client() as client, pytest.raises(Waited):
                    fetch_entry(client, wanted, tmp_path)  # it would wait here: it does not download beside it
        finally:
            pause.resume.set()
            thread.join()
        (done,) = first
        assert isinstance(done, Installed), done
        assert done.path.read_bytes() == BODY
        with new_client() as client:  # the second run again, once the first is done: the installed entry
            again = fetch_entry(client, wanted, tmp_path)
        assert again.path.read_bytes() == BODY
        assert installed(tmp_path, "test-pstmo") == again
        assert [r for _, r in server.requests] == [None]  # one download in all


def _refuse_to_wait(*_: object) -> None:
    raise Waited
