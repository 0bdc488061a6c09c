"""A render or an export that overruns its request's deadline (``X-Request-Timeout``) answers 504 at the deadline and
stops at its next frame: before, it ran outside the deadline, for as long as it took, and answered 200 late. Real HTTP,
tiny random-weight models; the overrun is a frame held until the deadline has passed (no clock is assumed)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from service.config import LimitSettings
from service.export import bvh
from service.gateway.outputs import OutputPool
from service.render import compose
from tests.service.rest_support import LiveServer, assert_problem, live_server, tiny_settings
from tests.service.test_rest_outputs import keypoints_body

pytestmark = pytest.mark.slow

FRAMES = 30


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    limits = LimitSettings(max_body_bytes=4 * 1024 * 1024, max_clip_frames=200, render_workers=1)
    with live_server(tiny_settings(limits=limits)) as live:
        yield live


class Held:
    """Wraps a per-frame function: its second call waits until ``release`` is set (the test sets it once the
    request has been answered); ``calls`` counts every call."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            assert self.release.wait(20), "the test never released the held frame"
        return self.real(*args, **kwargs)


@pytest.mark.parametrize(
    ("query", "module", "name"), [("render=mp4", compose, "render_frame"), ("format=bvh", bvh, "solve_frame")]
)
def test_an_output_past_the_deadline_is_504_and_stops(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, query: str, module: Any, name: str
) -> None:
    held = Held(getattr(module, name))
    monkeypatch.setattr(module, name, held)
    try:
        with httpx.Client(base_url=server.url, timeout=120.0) as client:
            answer = client.post(f"/v1/pose3d?{query}", json=keypoints_body(FRAMES), headers={"X-Request-Timeout": "5"})
    finally:
        held.release.set()
    problem = assert_problem(answer, 504, "deadline-exceeded")
    assert "5 s" in problem["detail"]
    pool: OutputPool = server.app.state.output_pool
    pool._executor.submit(lambda: None).result(timeout=60)  # one thread: the render or export has ended
    assert held.calls == 2  # stopped at the frame after the held one, not run to the end
    assert pool._admitted == 0
