"""``python -m bench.overload`` (also ``python -m bench overload``): goodput under 3× overload, admission by expected
time vs by count, side by side in one run (issue 10).

For each admission mode (``engine.admission = "time"``, then ``"count"``, the rule before issue 10) the bench starts
a real ``pose3d serve`` in a child process (uvicorn, the in-process engine, tiny random-weight models: HRNet-micro
and CA-PF tiny, the shipped torch threads unless ``--threads``) on a free port, then

1. measures **capacity**: ``--concurrency`` closed-loop clients post one JPEG each (``POST /v1/pose3d``, one person,
   whole-frame box) for ``--capacity-seconds``, after a short warm-up, before and after each load (goodput is
   divided by their mean: on a shared machine the CPU the server gets drifts);
2. drives ``--load`` × that capacity **open loop** (Poisson arrivals, fixed seed) for ``--seconds``, every request
   with ``X-Request-Timeout: --deadline-s``, and waits for every request to end;

The load comes from a process of its own (:mod:`bench.overload_client`: the same pre-built request bytes over raw
keep-alive sockets), as light as it can be since it shares the cores with the server; the share of a core it used
and the server's are printed beside the figures. It prints capacity, offered rate, goodput (200s that met their deadline and completed inside the window, per
second) ÷ capacity, the share of admitted requests (all but 429/503) that met their deadline, refusal latency
p50/p99, counts by status, and the configuration (models, threads, input size, device, torch version, load
average). ``--out`` receives ``overload.json`` and ``overload.md``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.overload_client import Phase
from bench.overload_report import Outcome, engine_figures, markdown, summarise
from bench.overload_server import BatchOverrides, ServedGateway, gateway_settings
from service.client.sources import encode_frame, synthetic_image
from service.config import Device, EngineSettings

TIMEOUT_HEADER = "X-Request-Timeout"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.overload", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0, help="open-loop phase length (default 30)")
    p.add_argument(
        "--load",
        type=float,
        nargs="+",
        default=[3.0],
        help="offered rate ÷ measured capacity, one run each (default 3)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop clients measuring capacity (default 8)")
    p.add_argument("--capacity-seconds", type=float, default=10.0, help="capacity phase length (default 10)")
    p.add_argument(
        "--deadline-s", type=float, default=30.0, help="X-Request-Timeout of every request (default 30: the service's)"
    )
    p.add_argument("--size", default="320x240", help="JPEG width x height (default 320x240)")
    p.add_argument("--batch", type=int, default=None, help="engine.max_batch_size (default: the shipped default)")
    p.add_argument("--delay-ms", type=float, default=None, help="engine.max_delay_ms (default: the shipped default)")
    p.add_argument(
        "--detect-batch", type=int, default=None, help="engine.detect.max_batch_size (default: the shipped default)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="engine.torch_threads of the server (default: the shipped default)"
    )
    p.add_argument(
        "--wait-fraction",
        type=float,
        default=None,
        help="engine.admission_wait_fraction: share of the deadline a request may wait (default: the shipped one)",
    )
    p.add_argument("--modes", nargs="+", choices=("time", "count"), default=["time", "count"])
    p.add_argument("--seed", type=int, default=10, help="seed of the Poisson arrivals")
    p.add_argument("--out", type=Path, default=Path("bench/results"), help="directory for overload.json/.md")
    return p.parse_args(argv)


def request_bytes(port: int, jpeg: bytes, deadline_s: float | None) -> bytes:
    """The one request every client sends: ``POST /v1/pose3d`` with ``jpeg`` as the multipart ``file`` (and
    ``X-Request-Timeout: deadline_s`` unless ``None``), built once as bytes."""
    boundary = b"pose3dbenchboundary"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="person.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + jpeg + b"\r\n--" + boundary + b"--\r\n"
    )
    timeout = f"{TIMEOUT_HEADER}: {deadline_s:g}\r\n" if deadline_s is not None else ""
    head = (
        f"POST /v1/pose3d HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary.decode()}\r\nContent-Length: {len(body)}\r\n"
        f"{timeout}\r\n"
    )
    return head.encode() + body


def drive(phase: Phase, workdir: Path) -> tuple[list[Outcome], float]:
    """Run ``phase`` in a child process (:mod:`bench.overload_client`); its outcomes and the share of one core the
    client used (CPU seconds ÷ wall seconds)."""
    spec = workdir / "phase.json"
    spec.write_text(json.dumps(asdict(phase)))
    cmd = [sys.executable, "-m", "bench.overload_client", str(spec)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)
    return [Outcome(*o) for o in result["outcomes"]], result["cpu_s"] / result["wall_s"]


def overrides(args: argparse.Namespace) -> BatchOverrides:
    """The batch settings the command line changed from the shipped defaults."""
    return BatchOverrides(args.batch, args.delay_ms, args.detect_batch, args.wait_fraction, args.threads)


def capacity(served: ServedGateway, phase: Phase, workdir: Path) -> tuple[float, float, dict[str, Any]]:
    """Requests per second that ``phase`` (closed loop) got answered 200 within its seconds, the server's CPU
    (cores) meanwhile and what its engine did (:func:`engine_figures`)."""
    server_cpu, totals = served.cpu_s(), served.engine_totals()
    outcomes, _ = drive(phase, workdir)
    elapsed = max(o.done for o in outcomes)
    cores = (served.cpu_s() - server_cpu) / elapsed
    cap = sum(1 for o in outcomes if o.status == 200 and o.done <= phase.seconds) / phase.seconds
    if cap <= 0:
        raise SystemExit(f"no request succeeded while measuring capacity (see {served.log_path})")
    return cap, cores, engine_figures(totals, served.engine_totals(), elapsed)


def run_mode(mode: str, args: argparse.Namespace, jpeg: bytes, workdir: Path) -> list[dict[str, Any]]:
    """One gateway with ``engine.admission = mode``; for each ``--load`` in turn, its capacity, that load against
    it, and its capacity again."""
    settings = gateway_settings(mode, args.deadline_s, overrides(args))
    results: list[dict[str, Any]] = []
    with ServedGateway(settings, workdir / f"gateway-{mode}") as served:
        plain, timed = workdir / "request.http", workdir / "request-deadline.http"
        plain.write_bytes(request_bytes(served.port, jpeg, None))
        timed.write_bytes(request_bytes(served.port, jpeg, args.deadline_s))
        base = Phase("127.0.0.1", served.port, str(plain), 2.0, concurrency=args.concurrency)
        drive(base, workdir)  # warm-up: the first batches measure the stages' rates
        for load in args.load:
            cap, cap_server_cores, cap_engine = capacity(served, replace(base, seconds=args.capacity_seconds), workdir)
            load_before = os.getloadavg()
            server_cpu, totals = served.cpu_s(), served.engine_totals()
            phase = replace(base, request_path=str(timed), seconds=args.seconds, rate=load * cap, seed=args.seed)
            outcomes, client_cores = drive(phase, workdir)
            elapsed = max(o.done for o in outcomes)
            server_cores = (served.cpu_s() - server_cpu) / elapsed
            engine = engine_figures(totals, served.engine_totals(), elapsed)
            load_after = os.getloadavg()
            time.sleep(args.deadline_s)  # the queues drain before capacity is measured again
            cap_after, _, _ = capacity(served, replace(base, seconds=args.capacity_seconds), workdir)
            result = summarise(outcomes, (cap + cap_after) / 2, load * cap, args.seconds, args.deadline_s)
            result.update(capacity_before_rps=round(cap, 2), capacity_after_rps=round(cap_after, 2))
            result.update(mode=mode, load=load, load_average_before=load_before, load_average_after=load_after)
            result.update(client_cpu_cores=round(client_cores, 3), server_cpu_cores=round(server_cores, 3))
            result.update(capacity_server_cpu_cores=round(cap_server_cores, 3), engine=engine)
            result.update(capacity_engine={k: v for k, v in cap_engine.items() if "batch" in k})
            print(json.dumps({k: v for k, v in result.items() if k != "latencies"}), flush=True)
            results.append(result)
            time.sleep(args.deadline_s)  # the queues drain before the next phase
    return results


def resolved_threads(setting: int) -> int:
    """The intra-op threads the server's torch runs: ``setting``, or torch's own default (asked of a fresh
    interpreter, so the bench itself never imports torch) when it is 0."""
    if setting:
        return setting
    ask = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]
    return int(subprocess.run(ask, check=True, capture_output=True, text=True).stdout)


def configuration(args: argparse.Namespace) -> dict[str, Any]:
    from bench.suite import cpu_name

    engine = EngineSettings.model_validate(overrides(args).engine())
    detect_batch, _ = engine.stage_batch("detect", Device.CPU)
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "models": "detector hrnet-micro (flip off) → CA-PF capf-tiny (flip off), random weights",
        "engine": {k: getattr(engine, k) for k in ("max_batch_size", "max_delay_ms", "max_queue")}
        | {"torch_threads": f"{engine.torch_threads} (runs {resolved_threads(engine.torch_threads)})"}
        | {"detect.max_batch_size": detect_batch}
        | {k: getattr(engine, k) for k in ("admission_wait_fraction", "rate_window_s")},
        "batch_settings": "overridden on the command line" if overrides(args).engine() else "shipped defaults",
        "gateway_max_inflight_requests": 256,
        "input": f"JPEG {args.size}, one person, whole-frame box",
        "device": f"cpu ({cpu_name()}), {os.cpu_count()} cores",
        "torch": importlib.metadata.version("torch"),
        "python": sys.version.split()[0],
        "concurrency": args.concurrency,
        "load": args.load,
        "seconds": args.seconds,
        "capacity_seconds": args.capacity_seconds,
        "deadline_s": args.deadline_s,
        "arrivals": f"Poisson, seed {args.seed}",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    width, height = (int(v) for v in args.size.lower().split("x"))
    jpeg = encode_frame(synthetic_image(0, width, height), "jpeg")
    config = configuration(args)
    runs = []
    with tempfile.TemporaryDirectory(prefix="pose3d-overload-") as tmp:
        for mode in args.modes:
            loads = ", ".join(f"{load:g}x" for load in args.load)
            print(f"[{mode}] starting the gateway, measuring capacity, then {loads} for {args.seconds:g} s each",
                  flush=True)  # fmt: skip
            runs.extend(run_mode(mode, args, jpeg, Path(tmp)))
    return {"configuration": config, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overload.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (args.out / "overload.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'overload.json'}, {args.out / 'overload.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
