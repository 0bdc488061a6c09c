"""Gateway footprint and CLI start-up, side by side for two source trees (e.g. main and this branch).

For each tree: the wall time of ``pose3d --help`` (median of ``--runs``), whether it loaded torch, and the
resident memory (VmRSS) of a ``pose3d gateway --workers <worker>`` process after start and after
``--requests`` requests (images as multipart JPEG, ``--width``×``--height``, to ``POST /v1/pose3d``). The worker
is the tests' toy engine (deterministic arithmetic, no network) behind the real worker servicer, in this process,
so the figures are the gateway's own. Run from the repo root::

    git archive <main commit> | (mkdir -p /tmp/before && tar -x -C /tmp/before)
    python bench/footprint.py --tree before=/tmp/before --tree after=.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.service.grpc_toy_engine import ToyEngine  # noqa: E402
from tests.service.test_grpc_remote import Worker, start_worker  # noqa: E402


def _env(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSE3D_")}
    env.update(PYTHONPATH=str(tree), POSE3D_DEFAULT_IMAGE_MODEL="toy", POSE3D_DEFAULT_CLIP_MODEL="toy")
    return env


def help_seconds(tree: Path, runs: int) -> tuple[float, bool]:
    """Median wall seconds of ``pose3d --help`` in ``tree``, and whether it imported torch."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "service.cli", "--help"], env=_env(tree), cwd=tree, check=True, capture_output=True
        )
        times.append(time.perf_counter() - started)
    probe = (
        "import sys, contextlib\nfrom service.cli import main\nwith contextlib.suppress(SystemExit): main(['--help'])\n"
    )
    probe += "print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=_env(tree), cwd=tree, check=True, capture_output=True, text=True
    )
    return statistics.median(times), out.stdout.strip().endswith("True")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def gateway_rss(tree: Path, worker: str, requests: int, image: bytes) -> tuple[float, float, bool]:
    """RSS (MB) of a gateway process over ``worker`` after start and after ``requests`` requests; torch mapped?"""
    port = free_port()
    argv = [sys.executable, "-m", "service.cli", "gateway", "--workers", worker, "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--grpc-port", "0"]
    process = subprocess.Popen(argv, env=_env(tree), cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=60.0) as http:
            for _ in range(600):
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            time.sleep(1.0)
            started = rss_mb(process.pid)
            for _ in range(requests):
                answer = http.post("/v1/pose3d", files={"file": ("frame.jpg", image)})
                if answer.status_code != 200:
                    raise RuntimeError(f"{tree}: {answer.status_code} {answer.text}")
            after = rss_mb(process.pid)
            torch_mapped = "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()
    finally:
        process.terminate()
        process.wait(30)
    return started, after, torch_mapped


def toy_worker() -> tuple[Worker, asyncio.AbstractEventLoop]:
    """The toy worker on its own event loop in a thread (keep the Worker: its server stops when collected)."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    worker = asyncio.run_coroutine_threadsafe(start_worker(ToyEngine()), loop).result(30)
    return worker, loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH of a source tree (repeat)")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="pose3d --help runs (median)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    pixels = cv2.GaussianBlur(noise, (0, 0), 3)  # photo-like: a ~40 kB JPEG at 640x480
    image = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    worker, loop = toy_worker()
    print(
        f"# python {sys.version.split()[0]}, {os.cpu_count()} CPUs; gateway over 1 toy worker (in the bench process); "
        f"{args.requests} requests of a {args.width}x{args.height} JPEG ({len(image)} bytes); "
        f"pose3d --help median of {args.runs}"
    )
    print(f"{'tree':<10} {'--help s':>9} {'torch':>6} {'RSS start MB':>13} {'RSS after MB':>13} {'libtorch':>9}")
    for spec in args.tree:
        name, _, path = spec.partition("=")
        tree = Path(path).resolve()
        seconds, help_torch = help_seconds(tree, args.runs)
        start, after, mapped = gateway_rss(tree, worker.address, args.requests, image)
        print(f"{name:<10} {seconds:>9.3f} {help_torch!s:>6} {start:>13.1f} {after:>13.1f} {mapped!s:>9}")
    loop.call_soon_threadsafe(loop.stop)


if __name__ == "__main__":
    main()
