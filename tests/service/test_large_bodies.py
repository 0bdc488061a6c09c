"""No input stalls the event loop: while a 60 MB JSON body (under the body limit, over the frame limit) is parsed,
no /healthz answer takes longer than 10× the time a small request takes on the idle service (issue 10's bar;
before, a 36 MB body froze /healthz for 16 s)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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


def healthz_seconds(client: httpx.Client) -> float:
    started = time.perf_counter()
    assert client.get("/healthz").status_code == 200
    return time.perf_counter() - started


def small_request_seconds(client: httpx.Client) -> float:
    """One frame of keypoints through POST /v1/pose3d (the tiny lifter)."""
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    started = time.perf_counter()
    response = client.post("/v1/pose3d", json={"keypoints_2d": pose, "image_size": [640, 480]})
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


POST = """
import sys, httpx
with open(sys.argv[2], "rb") as fh:
    body = fh.read()
r = httpx.post(sys.argv[1] + "/v1/pose3d", content=body, headers={"content-type": "application/json"}, timeout=300)
print(r.status_code, r.json()["type"])
"""


def test_a_60_mb_json_body_does_not_stall_healthz(live: LiveServer, tmp_path: Path) -> None:
    body = big_body(BODY_MB)
    assert len(body) >= BODY_MB * 1000 * 1000
    path = tmp_path / "body.json"
    path.write_bytes(body)
    del body
    with live.client(timeout_s=300) as client:
        for _ in range(5):
            healthz_seconds(client)  # warm the connection
        baseline = sorted(small_request_seconds(client) for _ in range(7))[3]  # the median of 7
        # the client runs in its own process, so that only the server's work competes with /healthz here
        poster = subprocess.Popen([sys.executable, "-c", POST, live.url, str(path)], stdout=subprocess.PIPE)
        during: list[float] = []
        while poster.poll() is None:
            during.append(healthz_seconds(client))
        out, _ = poster.communicate()
    status, problem_type = out.decode().split()
    assert status == "413"
    assert problem_type == "urn:pose3d:problem:payload-too-large"
    assert len(during) >= 5, during
    assert max(during) <= 10 * baseline, (max(during), baseline, sorted(during)[-5:])
