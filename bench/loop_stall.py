"""How long the gateway's event loop is held by large inputs (issue 10) and large answers (issue 19).

A real gateway (uvicorn, in-process engine as in ``pose3d serve``, tiny random-weight models) is started in this
process; a small ``POST /v1/pose3d`` (one keypoint frame, median) is timed on the idle service. Then, per scenario,
``GET /healthz`` is timed back to back by another process until the big work ends:

- ``body``: another process posts a ``--megabytes`` MB keypoints document (over the frame limit: 413) — the parse;
- ``answer``: another process posts ``--frames`` keypoint frames and reads the whole 200 answer — the encoding;
- ``jobs``: two ``--frames``-frame keypoint jobs run at once (``POST /v1/jobs``) until both are done.

Every client (the posters, the prober) is its own process, so that no client work shares the gateway's GIL.
Printed per scenario: the worst and p50 /healthz time (targets: ≤ 10× the small request for ``body``, ≤ 100 ms for
the answer side), with the configuration and the load average, and the longest pass of Python's cyclic garbage
collector meanwhile (it holds the GIL, so the loop, for the whole pass: with the start-up heap in sight, a full pass
took about 0.25 s). The suite's tests of the same properties
(``tests/service/test_large_bodies.py``, ``tests/service/test_answer_off_loop.py``) are clock-free; the figures come
from here::

    python -m bench.loop_stall --megabytes 60 --frames 20000
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import httpx

from service.config import EngineSettings, LimitSettings
from tests.service.rest_support import LiveServer, tiny_settings
from tests.service.test_large_bodies import POST, big_body


def timed(call: httpx.Client, method: str, path: str, **kwargs: object) -> float:
    started = time.perf_counter()
    response = call.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


POSE = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]

PROBE = """
import json, sys, time, httpx
from pathlib import Path
stop, during = Path(sys.argv[2]), []
with httpx.Client(base_url=sys.argv[1], timeout=600) as client:
    while not stop.exists():
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        during.append(time.perf_counter() - started)
print(json.dumps(during))
"""
"""/healthz back to back in its own process (no GIL shared with the gateway) until the file ``argv[2]`` exists."""

ANSWER = """
import sys, time, httpx
with open(sys.argv[2], "rb") as fh:
    body = fh.read()
