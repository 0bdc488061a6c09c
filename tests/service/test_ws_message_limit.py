"""A WebSocket frame takes the images REST and gRPC take: up to ``limits.max_body_bytes`` (as base64 in JSON).

uvicorn's own WebSocket message limit (16 MiB unless told) was left at its default while the gateway's limit on
bodies is 64 MiB: an image of 12 MiB or more, answered over REST and gRPC, ended the WebSocket with close code
1009 and no problem document (the gateway's own 4413 check on the message was never reached). The gateway is
served here with the uvicorn config ``pose3d serve`` builds (:func:`service.gateway.grpc_server.rest_config`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import numpy as np
import pytest
from websockets.sync.client import connect

from service.config import LimitSettings
from tests.service.media_samples import encode_image
from tests.service.rest_support import LiveServer, live_server, tiny_settings
from tests.service.ws_support import closed_with, receive, ws_url

pytestmark = pytest.mark.slow

UVICORN_DEFAULT = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    limits = LimitSettings(max_clip_frames=200)  # the default body limit (64 MiB)
    with live_server(tiny_settings(limits=limits)) as server:
        yield server


def test_an_image_past_16_mib_of_base64_is_answered_over_the_websocket(live: LiveServer) -> None:
    side = 2200  # random pixels hardly compress: ~14.5 MB of PNG, ~19 MiB of base64
    data = encode_image(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8), ".png")
    message = json.dumps({"type": "frame", "frame_index": 0, "image": base64.b64encode(data).decode()})
    assert len(message) > UVICORN_DEFAULT
    assert len(data) < live.settings.limits.max_body_bytes
    with connect(ws_url(live.url), max_size=2**27) as ws:
        ws.send(json.dumps({"type": "open", "model": "pstmo-9", "mode": "causal"}))
        assert receive(ws)["type"] == "opened"
        ws.send(message)
        answer = receive(ws, 300)
        assert answer["type"] == "results", answer
        assert [f["frame_index"] for f in answer["frames"]] == [0]
        ws.send(json.dumps({"type": "close"}))
        assert receive(ws)["final"] is True
        assert closed_with(ws)[:1] == (1000,)


def test_a_message_past_the_limit_is_still_refused(live: LiveServer) -> None:
    limits = live.settings.limits
    message = json.dumps({"type": "frame", "frame_index": 0, "image": "A" * (limits.max_body_bytes * 4 // 3 + 4096)})
    with connect(ws_url(live.url), max_size=2**27) as ws:
        ws.send(json.dumps({"type": "open", "model": "pstmo-9", "mode": "causal"}))
        assert receive(ws)["type"] == "opened"
        ws.send(message)
        code, _, _ = closed_with(ws)
    assert code in (1009, 4413)  # uvicorn's limit is the gateway's: the message is too big either way
