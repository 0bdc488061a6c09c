"""A long ``Work`` crosses the worker link converted off the event loop, both ways.

20 000 keypoint frames (a keypoint sequence at the default ``max_clip_frames``) took ~0.1 s to become a message on
the gateway and ~0.2 s to become frames again on the worker, on each one's event loop: every other stream served
there waited. No clock is involved: the conversion of a frame is held at a ``threading.Event`` that the test opens
only once it has seen the conversion start — which it cannot see while the event loop's own thread is the one held
(the gate then gives up after ``HELD_S`` and the test fails).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from service.engine.types import EstimateOptions, Work
from service.engine.work import collect
from service.rpc import link
from service.rpc.remote_engine import RemoteEngineClient
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_remote import keypoints, start_worker

HELD_S = 30.0
"""How long a held conversion waits for the test to open it (a failure guard, not a timing)."""
FRAMES = 2 * link.OFF_LOOP_FRAMES


class Held:
    """``fn`` whose first call waits until :attr:`opened` is set, noting whether it had to give up."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.entered, self.opened = threading.Event(), threading.Event()
        self.gave_up = False

    def __call__(self, *args: Any) -> Any:
        if not self.entered.is_set():
            self.entered.set()
            self.gave_up = not self.opened.wait(HELD_S)
        return self.fn(*args)


@pytest.mark.parametrize("side", ["frame_to_pb", "frame_from_pb"], ids=["gateway", "worker"])
async def test_a_long_work_is_converted_off_the_event_loop(side: str, monkeypatch: pytest.MonkeyPatch) -> None:
    held = Held(getattr(link, side))
    monkeypatch.setattr(link, side, held)
    worker = await start_worker(ToyEngine())
    client = RemoteEngineClient([worker.address])
    await client.start()
    try:
        estimating = asyncio.ensure_future(collect(client, Work("kp", [keypoints(i) for i in range(FRAMES)])))
        assert await asyncio.to_thread(held.entered.wait, HELD_S)
        held.opened.set()
        result = await estimating
    finally:
        held.opened.set()
        await client.aclose()
        await worker.server.stop(0)
    assert not held.gave_up, f"{side} ran on the event loop's thread"
    assert [f.frame_index for f in result.frames] == list(range(FRAMES))


async def test_a_short_work_is_converted_in_place() -> None:
    worker = await start_worker(ToyEngine())
    client = RemoteEngineClient([worker.address])
    await client.start()
    try:
        result = await collect(client, Work("kp", [keypoints(0)], EstimateOptions()))
    finally:
        await client.aclose()
        await worker.server.stop(0)
    assert [f.frame_index for f in result.frames] == [0]
