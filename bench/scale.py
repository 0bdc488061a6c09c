"""``python -m bench scale``: G gateways × W worker processes on loopback, tiny random-weight models, one Redis —
and the same against a 3-node Redis Cluster in the same run — under N concurrent gRPC streams at a fixed frame
rate each (open loop, bounded; bench/scale_load.py), for each N in ``--streams``.

Per backend and N: frames/s answered, per-frame latency p50/p99 (send → result, causal mode: no window lag),
Redis scripts (EVALSHA: round trips on the buffer path) and commands (``INFO commandstats`` counts those run
inside scripts too) and bytes per answered frame (``INFO stats``), summed over the nodes,
CPU ms per answered frame per process type (gateways, workers, Redis, the load client; from /proc), errors.
Every table carries the configuration and the machine's load average (before and after each level).

    python -m bench scale --gateways 1 --workers 2 --streams 100 300 1000 --fps 2 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.redis_cluster import RedisClusterServers
from bench.redis_server import start_redis
from bench.scale_load import LoadResult, run_load
from tests.e2e.deployment import Proc, deployment_env, new_gateway, new_worker, wait_all_serving

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass
class Backend:
    """One Redis (single server or cluster): the URL the services take, its node ports and pids."""

    name: str
    url: str
    ports: list[int]
    pids: list[int]

    def counters(self) -> tuple[dict[str, int], int]:
        """(calls by command, bytes in + out) served so far, summed over the nodes; our own INFO not counted."""
        commands: dict[str, int] = {}
        traffic = 0
        for port in self.ports:
            client = redis.Redis(port=port)
            for name, value in client.info("commandstats").items():
                command = name.removeprefix("cmdstat_")
                if command != "info":
                    commands[command] = commands.get(command, 0) + int(value["calls"])
            net = client.info("stats")
            traffic += int(net["total_net_input_bytes"]) + int(net["total_net_output_bytes"])
            client.close()
        return commands, traffic


class Deployment:
    """W workers and G gateways (``pose3d worker`` / ``pose3d gateway`` processes) on one Redis backend."""

    def __init__(self, backend: Backend, gateways: int, workers: int, logs: Path) -> None:
        env = deployment_env(backend.url)
        env["POSE3D_LIMITS__MAX_INFLIGHT_REQUESTS"] = "100000"
        env["POSE3D_ENGINE__MAX_STREAMS"] = "100000"
        self.workers = [new_worker(f"{backend.name}-worker-{i}", env, logs) for i in range(workers)]
        self.gateways = []
        for i in range(gateways):
            gateway = new_gateway(self.workers, env, logs)
            gateway.name, gateway.log = f"{backend.name}-gateway-{i}", logs / f"{backend.name}-gateway-{i}.log"
            self.gateways.append(gateway)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        wait_all_serving(self.workers, timeout_s=600)
        for gateway in self.gateways:
            gateway.start()
        for gateway in self.gateways:
            gateway.wait_ready(timeout_s=600)

    def stop(self) -> None:
        for proc in [*self.gateways, *self.workers]:
            proc.stop()


def _cpu(procs: list[Proc] | list[int]) -> float:
    return sum(cpu_seconds(p if isinstance(p, int) else p.pid) for p in procs)


def measure(backend: Backend, deployment: Deployment, streams: int, args: argparse.Namespace) -> dict[str, Any]:
    """One level: N streams through the deployment; the figures per answered frame."""
    groups: dict[str, list[Any]] = {
        "gateway": list(deployment.gateways),
        "worker": list(deployment.workers),
        "redis": list(backend.pids),
        "client": [os.getpid()],
    }
    load_before = load_average()
    cpu_before = {k: _cpu(v) for k, v in groups.items()}
    commands_before, bytes_before = backend.counters()
    addresses = [g.grpc_address for g in deployment.gateways]
    result: LoadResult = asyncio.run(run_load(addresses, streams, args.fps, args.seconds, args.drain))
    commands_after, bytes_after = backend.counters()
    calls = Counter({k: v - commands_before.get(k, 0) for k, v in commands_after.items()})
    cpu_after = {k: _cpu(v) for k, v in groups.items()}
    answered = max(1, result.answered)
    latency = sorted(result.latency_ms) or [float("nan")]
    return {
        "backend": backend.name,
        "streams": streams,
        "offered_fps": streams * args.fps,
        "answered_fps": result.answered / result.seconds,
        "sent": result.sent,
        "answered": result.answered,
        "p50_ms": statistics.median(latency),
        "p99_ms": latency[min(len(latency) - 1, int(0.99 * len(latency)))],
        "redis_commands_per_frame": sum(calls.values()) / answered,  # commandstats counts in-script calls too
        "redis_scripts_per_frame": (calls["evalsha"] + calls["eval"]) / answered,
        "redis_commands_by_name_per_frame": {k: round(v / answered, 3) for k, v in calls.most_common(6)},
        "redis_bytes_per_frame": (bytes_after - bytes_before) / answered,
        "cpu_ms_per_frame": {k: 1000.0 * (cpu_after[k] - cpu_before[k]) / answered for k in groups},
        "cpu_cores_busy": {k: (cpu_after[k] - cpu_before[k]) / result.seconds for k in groups},
        "errors": result.errors,
        "load_before": load_before,
        "load_after": load_average(),
    }


def start_backends(workdir: Path, which: list[str]) -> tuple[list[Backend], list[Any]]:
    backends, stoppers = [], []
    if "single" in which:
        proc, url = start_redis(str(workdir))
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        backends.append(Backend("single", url, [port], [proc.pid]))
        stoppers.append(proc.terminate)
    if "cluster" in which:
        (workdir / "cluster").mkdir()
        cluster = RedisClusterServers(workdir / "cluster").start()
        backends.append(Backend("cluster", cluster.url, cluster.ports, [p.pid for p in cluster.procs]))
        stoppers.append(cluster.stop)
    return backends, stoppers


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| backend | streams | offered f/s | answered f/s | p50 ms | p99 ms | Redis scripts · cmds /frame | Redis B/frame "
        "| CPU ms/frame gw · wk · redis · client | cores busy gw · wk · redis · client | errors | load before → after |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        cpu = " · ".join(f"{r['cpu_ms_per_frame'][k]:.2f}" for k in ("gateway", "worker", "redis", "client"))
        busy = " · ".join(f"{r['cpu_cores_busy'][k]:.2f}" for k in ("gateway", "worker", "redis", "client"))
        lines.append(
            f"| {r['backend']} | {r['streams']} | {r['offered_fps']:.0f} | {r['answered_fps']:.0f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['redis_scripts_per_frame']:.2f} · {r['redis_commands_per_frame']:.1f} "
            f"| {r['redis_bytes_per_frame']:.0f} | {cpu} | {busy} | {r['errors'] or 0} "
            f"| {r['load_before']} → {r['load_after']} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--gateways", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--streams", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--fps", type=float, default=2.0, help="frames per second per stream")
    p.add_argument("--seconds", type=float, default=15.0, help="frames due per stream: fps × seconds")
    p.add_argument("--drain", type=float, default=20.0, help="seconds allowed after the last frame is due")
    p.add_argument("--backends", nargs="+", default=["single", "cluster"], choices=["single", "cluster"])
    p.add_argument("--out", type=Path, default=None, help="write scale.json and scale.md here")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    config = {
        "gateways": args.gateways,
        "workers": args.workers,
        "fps_per_stream": args.fps,
        "seconds": args.seconds,
        "models": "hrnet-micro detector (unused: keypoint input), P-STMO tiny 9 frames, causal, random weights",
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
    }
    print("configuration: " + json.dumps(config), flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pose3d-scale-") as tmp:
        backends, stoppers = start_backends(Path(tmp), args.backends)
        try:
            for backend in backends:
                deployment = Deployment(backend, args.gateways, args.workers, Path(tmp))
                try:
                    deployment.start()
                    for streams in args.streams:
                        rows.append(measure(backend, deployment, streams, args))
                        print(table(rows[-1:]).splitlines()[-1], flush=True)
                        print(f"  Redis commands per frame: {rows[-1]['redis_commands_by_name_per_frame']}", flush=True)
                finally:
                    deployment.stop()
        finally:
            for stop in stoppers:
                stop()
    report = (
        f"configuration: {json.dumps(config)}\n\n{table(sorted(rows, key=lambda r: (r['streams'], r['backend'])))}\n"
    )
    print("\n" + report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps({"configuration": config, "rows": rows}, indent=1))
        (args.out / "scale.md").write_text(report)
    return 0
