"""The gateway, the client and the CLI never load PyTorch (nor model code beyond the torch-free model.joints).

Each check runs in a fresh interpreter (this test process has torch loaded by other tests) and asserts on
``sys.modules`` there: after ``import service.client``, after ``pose3d --help``, after building and using the
gateway app over a remote worker, and after ``pose3d estimate`` (REST and gRPC) and ``pose3d stream`` against a
live ``pose3d gateway`` process over a worker. That gateway process is checked too: no libtorch in its memory map.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import cv2
import httpx
import numpy as np
import pytest

from service.client import AsyncPose3DClient, EstimateArgs, Pose3DClient, PoseResult
from service.errors import UnknownModel, UnsupportedMediaType
from tests.conftest import free_port
from tests.service.grpc_toy_engine import ToyEngine
from tests.service.test_grpc_remote import Worker, start_worker

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter after the snippet: what it loaded of torch and of model.
REPORT = """
import json, sys
print("LOADED " + json.dumps({
    "torch": "torch" in sys.modules,
    "model": sorted(m for m in sys.modules if m == "model" or m.startswith("model.")),
}))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSE3D_")}
    env["PYTHONPATH"] = str(ROOT)
    env["POSE3D_DEFAULT_IMAGE_MODEL"] = "toy"
    env["POSE3D_DEFAULT_CLIP_MODEL"] = "toy"
    return env


async def _loaded_after(snippet: str) -> dict[str, object]:
    """Run ``snippet`` in a fresh interpreter (off the event loop: the toy worker lives on it)."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", snippet + REPORT],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=ROOT,
            timeout=120,
        )

    done = await asyncio.to_thread(run)
    lines = [line for line in done.stdout.splitlines() if line.startswith("LOADED ")]
    assert done.returncode == 0, f"snippet failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert lines, done.stdout
    loaded: dict[str, object] = json.loads(lines[-1][len("LOADED ") :])
    return loaded


def _assert_light(loaded: dict[str, object]) -> None:
    assert loaded["torch"] is False, loaded
    assert loaded["model"] in ([], ["model", "model.joints"]), loaded


def _cli(*argv: str) -> str:
    """A snippet running ``pose3d *argv`` in-process (``--help`` exits 0 through SystemExit)."""
    return (
        "import contextlib, sys\nfrom service.cli import main\n"
        f"with contextlib.suppress(SystemExit):\n    rc = main({list(argv)!r})\n    assert rc == 0, rc\n"
    )


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    started = await start_worker(ToyEngine())
    yield started
    await started.server.stop(0)


@dataclass
class LiveGateway:
    url: str
    grpc: str
    process: subprocess.Popen[bytes]


def _spawn(argv: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=_env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def _libtorch_mapped(pid: int) -> bool:
    """Whether libtorch is in process ``pid``'s memory map (False where /proc is not there)."""
    maps = Path(f"/proc/{pid}/maps")
    return maps.exists() and "libtorch" in maps.read_text()


