"""``python -m bench.refusal_cost``: the serving process's CPU per over-capacity refusal, refused from the request's
head inside the HTTP protocol vs by the engine's door after the app has read and parsed the body (the only road at
``pose3d serve`` before the head's door reached through the ownership wrapper).

One gateway per road runs in this process (uvicorn in a thread, the in-process engine with the overload bench's tiny
models, the door forced to refuse every estimate: the head's probe, or the engine's ``admit``); the overload bench's
load generator (:mod:`bench.overload_client`, its own process) sends ``--concurrency`` closed-loop streams of the
overload bench's request (a 320×240 JPEG, multipart) for ``--seconds``. CPU per refusal = this process's CPU seconds
(user + system) over the phase ÷ refusals; printed with the configuration and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from bench.overload import drive, request_bytes
from bench.overload_client import Phase
from bench.overload_server import BatchOverrides, gateway_settings
from bench.redis_server import free_port
from service.assembly import in_process_engine
from service.client.sources import encode_frame, synthetic_image
from service.config import GatewaySettings
from service.engine import inprocess
from service.engine.admission import Refusal
from service.errors import OverCapacity
from service.gateway.app import create_app
from service.gateway.http_head import bounded_protocol
from service.gateway.limits import HeadDoor

REFUSAL = Refusal("expected-wait", "over capacity: forced by bench.refusal_cost", 1.0)


def _refuse(*_: Any, **__: Any) -> Any:
    raise OverCapacity(REFUSAL.detail, retry_after_s=REFUSAL.retry_after_s)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(road: str, args: argparse.Namespace, jpeg: bytes, workdir: Path) -> dict[str, Any]:
    """One gateway refusing every estimate on ``road`` (``head`` or ``app``), loaded for ``args.seconds``."""
    settings = GatewaySettings.model_validate(gateway_settings("time", 30.0, BatchOverrides()) | {"port": free_port()})
    app = create_app(settings, engine_factory=in_process_engine)
    state = app.state
    door = HeadDoor(settings.limits, state.gateway.metrics, state.security.in_flight) if road == "head" else None
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.port, log_level="warning", http=bounded_protocol(settings.limits, door)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    state.security.in_flight.probe = (lambda images, timeout_s: REFUSAL) if road == "head" else None
    inprocess.admit = _refuse  # type: ignore[attr-defined]  # the app road: refused by the engine's door
    path = workdir / f"request-{road}.http"
    path.write_bytes(request_bytes(settings.port, jpeg, 5.0))
    phase = Phase("127.0.0.1", settings.port, str(path), args.seconds, concurrency=args.concurrency)
    load, cpu = os.getloadavg(), _cpu_s()
    outcomes, client_cores = drive(phase, workdir)
    cpu = _cpu_s() - cpu
    server.should_exit = True
    thread.join(30)
    refused = [o for o in outcomes if o.status == 503]
    return {
        "road": road,
        "refusals": len(refused),
        "other_statuses": sorted({o.status for o in outcomes} - {503}),
        "server_cpu_us_per_refusal": round(cpu / max(1, len(refused)) * 1e6, 1),
        "refusals_per_s": round(len(refused) / args.seconds, 1),
        "client_cpu_cores": round(client_cores, 3),
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.refusal_cost", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="load per road (default 10)")
    p.add_argument("--concurrency", type=int, default=8, help="closed-loop clients (default 8)")
    args = p.parse_args(argv)
    jpeg = encode_frame(synthetic_image(0, 320, 240), "jpeg")
    print(
        f"configuration: pose3d serve's app in-process, tiny models (overload bench), every estimate refused; "
        f"request: POST /v1/pose3d, JPEG 320x240 ({len(jpeg)} bytes) multipart; {args.concurrency} closed-loop "
        f"clients for {args.seconds:g} s per road; {os.cpu_count()} cores; python {sys.version.split()[0]}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="pose3d-refusal-") as tmp:
        for road in ("head", "app"):
            print(json.dumps(measure(road, args, jpeg, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
