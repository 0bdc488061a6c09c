"""A worker or ``pose3d serve`` told to stop while its models load stops then, not when the load ends: the load
runs on the process's loading thread, a daemon that ``asyncio.run`` and the exit do not join (they join
``asyncio.to_thread``'s executor threads, which would wait out the load). That thread stays after the load, as the
executor's did: the OpenMP pool torch gave it stays counted, and the inference thread's team keeps spinning short
(``service.startup.loading_thread``; ``python -m bench.load_thread`` measures it)."""

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
from service.startup import loading_thread
from service.worker.server import run_worker
from tests.service.test_engine_support import tiny_settings

RETURN_BUDGET_S = 60.0  # a budget for a busy machine, not a speed claim: the load it must not wait for never ends


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of the test: what lets the never-ending load end; the loading thread is idle again after."""
    event = threading.Event()
    yield event
    event.set()
    asyncio.run(loading_thread(lambda: None))  # runs after the held step: a later pose3d command sees no load left


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


async def test_every_load_step_runs_on_one_thread_that_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OpenMP pool the load's torch work made for its thread ends with that thread; the inference thread's
    team then spins long after every parallel region (4–6× its CPU beside other work). So the steps share one
    thread, and it outlives the load — a daemon, not joined at exit."""
    ran_on: list[threading.Thread] = []

    def recorded(step: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            ran_on.append(threading.current_thread())
            return step(*args)

        return run

    for step in ("build_lifters", "build_detector", "build_box_finder"):
        monkeypatch.setattr(loader, step, recorded(getattr(loader, step)))
    pipeline = await load_engine(tiny_settings(), Metrics())
    await pipeline.aclose()
    assert len(ran_on) == 3
    assert len(set(ran_on)) == 1, ran_on
    assert ran_on[0] is not threading.current_thread()  # off the event loop
    assert ran_on[0].daemon
    assert ran_on[0].is_alive()


async def test_a_load_that_fails_still_raises_its_error() -> None:
    """Off the default executor a failed load is still the caller's error (random weights refused)."""
    with pytest.raises(Unavailable, match="allow-random-weights"):
        await load_engine(tiny_settings().model_copy(update={"allow_random_weights": False}), Metrics())
