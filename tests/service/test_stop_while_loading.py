"""A worker or ``pose3d serve`` told to stop while its models load stops then, not when the load ends: the loading
thread is left behind (``asyncio.run`` joins its default executor's threads, which would wait out the load)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from service.config import WorkerSettings
from service.engine import loader
from service.engine.loader import load_engine
from service.errors import Unavailable
from service.metrics import Metrics
from service.worker.server import run_worker
from tests.service.test_engine_support import tiny_settings

RETURN_BUDGET_S = 60.0  # a budget for a busy machine, not a speed claim: the load it must not wait for never ends


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test: what lets the never-ending load end."""
    event = threading.Event()
    yield event
    event.set()


def _returns_while_loading(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())`` on a thread of its own returns within the budget, the load still blocked."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported below
            errors.append(exc)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(RETURN_BUDGET_S)
    assert not runner.is_alive(), "asyncio.run waited for the loading thread"
    assert not errors, errors


def test_a_worker_stopped_while_its_engine_loads_returns_at_once(release: threading.Event) -> None:
    async def main() -> None:
        stop, loop = asyncio.Event(), asyncio.get_running_loop()

        def endless_load(settings: WorkerSettings, metrics: Metrics) -> object:
            loop.call_soon_threadsafe(stop.set)  # SIGTERM while the checkpoints are read
            release.wait()
            return object()

        settings = WorkerSettings(host="127.0.0.1", port=0, metrics_port=0, allow_random_weights=True)
        await run_worker(settings, engine_factory=endless_load, stop=stop)

    _returns_while_loading(main)


def test_an_engine_load_cancelled_while_reading_checkpoints_returns_at_once(
    release: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's in-process engine (``pose3d serve``): SIGTERM cancels the load of its lifters."""
    loading: list[asyncio.Task[Any]] = []

    def endless_read(*args: object) -> dict[str, Any]:
        loading[0].get_loop().call_soon_threadsafe(loading[0].cancel)
        release.wait()
        return {}

    monkeypatch.setattr(loader, "build_lifters", endless_read)

    async def main() -> None:
        loading.append(asyncio.create_task(load_engine(tiny_settings(), Metrics())))
        with pytest.raises(asyncio.CancelledError):
            await loading[0]

    _returns_while_loading(main)


async def test_a_load_that_fails_still_raises_its_error() -> None:
    """Off the default executor a failed load is still the caller's error (random weights refused)."""
    with pytest.raises(Unavailable, match="allow-random-weights"):
        await load_engine(tiny_settings().model_copy(update={"allow_random_weights": False}), Metrics())
