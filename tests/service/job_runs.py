"""The job runner tests' shared pieces: a keypoints job submitted straight to a store, and one runner's whole
sweep (claim, run to the end, stop)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from service.config import GatewaySettings
from service.engine.types import EngineClient
from service.gateway.jobs.runner import JobRunner
from service.jobs.store import JobRecord, JobStore, new_job_id
from tests.service.rest_support import tiny_settings

POSE = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]


def keypoints_body(frames: int = 12) -> bytes:
    """``POST /v1/jobs/keypoints``'s body: ``frames`` frames of one person for pstmo-9."""
    return json.dumps({"keypoints_2d": [POSE] * frames, "image_size": [640, 480], "model": "pstmo-9"}).encode()


BODY = keypoints_body()


async def submitted(store: JobStore, frames: int = 12, **fields: Any) -> str:
    """A queued keypoints job of ``frames`` frames (``fields``: more of its record), as a gateway creates it."""
    job_id = new_job_id("")
    record = JobRecord(job_id=job_id, kind="keypoints", request_id="r1", created_s=1.0, params={"model": "pstmo-9"},
                       frames_total=frames, **fields)  # fmt: skip
    await store.create(record, keypoints_body(frames))
    return job_id


async def run_sweep(store: JobStore, engine: EngineClient, settings: GatewaySettings | None = None) -> None:
    """One runner's sweep: it claims what it may and runs each claimed job to its end, then stops."""
    runner = JobRunner(store, settings or tiny_settings(), lambda: engine)
    try:
        await runner.sweep()
        await asyncio.gather(*runner._running.values())
    finally:
        await runner.aclose()