@pytest.fixture
async def gateway(worker: Worker, tmp_path: Path) -> AsyncIterator[LiveGateway]:
    """A real ``pose3d gateway --workers <toy worker>`` process."""
    port, grpc_port = free_port(), free_port()
    argv = ["gateway", "--workers", worker.address, "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp_path / "gateway.log").open("wb")
    process = _spawn([sys.executable, "-m", "service.cli", *argv, "--grpc-port", str(grpc_port)], log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60.0
        async with httpx.AsyncClient() as http:
            while True:
                assert process.poll() is None, (tmp_path / "gateway.log").read_text()
                try:
                    if (await http.get(url + "/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "gateway never became ready"
                await asyncio.sleep(0.2)
        yield LiveGateway(url, f"127.0.0.1:{grpc_port}", process)
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
        log.close()


async def test_importing_the_client_loads_no_torch() -> None:
    _assert_light(await _loaded_after("import service.client.estimate_cli, service.client.stream_cli\n"))


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["estimate", "--help"], ["stream", "--help"], ["gateway", "--help"], ["eval", "h36m", "--help"]],
)
async def test_help_pages_load_no_torch(argv: list[str]) -> None:
    _assert_light(await _loaded_after(_cli(*argv)))


async def test_gateway_app_over_a_remote_worker_loads_no_torch(worker: Worker) -> None:
    snippet = f"""
from fastapi.testclient import TestClient
from service.assembly import build_engine_client
from service.config import GatewaySettings
from service.gateway.app import create_app
settings = GatewaySettings(workers=[{worker.address!r}], default_image_model="toy", default_clip_model="toy")
import cv2, numpy as np
png = cv2.imencode(".png", np.full((48, 32, 3), 90, dtype=np.uint8))[1].tobytes()
with TestClient(create_app(settings, engine_factory=build_engine_client)) as http:
    body = {{"keypoints_2d": [[300.0 + j, 100.0 + 5 * j] for j in range(17)], "image_size": [640, 480]}}
    for answer in (http.post("/v1/pose3d", json=body), http.post("/v1/pose3d", files={{"file": png}})):
        assert answer.status_code == 200, answer.text
"""
    _assert_light(await _loaded_after(snippet))


async def test_client_commands_against_a_live_gateway_load_no_torch(gateway: LiveGateway, tmp_path: Path) -> None:
    image = _jpeg(tmp_path)
    out = tmp_path / "rest.json"
    _assert_light(await _loaded_after(_cli("estimate", str(image), "--url", gateway.url, "-o", str(out))))
    assert json.loads(out.read_text())["model"]["name"] == "toy"
    _assert_light(await _loaded_after(_cli("estimate", str(image), "--grpc", gateway.grpc, "-o", str(out))))
    assert json.loads(out.read_text())["model"]["name"] == "toy"
    lines = tmp_path / "stream.jsonl"
    stream = ("stream", "--synthetic", "4", "--grpc", gateway.grpc, "--no-progress", "-o", str(lines))
    _assert_light(await _loaded_after(_cli(*stream)))
    assert len(lines.read_text().splitlines()) == 4
    assert not await asyncio.to_thread(_libtorch_mapped, gateway.process.pid)  # the gateway process itself


def _jpeg(tmp_path: Path) -> Path:
    image = tmp_path / "person.jpg"
    assert cv2.imwrite(str(image), np.full((48, 32, 3), 90, dtype=np.uint8))
    return image


async def test_the_python_client_api_loads_no_torch(gateway: LiveGateway, tmp_path: Path) -> None:
    snippet = f"""
from pathlib import Path
from service.client import Pose3DClient
for client in (Pose3DClient({gateway.url!r}), Pose3DClient(grpc={gateway.grpc!r})):
    assert client.estimate(Path({str(_jpeg(tmp_path))!r})).model.name == "toy"
"""
    _assert_light(await _loaded_after(snippet))


async def test_rest_and_grpc_give_the_same_typed_result_sync_and_async(gateway: LiveGateway, tmp_path: Path) -> None:
    media = _jpeg(tmp_path).read_bytes()
    results = [
        await AsyncPose3DClient(gateway.url).estimate(media),
        await AsyncPose3DClient(grpc=gateway.grpc).estimate(media, EstimateArgs(max_people=1)),
        await asyncio.to_thread(Pose3DClient(gateway.url).estimate, media),
        await asyncio.to_thread(Pose3DClient(grpc=gateway.grpc).estimate, media),
    ]
    for result in results:
        assert isinstance(result, PoseResult)
        assert result.model.name == "toy"
        assert len(result.joint_names) == 17
        (person,) = result.frames[0].people
        assert person.keypoints_3d.shape == (17, 3)
        assert person.keypoints_3d.dtype == np.float32
        np.testing.assert_allclose(person.keypoints_2d, results[0].frames[0].people[0].keypoints_2d, atol=1e-4)


async def test_service_errors_keep_their_class_over_both_transports(gateway: LiveGateway, tmp_path: Path) -> None:
    media = _jpeg(tmp_path).read_bytes()
    for client in (AsyncPose3DClient(gateway.url), AsyncPose3DClient(grpc=gateway.grpc)):
        with pytest.raises(UnknownModel):
            await client.estimate(media, EstimateArgs(model="no-such-model"))
        with pytest.raises(UnsupportedMediaType):
            await client.estimate(b"this is not an image")
