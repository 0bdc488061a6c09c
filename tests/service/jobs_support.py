"""Helpers for the jobs tests: submit, poll progress, read NDJSON results incrementally."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import numpy as np

NDJSON = "application/x-ndjson"


def submit_clip(client: httpx.Client, clip: bytes, **fields: str) -> dict[str, Any]:
    response = client.post("/v1/jobs", files={"file": ("clip.mp4", clip, "video/mp4")}, data=fields)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/v1/jobs/{body['job_id']}"
    return body


def read_ndjson(client: httpx.Client, job_id: str, after: int | None = None, limit: int | None = None) -> list[Any]:
    """Lines of the job's NDJSON results (past ``after``), stopping after ``limit`` lines (closing the stream)."""
    params = {} if after is None else {"after": str(after)}
    lines: list[Any] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/results", params=params, headers={"Accept": NDJSON}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith(NDJSON)
        for line in response.iter_lines():
            if not line:
                continue
            lines.append(json.loads(line))
            if limit is not None and len(lines) >= limit:
                break
    return lines


def wait_state(client: httpx.Client, job_id: str, states: set[str], timeout_s: float = 300.0) -> list[dict[str, Any]]:
    """Poll the job until its state is one of ``states``; returns every status seen."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job_id}")
        assert status.status_code == 200, status.text
        seen.append(status.json())
        if seen[-1]["state"] in states:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not in {states} after {timeout_s} s: {seen[-1]}")


def assert_same_frames(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Same frames (indices, people, tracks) with the same poses up to float noise of batch composition."""
    assert [f["frame_index"] for f in got] == [f["frame_index"] for f in expected]
    for a, b in zip(got, expected, strict=True):
        assert a["timestamp_s"] == b["timestamp_s"]
        assert [p["track_id"] for p in a["people"]] == [p["track_id"] for p in b["people"]]
        for pa, pb in zip(a["people"], b["people"], strict=True):
            np.testing.assert_allclose(pa["keypoints_2d"], pb["keypoints_2d"], atol=1e-3)
            np.testing.assert_allclose(pa["keypoints_3d"], pb["keypoints_3d"], atol=1e-4)
