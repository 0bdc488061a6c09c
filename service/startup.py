"""How a ``pose3d`` command ends: one line naming the fix for a start-up failure, a clean exit on SIGINT/SIGTERM.

Every long-running command (``serve``, ``gateway``, ``worker``) runs through :func:`run_command`. Failures a user
can fix (a missing checkpoint, random weights refused, a port in use, Redis unreachable, an invalid setting, a
settings file that cannot be read, a POSE3D_* variable that is not the JSON its setting needs) print ``pose3d <command>: error: <what> — <the setting or flag that fixes it>`` on
stderr and exit 2, never a traceback. SIGTERM is turned into the same orderly shutdown as Ctrl-C (servers stop, the engine closes); the
command then exits 0 (SIGTERM) or 130 (SIGINT), again without a traceback — at once also while its models load
(the load is left on :func:`loading_thread`). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import logging
import os
import queue
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn, TypeVar

from pydantic import ValidationError
from pydantic_settings import SettingsError
from redis.exceptions import RedisError

from service.config import SettingsFileError, UnservedDefaultModel
from service.errors import Pose3DError
from service.redaction import redact
from service.weights.store import WeightsError

_T = TypeVar("_T")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where SIGINT would raise KeyboardInterrupt so both take the same shutdown path."""


def explain(error: BaseException) -> str:
    """One line saying what failed and which setting or flag fixes it (credentials redacted)."""
    if isinstance(error, ValidationError):
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in error.errors())
        return redact(f"invalid settings ({fields}) — fix the flag, POSE3D_* variable or --config file entry named")
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        text += (
            " — the address is in use: pick a free one with --port / --grpc-port / --metrics-port (POSE3D_PORT, "
            "POSE3D_GRPC_PORT, POSE3D_METRICS_PORT)"
        )
    elif isinstance(error, RedisError):
        text = f"Redis: {text} — check redis_url (POSE3D_REDIS_URL), or start one: redis-server --port 6379"
    elif isinstance(error, SettingsFileError):
        text += " — fix the --config file"
    elif isinstance(error, SettingsError):  # a POSE3D_* variable for a list or a table that is not JSON
        text += """ — such a POSE3D_* variable takes JSON, e.g. POSE3D_WORKERS='["w1:50061", "w2:50061"]'"""
    elif isinstance(error, FileNotFoundError):
        text += " — check the path in the flag, POSE3D_* variable or --config file that names it"
    return redact(text)


def ensure_port_free(host: str, port: int) -> None:
    """Raise ``OSError(EADDRINUSE)`` naming ``host:port`` when a TCP listener already holds it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise OSError(e.errno, f"cannot listen on {host}:{port} (REST): {e.strerror}") from None


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Serve with the start-up heap (models, modules, settings) out of the garbage collector's sight: a full
    collection then no longer walks it and stalls the event loop (0.2 s in the gateway)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _Loader:
    """The process's one loading thread (a daemon, started at the first step) and the steps it has not finished."""

    def __init__(self) -> None:
        self._steps: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending = 0

    def submit(self, step: Callable[[], None]) -> None:
        """Run ``step`` (which raises nothing) on the loading thread after those before it."""
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pose3d-load", daemon=True)
                self._thread.start()
        self._steps.put(step)

    def busy(self) -> bool:
        """Whether a step is queued or running (a stop while loading left it behind)."""
        with self._lock:
            return self._pending > 0

    def _run(self) -> None:
        while True:
            step = self._steps.get()
            try:
                step()
            finally:
                with self._lock:
                    self._pending -= 1


_LOADER = _Loader()


async def loading_thread(fn: Callable[..., _T], *args: object) -> _T:
    """``fn(*args)`` (a blocking load step: checkpoints, random weights, an ONNX export) on the process's loading
    thread: one daemon thread that runs every load step in turn and stays, idle, for the life of the process.

    A daemon: cancelled (the process told to stop while it loads), the wait ends at once and the step is left to
    the process's exit. ``asyncio.to_thread``'s executor threads are joined by ``asyncio.run`` and at exit, so a
    stop would wait for the whole load.

    It stays: torch's OpenMP runtime (libgomp) gives the thread that ran the load's parallel work a pool of its
    own, freed only when that thread ends. While libgomp manages more threads than there are CPUs, a thread
    waiting at a parallel region's end spins 100 times before it sleeps, otherwise ~300 000 (milliseconds). A load
    thread that ends takes its pool with it, and the inference thread's team then spins after every region:
    measured, 4–6× the CPU per inference beside other CPU work (``python -m bench.load_thread``), the overload
    bench's capacity 5–8× lower (docs/overload.md, eighth pass). Kept, its pool keeps the count as it was when
    the load ran on the default executor's thread (which stays too)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_T] = loop.create_future()

    def deliver(settle: Callable[[], None]) -> None:
        def once() -> None:
            if not done.done():  # not cancelled meanwhile
                settle()

        with contextlib.suppress(RuntimeError):  # the loop closed: no one waits any more
            loop.call_soon_threadsafe(once)

    def step() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task
            deliver(functools.partial(done.set_exception, exc))
        else:
            deliver(functools.partial(done.set_result, result))

    _LOADER.submit(step)
    return await done


def _raise_signal(signum: int, frame: FrameType | None) -> None:
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def run_command(name: str, command: Callable[[], int]) -> int:
    """Run ``command`` (a whole ``pose3d <name>`` invocation) and turn its ending into an exit status; stopped
    while its models load, end the process at once with that status (:func:`_exit_now`).

    SIGINT raises KeyboardInterrupt where the program is, as Python's own handler does, also under asyncio:
    ``asyncio.run`` then keeps its hands off SIGINT (it would cancel the main task instead, and the first ``await``
    of a ``finally`` — a gRPC server's stop — would be cancelled with it, leaving ``Event loop is closed``
    warnings at exit). uvicorn captures both signals while it serves and raises them again once it has stopped.
    """
    status = _run_command(name, command)
    if _LOADER.busy():
        _exit_now(status)
    return status


def _exit_now(status: int) -> NoReturn:
    """End the process with ``status``, its logs and output flushed, without Python's finalization: a load step
    still runs on the loading thread, and when its torch call returns to a finalizing interpreter the thread is
    unwound through C++ frames that forbid it — the process aborts ("terminate called without an active
    exception", exit 134)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _run_command(name: str, command: Callable[[], int]) -> int:
    previous = signal.signal(signal.SIGTERM, _raise_signal)
    previous_int = signal.signal(signal.SIGINT, _raise_signal)
    try:
        return command()
    except Terminated:
        print(f"pose3d {name}: stopped (SIGTERM)", file=sys.stderr)
        return 0
    except BrokenPipeError:  # `pose3d weights list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"pose3d {name}: interrupted, shut down", file=sys.stderr)
        return 130
    except (
        Pose3DError, OSError, ValidationError, SettingsFileError, SettingsError, RedisError, WeightsError,
        UnservedDefaultModel,
    ) as e:  # fmt: skip
        print(f"pose3d {name}: error: {explain(e)}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
