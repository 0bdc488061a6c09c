"""How long the gateway's event loop is held while a large JSON body is parsed (issue 10's ×10 bar).

A real gateway (uvicorn, in-process engine, tiny random-weight models) is started in this process. First the
median time of a small ``POST /v1/pose3d`` (one keypoint frame) on the idle service is measured; then another
process posts a ``--megabytes`` MB keypoints document (over the frame limit: the answer is 413) while this process
times ``GET /healthz`` back to back until that answer comes. Printed: the baseline, the worst and p50 /healthz
time during the big request, their ratio (target ≤ 10), and the configuration. The suite's test of the same
property (``tests/service/test_large_bodies.py``) is clock-free; this is where the figure comes from::

    python -m bench.loop_stall --megabytes 60
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from service.config import LimitSettings
from tests.service.rest_support import LiveServer, tiny_settings
from tests.service.test_large_bodies import POST, big_body


def timed(call: httpx.Client, method: str, path: str, **kwargs: object) -> float:
    started = time.perf_counter()
    response = call.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


def measure(server: LiveServer, body_path: Path, baseline_runs: int) -> tuple[float, list[float], str]:
    pose = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]
    small = {"json": {"keypoints_2d": pose, "image_size": [640, 480]}}
    with server.client(timeout_s=600) as client:
        for _ in range(5):
            timed(client, "GET", "/healthz")
        baseline = statistics.median(timed(client, "POST", "/v1/pose3d", **small) for _ in range(baseline_runs))
        poster = subprocess.Popen([sys.executable, "-c", POST, server.url, str(body_path)], stdout=subprocess.PIPE)
        during: list[float] = []
        while poster.poll() is None:
            during.append(timed(client, "GET", "/healthz"))
        out, _ = poster.communicate()
    return baseline, during, out.decode().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=60)
    parser.add_argument("--baseline-runs", type=int, default=15)
    args = parser.parse_args()
    limits = LimitSettings(max_body_bytes=(args.megabytes + 20) * 1024 * 1024)
    server = LiveServer(tiny_settings(limits=limits))
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            body_path = Path(tmp) / "body.json"
            body_path.write_bytes(big_body(args.megabytes))
            size_mb = body_path.stat().st_size / 1e6
            baseline, during, answer = measure(server, body_path, args.baseline_runs)
    finally:
        server.stop()
    print(
        f"configuration: gateway with in-process engine (tiny random-weight models), uvicorn, python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"body {size_mb:.1f} MB of keypoints JSON → {answer}"
    )
    print(f"small request (1 keypoint frame, median of {args.baseline_runs}): {baseline * 1e3:.1f} ms")
    print(
        f"/healthz during the big request: {len(during)} answers, p50 {statistics.median(during) * 1e3:.1f} ms, "
        f"worst {max(during) * 1e3:.1f} ms = {max(during) / baseline:.2f}× the small request (target ≤ 10×)"
    )


if __name__ == "__main__":
    main()
