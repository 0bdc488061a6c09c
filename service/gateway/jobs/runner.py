"""The jobs of one gateway process: the store (Redis when ``redis_url`` is set, else memory), submission (the use
cases in :mod:`service.api.jobs`, then staged in the store) and the runner.

The runner runs a bounded number of jobs per process, each feeding the engine small chunks, results stored as they
come.

Any gateway claims the oldest unowned job while it has a free slot (``jobs.max_running``), at each sweep (every
``jobs.poll_interval_s``, or at once after a submission), and holds a lease renewed every ``jobs.lease_s / 3``. A
job whose gateway died is taken over after ``jobs.lease_s`` and resumed in its engine stream ``job-<id>`` from the
first frame without a stored result (a stream gone or whose frames were evicted: a new one from frame 0, recorded in
the job for later runs to resume; each position is written once). At most ``jobs.chunk_frames`` frames per engine
call, one call at a time, so interactive requests share the batches. An overloaded or unavailable engine makes the
job wait (backoff, at least a refusal's Retry-After) and resume; a job runs at most :data:`MAX_ATTEMPTS` times,
takeovers after its gateway died included, runs its gateway handed over when it stopped gracefully not (docs/jobs.md,
"Where jobs live").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from service.config import GatewaySettings
from service.engine.types import EngineClient, FrameResult
from service.engine.work import close
from service.errors import (
    DeadlineExceeded,
    InternalError,
    Overloaded,
    Pose3DError,
    QuotaExceeded,
    StreamFramesLost,
    Unavailable,
    UnknownStream,
)
from service.gateway.deps import GatewayState
from service.gateway.encoding import frames_json, release
from service.gateway.jobs.results import checked_job_id
from service.gateway.jobs.sources import JobSource, open_source
from service.gateway.problem import problem_of
from service.jobs.memory import MemoryJobStore
from service.jobs.store import JobInputLost, JobRecord, JobState, JobStore, UnknownJob
from service.security.door import job_limits, owned_job, stamped

log = logging.getLogger("pose3d.jobs")

MAX_ATTEMPTS: Final = 20
RETRYABLE: Final = (Unavailable, Overloaded, DeadlineExceeded, UnknownStream)
"""Errors a later run may not meet: it resumes the job (a lost stream is reopened and run again from frame 0)."""


class _Run:
    """One run of one job on this process (until it ends, is cancelled, or loses its lease)."""

    def __init__(self, runner: JobRunner, record: JobRecord, engine: EngineClient) -> None:
        self.runner = runner
        self.record = record
        self.engine = engine
        self.job_id = record.job_id
        self.source: JobSource | None = None
        self.sid: str | None = None

    async def stream(self, source: JobSource) -> tuple[str, int]:
        """The engine stream to push into and the first position to push: resume the job's latest stream where its
        stored results end (or, were that further, where the stream's frames end), or open a fresh one (a new
        generation, recorded in the job, when an earlier one is gone or lost its frames)."""
        base, done = f"job-{self.job_id}", self.record.frames_done
        latest = self.record.stream_id or base
        if not self.record.stream_lost:
            with contextlib.suppress(UnknownStream):
                info = await self.engine.get_stream(latest)
                return latest, min(done, info.frames_received)
        sid = f"{base}-g{self.record.attempts}" if done > 0 or self.record.attempts > 1 else base
        await self.engine.open_stream(source.options, stream_id=sid)
        await self.runner.store.update(self.job_id, owner=self.runner.owner, stream_id=sid, stream_lost=False)
        return sid, 0

    async def store(self, results: list[FrameResult]) -> None:
        """Write results at their positions (contiguous runs; positions already stored keep their value)."""
        assert self.source is not None
        ordered = enumerate(sorted(results, key=lambda r: r.frame_index))
        for _, run in itertools.groupby(ordered, key=lambda item: item[1].frame_index - item[0]):
            chunk = [result for _, result in run]
            docs = await frames_json(chunk, self.source.source_index)  # encoded off the event loop
            await self.runner.store.put_frames(self.job_id, chunk[0].frame_index, docs)

    async def execute(self) -> None:
        settings = self.runner.settings
        if self.record.counted_attempts > MAX_ATTEMPTS:  # each run ended with its gateway (killed, lease lapsed)
            raise InternalError(f"job {self.job_id} was given up after {MAX_ATTEMPTS} runs: each stopped before the "
                                "end (its gateway died or lost the job's lease)")  # fmt: skip
        try:
            staged = await self.runner.store.read_input(self.job_id)
        except UnknownJob:  # the job ended (nothing to do: failing it changes nothing) or its input was evicted
            raise JobInputLost(f"job {self.job_id}: the store lost its staged input; submit it again") from None
        source = self.source = await open_source(self.record.kind, self.record.params, staged, settings)
        del staged
        now = time.time()
        started = await self.runner.store.update(
            self.job_id, owner=self.runner.owner, state=JobState.RUNNING, started_s=self.record.started_s or now,
            run_started_s=now, run_start_done=self.record.frames_done, frames_total=source.total,
        )  # fmt: skip
        if started is None:
            return
        sid, resume_from = await self.stream(source)
        self.sid = sid
        log.info("job %s runs in stream %s from frame %d (attempt %d)", self.job_id, sid, resume_from,
                 self.record.attempts)  # fmt: skip
        jobs = settings.jobs
        chunk_frames = jobs.keypoint_chunk_frames if self.record.kind == "keypoints" else jobs.chunk_frames
        total = 0  # frames of the source seen so far: all of them once the last step is in
        async for step in source.run(self.engine, sid, resume_from, chunk_frames, settings.engine.request_timeout_s):
            total = step.frames_decoded
            await self.store(step.results)
        await self.store(await self.engine.close_stream(sid))
        await asyncio.to_thread(release, source.keypoints)  # its frames are freed on a thread, not on the loop
        await self.runner.store.update(
            self.job_id, owner=self.runner.owner, state=JobState.DONE, frames_total=total, finished_s=time.time()
        )


class JobRunner:
    """Claims and runs jobs of ``store`` on the engine ``engine_getter()`` gives (None while it starts)."""

    def __init__(
        self, store: JobStore, settings: GatewaySettings, engine_getter: Callable[[], EngineClient | None]
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = secrets.token_hex(8)
        self._engine_getter = engine_getter
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="pose3d-jobs-sweep")

    def wake(self) -> None:
        self._wake.set()

    def cancel_local(self, job_id: str) -> None:
        """Stop this process's run of ``job_id`` now (it was cancelled)."""
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Pose3DError as exc:
                log.warning("job sweep failed: %s", exc.detail)
            except Exception:
                log.exception("job sweep failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.jobs.poll_interval_s):
                    await self._wake.wait()

    async def sweep(self) -> None:
        """Claim the oldest claimable jobs while this process has free slots."""
        if self._closing or len(self._running) >= self.settings.jobs.max_running:
            return
        engine = self._engine_getter()
        if engine is None:
            return
        for job_id in await self.store.active_ids():
            if len(self._running) >= self.settings.jobs.max_running:
                return
            if job_id in self._running:
                continue
            try:
                record = await self.store.get(job_id)
                now = time.time()
                if record.state.terminal:
                    await self.store.drop_active(job_id)
                    continue
                if record.lease_until > now:
                    continue
                claimed = await self._claim(job_id, now)
            except UnknownJob:
                await self.store.drop_active(job_id)
                continue
            if claimed is not None:
                task = asyncio.create_task(self._run(claimed, engine), name=f"pose3d-job-{job_id}")
                self._running[job_id] = task

    async def _claim(self, job_id: str, now: float) -> JobRecord | None:
        """Claim ``job_id`` (its record, or None when another process holds it). Cancelled (the gateway stops) while
        the claim is in flight, the claim is awaited still and, when it landed, handed back at once: no run would
        know of it, and it would keep its lease for ``jobs.lease_s`` and count against :data:`MAX_ATTEMPTS`."""
        claiming = asyncio.ensure_future(self.store.claim(job_id, self.owner, now, self.settings.jobs.lease_s))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                if (landed := await claiming) is not None:
                    await self._hand_over(landed)
            raise

    async def _heartbeat(self, job_id: str, task: asyncio.Task[None]) -> None:
        """Renew the lease; cancel the run when the job was cancelled or the lease was lost."""
        lease_s = self.settings.jobs.lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            try:
                kept = await self.store.update(job_id, owner=self.owner, lease_until=time.time() + lease_s)
            except UnknownJob:
                kept = None
            except Pose3DError:
                continue  # the store is down for a moment: keep running, try again
            if kept is None:
                task.cancel()
                return

    async def _run(self, record: JobRecord, engine: EngineClient) -> None:
        job_id = record.job_id
        run = _Run(self, record, engine)
        task = asyncio.current_task()
        assert task is not None
        heartbeat = asyncio.create_task(self._heartbeat(job_id, task))
        try:
            await run.execute()
        except asyncio.CancelledError:
            await self._after_cancel(run)
        except QuotaExceeded as exc:  # the key's stored bytes are spent: running it again would not help
            await self._fail(run, problem_of(exc))
        except StreamFramesLost as exc:  # evicted from the engine's stream, but the job's input is staged
            await self._retry_later(run, exc, stream_lost=True)
        except RETRYABLE as exc:
            await self._retry_later(run, exc)
        except UnknownJob:
            pass
        except Pose3DError as exc:
            await self._fail(run, problem_of(exc))
        except Exception as exc:
            log.exception("job %s failed", job_id)
            await self._fail(run, problem_of(InternalError(f"job failed: {type(exc).__name__}")))
        finally:
            heartbeat.cancel()
            self._running.pop(job_id, None)
            self.wake()

    async def _fail(self, run: _Run, problem: dict[str, object]) -> None:
        """Fail the job for good and close its engine stream — this run's, else the one earlier runs left (else
        held until its TTL, ``engine.stream_ttl_s``); a job this process no longer owns, or a store that did not
        answer, keeps its stream for the next run."""
        failed = None
        with contextlib.suppress(Pose3DError):
            failed = await self.store.update(
                run.job_id, owner=self.owner, state=JobState.FAILED, error=problem, finished_s=time.time()
            )
        if failed is not None:
            await close(run.engine, run.sid or run.record.stream_id or f"job-{run.job_id}")  # gone: nothing

    async def _retry_later(self, run: _Run, exc: Pose3DError, stream_lost: bool = False) -> None:
        """Run the job again after a backoff (``stream_lost``: in a new engine stream, from frame 0)."""
        record = run.record
        if record.counted_attempts >= MAX_ATTEMPTS:
            await self._fail(run, problem_of(exc))
            return
        # the job's backoff, or a refusal's Retry-After when that is longer
        backoff = max(min(30.0, 0.5 * 2 ** min(record.attempts, 6)), exc.retry_after_s or 0.0)
        log.warning("job %s: %s; retrying in %.1f s", record.job_id, exc.detail, backoff)
        with contextlib.suppress(Pose3DError):
            lost = {"stream_lost": True} if stream_lost else {}
            await self.store.update(record.job_id, owner=self.owner, lease_until=time.time() + backoff, **lost)

    async def _after_cancel(self, run: _Run) -> None:
        """Closing: hand the job over at once (lease freed; the run counted as a handover, not against
        :data:`MAX_ATTEMPTS`). Cancelled by a client: free its engine stream. Lease lost to another gateway: leave
        everything to it."""
        if self._closing:
            await asyncio.shield(self._hand_over(run.record))
            return
        with contextlib.suppress(Pose3DError):
            record = await asyncio.shield(self.store.get(run.job_id))
            if record.state is JobState.CANCELLED and run.sid is not None:
                await close(run.engine, run.sid)

    async def _hand_over(self, record: JobRecord) -> None:
        """Free the lease of a job this process holds (``record``: as claimed), counting a handover."""
        handed = {"lease_until": 0.0, "handovers": record.handovers + 1}
        with contextlib.suppress(Pose3DError):
            await self.store.update(record.job_id, owner=self.owner, **handed)

    async def aclose(self) -> None:
        """Stop sweeping and running; running jobs are handed over (their leases freed) to be resumed."""
        self._closing = True
        tasks = [task for task in (self._sweeper, *self._running.values()) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for job_id in list(self._running):  # a run cancelled before its first step: none of its handling ran
            with contextlib.suppress(Pose3DError):
                await self._hand_over(await self.store.get(job_id))
        self._running.clear()


@dataclass
class Jobs:
    store: JobStore
    runner: JobRunner


def make_jobs(state: GatewayState) -> Jobs:
    """The app's jobs (``app.state.jobs``): its store and a runner on the engine the app serves (not started)."""
    settings = state.settings
    limits = job_limits(settings.security.quotas)
    store: JobStore
    if settings.redis_url:
        from service.jobs.redis import RedisJobStore

        store = RedisJobStore(settings.redis_url, settings.jobs.ttl_s, limits=limits)
    else:
        store = MemoryJobStore(settings.jobs.ttl_s, limits=limits)
    return Jobs(store, JobRunner(store, settings, lambda: state.engine))


@asynccontextmanager
async def jobs_running(jobs: Jobs) -> AsyncIterator[Jobs]:
    """The runner runs for the app's lifetime; running jobs are handed over (leases freed) at exit."""
    jobs.runner.start()
    try:
        yield jobs
    finally:
        await jobs.runner.aclose()
        await jobs.store.aclose()


async def create_job(jobs: Jobs, record: JobRecord, staged: bytes) -> JobRecord:
    """Store a new job owned by the caller (its key's job quotas permitting) and wake the runner."""
    record = stamped(record)
    await jobs.store.create(record, staged)
    jobs.runner.wake()
    log.info("job %s queued (%s, model %s, %s frames)", record.job_id, record.kind, record.params["model"],
             record.frames_total)  # fmt: skip
    return record


async def cancel_owned(jobs: Jobs, job_id: str) -> JobRecord:
    """Cancel the caller's job (a finished job stays as it is) and stop this process's run of it."""
    await owned_job(jobs.store, checked_job_id(job_id))
    record = await jobs.store.cancel(job_id, time.time())
    jobs.runner.cancel_local(job_id)
    return record
