"""No answer stalls the event loop: while results are being encoded, /healthz keeps being answered (issue 19).

No clock is involved: the one encoder of result frames (``service.gateway.encoding.encode_frames``) is held at a
``threading.Event`` the test opens only after the service has answered ``/healthz`` *while the encoding was
still held*. An encoder called on the event loop's thread would hold that answer back until the gate opens,
which never happens before it: the test would fail on its client timeout.

The other stall was Python's cyclic garbage collector: a full pass holds the GIL while it walks every tracked
object, and with the start-up heap (modules, models: ~280 000 objects) in sight that took ~0.25 s on a quiet
machine, several times per 20 000-frame answer. The gateway and the worker freeze that heap once started
(``gc.freeze``), so a pass walks only what requests made; checked here by counting, not by timing.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from service.api import json_offload
from service.config import JobSettings, WorkerSettings
from service.engine.types import BoxSource, FrameResult, KeypointFrame, ModelInfo
from service.gateway import encoding
from service.worker.server import run_worker
from tests.service.jobs_support import read_ndjson
from tests.service.rest_support import LiveServer, live_server, tiny_settings

FRAMES = 12
HELD_S = 120.0
"""How long the test waits for the encoder to be reached at all (a failure guard, not a timing)."""
INFO = ModelInfo("m", "pstmo", "v", "random", 9, 1, "h36m", "cpu", needs_image=False, flip_test=False)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with live_server(tiny_settings(jobs=JobSettings(keypoint_chunk_frames=4, poll_interval_s=0.05))) as server:
        yield server


class Gate:
    """Wraps the encoder: says when it is entered, then waits until the test opens the gate."""

    def __init__(self, encode: Callable[..., list[bytes]]) -> None:
        self.encode = encode
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, results: Sequence[FrameResult], *args: Any) -> list[bytes]:
        self.entered.set()
        assert self.opened.wait(HELD_S * 2), "the test never opened the gate"
        return self.encode(results, *args)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate(encoding.encode_frames)
    monkeypatch.setattr(encoding, "encode_frames", held)
    try:
        yield held
    finally:
        held.opened.set()


def keypoints(frames: int) -> dict[str, Any]:
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    return {"keypoints_2d": [pose] * frames, "image_size": [640, 480], "model": "pstmo-9"}


def healthz_while_held(live: LiveServer, gate: Gate, pending: Future[Any]) -> None:
    """Once the encoder is held: /healthz answers, and the held work has not finished."""
    assert gate.entered.wait(HELD_S), "the encoder was never reached"
    with live.client(timeout_s=30) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
    assert not pending.done(), "the held work finished before its gate was opened"


def test_the_rest_answer_is_encoded_off_the_loop(live: LiveServer, gate: Gate) -> None:
    def post() -> httpx.Response:
        with live.client(timeout_s=HELD_S * 2) as client:
            return client.post("/v1/pose3d", json=keypoints(FRAMES))

    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(post)
        try:
            healthz_while_held(live, gate, answer)
        finally:
            gate.opened.set()
        response = answer.result()
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert [f["frame_index"] for f in body["frames"]] == list(range(FRAMES))
    assert body["timings_ms"]["total"] > 0
    assert body["model"]["name"] == "pstmo-9"


def test_a_jobs_results_are_encoded_off_the_loop(live: LiveServer, gate: Gate) -> None:
    with live.client(timeout_s=HELD_S * 2) as client:
        submitted = client.post("/v1/jobs", json=keypoints(FRAMES))
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        with ThreadPoolExecutor(1) as pool:
            lines = pool.submit(read_ndjson, client, job_id)  # ends when the job ends
            try:
                healthz_while_held(live, gate, lines)
                assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"
            finally:
                gate.opened.set()
            frames = lines.result()
    assert [f["frame_index"] for f in frames] == list(range(FRAMES))


def test_a_rest_answer_streams_whole_documents_in_pieces() -> None:
    """The pieces of a document are the document (what the client reads is plain JSON)."""
    head = encoding.PoseAnswer("r", INFO, BoxSource.KEYPOINTS, [], {"engine": 1.0}, None).head()
    frames = [b'{"frame_index":%d}' % i for i in range(5)]
    joined = b"".join(encoding.document_chunks(head, frames, per_chunk=2))
    document = httpx.Response(200, content=joined).json()
    assert [f["frame_index"] for f in document["frames"]] == list(range(5))
    assert document["request_id"] == "r"


def test_the_start_up_heap_is_out_of_the_collectors_sight_while_the_gateway_serves() -> None:
    """Frozen once started (most of what the collector would walk is left out of every pass), thawed at shutdown
    (an app built and closed in a longer-lived process leaves nothing uncollectable behind)."""
    with live_server(tiny_settings()) as server:
        with server.client() as client:
            assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10 * len(gc.get_objects())
    assert gc.get_freeze_count() == 0


def test_a_keypoint_sequence_is_its_arrays_until_a_frame_is_read() -> None:
    """20 000 parsed frames are three objects for the collector (arrays and times), not 20 000; each position
    reads as the frame it always was, slices included."""
    raw = json.dumps({**keypoints(FRAMES), "timestamps_s": [i / 10 for i in range(FRAMES)]}).encode()
    frames = asyncio.run(json_offload.parse_keypoints(raw, tiny_settings()))[1]
    assert not any(isinstance(o, KeypointFrame) for o in gc.get_referents(frames))
    assert len(frames) == FRAMES
    last = frames[-1]
    assert (last.frame_index, last.timestamp_s, last.image_size) == (FRAMES - 1, (FRAMES - 1) / 10, (640, 480))
    assert np.array_equal(last.keypoints, np.array([[320.0 + 4 * j, 180.0 + 10 * j] for j in range(17)]))
    assert [f.frame_index for f in frames[3:9:2]] == [3, 5, 7]
    assert [f.frame_index for f in frames] == list(range(FRAMES))
    with pytest.raises(IndexError):
        frames[FRAMES]


async def test_the_worker_freezes_its_start_up_heap_too() -> None:
    """The worker process serves with its start-up heap frozen (checked when it says it serves) and thaws it when
    it stops."""
    stop, frozen = asyncio.Event(), list[int]()

    class OnServing(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "serving on" in record.getMessage():
                frozen.append(gc.get_freeze_count())
                stop.set()

    class Idle:
        async def aclose(self) -> None:
            return None

    handler, logger = OnServing(), logging.getLogger("service.worker.server")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        settings = WorkerSettings(port=0, metrics_port=0, allow_random_weights=True)
        await run_worker(settings, engine_factory=lambda s, m: Idle(), stop=stop)
    finally:
        logger.removeHandler(handler)
    assert len(frozen) == 1
    assert frozen[0] > 0
    assert gc.get_freeze_count() == 0