started = time.perf_counter()
r = httpx.post(sys.argv[1] + "/v1/pose3d", content=body, headers={"content-type": "application/json"}, timeout=600)
print(r.status_code, len(r.json()["frames"]), "frames in", round(time.perf_counter() - started, 1), "s")
"""


class CollectorWatch:
    """The longest pass of the cyclic garbage collector in this process (the gateway's) while it is installed."""

    def __init__(self) -> None:
        self.started = 0.0
        self.longest = 0.0
        self.full_passes = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        self.longest = max(self.longest, time.perf_counter() - self.started)
        self.full_passes += info["generation"] == 2

    def __enter__(self) -> CollectorWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def summary(self) -> str:
        return f"longest collector pass {self.longest * 1e3:.1f} ms ({self.full_passes} full passes)"


class Probe:
    """A prober process timing /healthz until :meth:`stop`."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.stop_file = tmp / "stop-probe"
        self.stop_file.unlink(missing_ok=True)
        self.process = subprocess.Popen([sys.executable, "-c", PROBE, url, str(self.stop_file)], stdout=subprocess.PIPE)

    def stop(self) -> list[float]:
        self.stop_file.touch()
        out, _ = self.process.communicate()
        during: list[float] = json.loads(out)
        return during


def baseline(server: LiveServer, runs: int) -> float:
    small = {"json": {"keypoints_2d": POSE, "image_size": [640, 480]}}
    with server.client(timeout_s=600) as client:
        for _ in range(5):
            timed(client, "GET", "/healthz")
        return statistics.median(timed(client, "POST", "/v1/pose3d", **small) for _ in range(runs))


def during_client(server: LiveServer, script: str, body_path: Path, tmp: Path) -> tuple[list[float], str]:
    """/healthz times while another process runs the client ``script`` with ``body_path``; what that process
    printed, with the longest collector pass meanwhile."""
    with CollectorWatch() as collector:
        probe = Probe(server.url, tmp)
        client = subprocess.Popen([sys.executable, "-c", script, server.url, str(body_path)], stdout=subprocess.PIPE)
        out, _ = client.communicate()
        during = probe.stop()
    return during, f"{out.decode().strip()}; {collector.summary()}"


JOBS = """
import sys, time, httpx
with open(sys.argv[2], "rb") as fh:
    body = fh.read()
with httpx.Client(base_url=sys.argv[1], timeout=600) as client:
    json_type = {"content-type": "application/json"}
    ids = [client.post("/v1/jobs", content=body, headers=json_type).json()["job_id"] for _ in range(2)]
    states = {}
    while len(states) < len(ids):
        time.sleep(0.5)
        for job_id in ids:
            status = client.get(f"/v1/jobs/{job_id}").json()
            if status["state"] in ("done", "failed", "cancelled"):
                states[job_id] = status
print(", ".join(f"{s['state']} {s['frames_done']} frames at {s['frames_per_second']} frames/s" for s in states.values()))
"""
"""Two keypoint jobs of the document ``argv[2]`` submitted at once; waits until both end; prints each one's rate."""


def report(name: str, during: list[float], small: float, target: str, what: str) -> None:
    print(
        f"[{name}] {what}; load average {os.getloadavg()[0]:.1f}\n"
        f"[{name}] /healthz meanwhile: {len(during)} answers, p50 {statistics.median(during) * 1e3:.1f} ms, "
        f"worst {max(during) * 1e3:.1f} ms = {max(during) / small:.2f}× the small request (target {target})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=60)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--baseline-runs", type=int, default=15)
    parser.add_argument(
        "--scenarios", nargs="+", choices=("body", "answer", "jobs"), default=["body", "answer", "jobs"]
    )
    parser.add_argument(
        "--no-gc-freeze", action="store_true", help="as before: the start-up heap stays in the collector's sight"
    )
    args = parser.parse_args()
    limits = LimitSettings(max_body_bytes=(args.megabytes + 20) * 1024 * 1024, max_clip_frames=args.frames)
    settings = tiny_settings(limits=limits, engine=EngineSettings(request_timeout_s=600.0))
    server = LiveServer(settings)
    with mock.patch.object(gc, "freeze") if args.no_gc_freeze else contextlib.nullcontext():
        server.start()  # the gateway freezes its start-up heap once started (gc.freeze in the app's lifespan)
    print(
        f"configuration: gateway with in-process engine (pose3d serve; tiny random-weight models, keypoints model "
        f"{settings.default_clip_model}, engine/jobs settings at their defaults but request_timeout_s 600), uvicorn, "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, start-up heap "
        f"{'not frozen (--no-gc-freeze)' if args.no_gc_freeze else 'frozen'}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    try:
        small = baseline(server, args.baseline_runs)
        print(f"small request (1 keypoint frame, median of {args.baseline_runs}): {small * 1e3:.1f} ms")
        with tempfile.TemporaryDirectory() as tmp_dir:
            tmp = Path(tmp_dir)
            if "body" in args.scenarios:
                body_path = tmp / "body.json"
                body_path.write_bytes(big_body(args.megabytes))
                during, answer = during_client(server, POST, body_path, tmp)
                what = f"body {body_path.stat().st_size / 1e6:.1f} MB of keypoints JSON → {answer}"
                report("body", during, small, "≤ 10×", what)
            body_path = tmp / "keypoints.json"
            body_path.write_text(json.dumps({"keypoints_2d": [POSE] * args.frames, "image_size": [640, 480]}))
            if "answer" in args.scenarios:
                during, answer = during_client(server, ANSWER, body_path, tmp)
                what = f"POST /v1/pose3d {args.frames} keypoint frames → {answer}"
                report("answer", during, small, "worst ≤ 100 ms", what)
            if "jobs" in args.scenarios:
                during, rates = during_client(server, JOBS, body_path, tmp)
                report(
                    "jobs", during, small, "worst ≤ 100 ms", f"two {args.frames}-frame keypoint jobs at once → {rates}"
                )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
