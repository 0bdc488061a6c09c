"""No input stalls the event loop: while a 60 MB JSON body (under the body limit, over the frame limit) is being
parsed, /healthz and small requests keep being answered (issue 10: before, a 36 MB body froze /healthz for 16 s).

No clock is involved: the parse in the helper process is held at a gate the test opens only after the service has
answered /healthz and a small pose request *while the parse was still running*. A parse on the event loop's thread
would hold those answers back until the gate opens, which never happens: the test would fail on its client timeout.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api import json_offload
from service.config import LimitSettings
from tests.service.rest_support import LiveServer, live_server, tiny_settings

BODY_MB = 60


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    limits = LimitSettings(max_body_bytes=(BODY_MB + 20) * 1024 * 1024)
    with live_server(tiny_settings(limits=limits)) as server:
        yield server


def big_body(megabytes: int) -> bytes:
    """A keypoints JSON document of about ``megabytes`` MB: ~1 kB per frame, far more frames than allowed."""
    joint = "[123.456789012345, 234.567890123456, 0.912345678901234]"
    frame = "[" + ", ".join([joint] * 17) + "]"
    count = megabytes * 1024 * 1024 // (len(frame) + 2)
    return ('{"image_size": [640, 480], "keypoints_2d": [' + ", ".join([frame] * count) + "]}").encode()


def gated_parse(gate_dir: str, raw: bytes, limits: LimitSettings) -> tuple[str, Any]:
    """In the helper process: say the parse started, wait for the test to open the gate, then parse as usual."""
    gate = Path(gate_dir)
    (gate / "started").touch()
    while not (gate / "open").exists():
        time.sleep(0.01)
    return json_offload._parse_slim(raw, limits)


def wait_for(path: Path, poster: subprocess.Popen[bytes]) -> None:
    """Until ``path`` exists; fails if the posting process ended first (its request never reached the parse)."""
    while not path.exists():
        assert poster.poll() is None, poster.communicate()
        time.sleep(0.01)


def small_pose(client: httpx.Client) -> None:
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    response = client.post("/v1/pose3d", json={"keypoints_2d": pose, "image_size": [640, 480]})
    assert response.status_code == 200, response.text


POST = """
import sys, httpx
with open(sys.argv[2], "rb") as fh:
    body = fh.read()
r = httpx.post(sys.argv[1] + "/v1/pose3d", content=body, headers={"content-type": "application/json"}, timeout=600)
print(r.status_code, r.json()["type"])
"""


def test_a_60_mb_json_body_does_not_stall_healthz(
    live: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = big_body(BODY_MB)
    assert len(body) >= BODY_MB * 1000 * 1000
    path = tmp_path / "body.json"
    path.write_bytes(body)
    del body
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setattr(json_offload, "_parse_slim", functools.partial(gated_parse, str(gate)))
    # the client runs in its own process: its sending competes with nothing on the server's loop
    poster = subprocess.Popen([sys.executable, "-c", POST, live.url, str(path)], stdout=subprocess.PIPE)
    try:
        wait_for(gate / "started", poster)
        with live.client(timeout_s=120) as client:
            for _ in range(5):
                assert client.get("/healthz").status_code == 200
            small_pose(client)
        assert poster.poll() is None, "the big request ended before its parse was let go"
    finally:
        (gate / "open").touch()
    out, _ = poster.communicate(timeout=600)
    status, problem_type = out.decode().split()
    assert status == "413"
    assert problem_type == "urn:pose3d:problem:payload-too-large"
