"""A small synchronous client of ``/v1/streams/ws`` for the tests (the ``websockets`` library's sync client)."""

from __future__ import annotations

import base64
import json
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/v1/streams/ws"


def image_message(index: int, data: bytes, timestamp_s: float | None = None) -> dict[str, Any]:
    return {"type": "frame", "frame_index": index, "timestamp_s": timestamp_s, "image": base64.b64encode(data).decode()}


def receive(ws: ClientConnection, timeout_s: float = 60.0) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=timeout_s))
    return message


def closed_with(ws: ClientConnection, timeout_s: float = 60.0) -> tuple[int, str, dict[str, Any] | None]:
    """Read to the end: ``(close code, close reason, the problem message or None)``."""
    problem = None
    try:
        while True:
            message = receive(ws, timeout_s)
            if message["type"] == "problem":
                problem = message["problem"]
    except ConnectionClosed:
        pass
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or "", problem


def stream_frames(base_url: str, open_message: dict[str, Any], frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Open, send every frame (one answer each), close; every frame result received, in arrival order."""
    results: list[dict[str, Any]] = []
    with connect(ws_url(base_url), max_size=2**24) as ws:
        ws.send(json.dumps({"type": "open", **open_message}))
        opened = receive(ws)
        assert opened["type"] == "opened", opened
        for frame in frames:
            ws.send(json.dumps(frame))
            answer = receive(ws)
            assert answer["type"] == "results", answer
            assert answer["frame_index"] == frame["frame_index"]
            results.extend(answer["frames"])
        ws.send(json.dumps({"type": "close"}))
        tail = receive(ws)
        assert tail["type"] == "results"
        assert tail["final"] is True
        results.extend(tail["frames"])
        code, _, problem = closed_with(ws)
        assert (code, problem) == (1000, None)
    return results
