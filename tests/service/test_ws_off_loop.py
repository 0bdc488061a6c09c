"""A large WebSocket message is parsed off the event loop: while its JSON is read, and while its image is checked
(after its base64 is decoded, in the same off-loop call), ``/healthz`` keeps being answered.

No clock is involved (as in ``test_answer_off_loop.py``): the work is held at a ``threading.Event`` the test opens
only after the gateway has answered ``/healthz`` *while the work was still held*. Work done on the event loop's
thread would hold that answer back until the gate opens, which never happens before it: the test fails on its
client timeout. A 16 MiB image was ~60 ms of JSON, base64 and header work on the loop, for every connection.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from service.api.media import checked_image
from tests.service.media_samples import encode_image
from tests.service.rest_support import LiveServer, live_server, tiny_settings
from tests.service.ws_support import closed_with, receive, ws_url

HELD_S = 120.0
"""How long the test waits for held work to be reached at all (a failure guard, not a timing)."""
LARGE = 1024 * 1024
"""Messages and images past this many characters are held (past the gateway's off-loop threshold)."""


class Gate:
    """Wraps ``call``: for arguments ``held`` picks, says it is entered, then waits until the test opens it."""

    def __init__(self, call: Callable[..., Any], held: Callable[..., bool]) -> None:
        self.call, self.held = call, held
        self.entered = threading.Event()
        self.opened = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.held(*args):
            self.entered.set()
            assert self.opened.wait(HELD_S * 2), "the test never opened the gate"
        return self.call(*args, **kwargs)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with live_server(tiny_settings()) as server:
        yield server


def noise_png(side: int) -> bytes:
    """A PNG of random pixels (it hardly compresses): ~3 × side² bytes."""
    return encode_image(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8), ".png")


def stream_one_frame(url: str, data: bytes) -> dict[str, Any]:
    """Open a stream, send one image frame, return its answer."""
    with connect(ws_url(url), max_size=2**24) as ws:
        ws.send(json.dumps({"type": "open", "model": "pstmo-9", "mode": "causal"}))
        assert receive(ws)["type"] == "opened"
        ws.send(json.dumps({"type": "frame", "frame_index": 0, "image": base64.b64encode(data).decode()}))
        answer = receive(ws, HELD_S * 2)
        ws.send(json.dumps({"type": "close"}))
        return answer


def healthz_while_held(live: LiveServer, gate: Gate, pending: Future[Any]) -> None:
    assert gate.entered.wait(HELD_S), "the held work was never reached"
    try:
        with live.client(timeout_s=30) as client:
            for _ in range(3):
                assert client.get("/healthz").status_code == 200
        assert not pending.done(), "the frame was answered before its gate was opened"
    finally:
        gate.opened.set()


def test_a_large_image_frame_is_read_and_checked_off_the_loop(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = noise_png(600)
    assert len(data) > LARGE
    reading = Gate(json.loads, lambda text, *_: isinstance(text, str) and len(text) > LARGE)
    checking = Gate(checked_image, lambda image, *_: len(image) > LARGE)
    monkeypatch.setattr(json, "loads", reading)
    monkeypatch.setattr("service.gateway.routes_ws.checked_image", checking)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(stream_one_frame, live.url, data)
        try:
            healthz_while_held(live, reading, answer)
            healthz_while_held(live, checking, answer)
        finally:
            reading.opened.set()
            checking.opened.set()
        result = answer.result()
    assert result["type"] == "results", result
    assert [f["frame_index"] for f in result["frames"]] == [0]


def test_a_long_message_of_many_values_is_refused_unparsed(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an image frame (one base64 string) is long: a frame of 300 000 keypoint pairs (3.3 MB, within the message
    limit) was parsed and validated before its shape was refused, ~1 s of work holding the GIL (a thread does not
    help: the parser never lets go of it) for every such message. It is refused 413 before any parsing."""
    parsed: list[int] = []

    def counted(text: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(text, str) and len(text) > LARGE:
            parsed.append(len(text))
        return loads(text, *args, **kwargs)

    loads = json.loads
    monkeypatch.setattr(json, "loads", counted)
    flood = {"type": "frame", "frame_index": 0, "image_size": [640, 480], "keypoints_2d": [[1.0, 2.0]] * 300_000}
    with connect(ws_url(live.url), max_size=2**24) as ws:
        ws.send(json.dumps({"type": "open", "model": "pstmo-9", "mode": "causal"}))
        assert receive(ws)["type"] == "opened"
        ws.send(json.dumps(flood))
        code, _, problem = closed_with(ws)
    assert (code, problem and problem["status"]) == (4413, 413), problem
    assert parsed == []
