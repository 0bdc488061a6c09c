"""The overload bench's load generator, in a process of its own: pre-built request bytes over raw keep-alive
sockets (uvloop when installed), so that the client takes as little of the cores it shares with the server as it can.

``python -m bench.overload_client SPEC.json`` reads a :class:`Phase` (as JSON), runs it against ``host:port`` and
prints one JSON document: every request's ``[sent, done, status]`` (seconds from the phase's start; status 0: no
answer) and the process's CPU seconds (user + system) over the phase's wall seconds. Every request is the same
bytes (``request_path``: a whole HTTP/1.1 request, head and body); answers are read by ``Content-Length`` or
chunked framing, never parsed further.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import resource
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Phase:
    """One load phase: ``concurrency`` closed-loop clients (``rate`` 0), or Poisson arrivals at ``rate`` per second
    (``seed``), for ``seconds``; each sends the bytes in ``request_path`` to ``host:port``."""

    host: str
    port: int
    request_path: str
    seconds: float
    rate: float = 0.0
    concurrency: int = 8
    seed: int = 10


class Connections:
    """Idle keep-alive connections to one server, opened on demand."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def send(self, request: bytes) -> int:
        """Send ``request`` on an idle (or new) connection and read the whole answer; its status (0: failed).
        An idle connection the server closed meanwhile (its keep-alive timeout) is replaced by a new one."""
        while self.idle:
            reader, writer = self.idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                break
            writer.close()
        else:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                return 0
        try:
            writer.write(request)
            status, keep = await _read_answer(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            writer.close()
            return 0
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One HTTP/1.1 answer read off ``reader``: its status and whether the connection stays open."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head[9:12])
    keep = b"\r\nconnection: close" not in head
    if b"\r\ntransfer-encoding: chunked" in head:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")
    else:
        at = head.find(b"\r\ncontent-length:")
        length = int(head[at + 17 : head.index(b"\r\n", at + 2)]) if at >= 0 else 0
        await reader.readexactly(length)
    return status, keep


async def run_phase(phase: Phase, request: bytes) -> dict[str, Any]:
    """Run ``phase`` sending ``request``; every outcome once all requests have ended, and the CPU this process
    spent meanwhile."""
    pool = Connections(phase.host, phase.port)
    outcomes: list[tuple[float, float, int]] = []
    cpu0, t0 = _cpu_s(), time.perf_counter()

    async def one() -> None:
        sent = time.perf_counter() - t0
        status = await pool.send(request)
        outcomes.append((sent, time.perf_counter() - t0, status))

    if phase.rate > 0:
        await _open_loop(one, phase.rate, phase.seconds, phase.seed, t0)
    else:
        await _closed_loop(one, phase.concurrency, phase.seconds, t0)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    pool.close()
    return {"outcomes": sorted(outcomes), "cpu_s": round(cpu, 3), "wall_s": round(wall, 3)}


async def _open_loop(
    one: Callable[[], Coroutine[Any, Any, None]], rate: float, seconds: float, seed: int, t0: float
) -> None:
    rng = random.Random(seed)
    tasks: list[asyncio.Task[None]] = []
    at = rng.expovariate(rate)
    while at < seconds:
        if (wait := at - (time.perf_counter() - t0)) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one()))
        at += rng.expovariate(rate)
    await asyncio.gather(*tasks)


async def _closed_loop(
    one: Callable[[], Coroutine[Any, Any, None]], concurrency: int, seconds: float, t0: float
) -> None:
    async def client() -> None:
        while time.perf_counter() - t0 < seconds:
            await one()

    await asyncio.gather(*(client() for _ in range(concurrency)))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    phase = Phase(**json.loads(Path(args[0]).read_text()))
    runner: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=runner) as loop:
        result = loop.run(run_phase(phase, Path(phase.request_path).read_bytes()))
    json.dump({"phase": asdict(phase) | {"request_path": None}, **result}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
