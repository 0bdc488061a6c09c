"""Finding 5 of issue 20: the worker port is no side door.

- ``pose3d worker`` bound beyond loopback without mTLS, keys or ``trusted_network`` refuses to start, naming the
  fixes (on faaed5b it served 0.0.0.0 in plaintext, and a stranger ran ``GetStream``/``CloseStream``);
- a real worker with API keys over TLS refuses every call without a key (UNAUTHENTICATED, before reading the
  message) and plaintext callers, answers health to anyone, serves ``/metrics`` only with a key, and serves a
  real gateway that presents ``security.worker_api_key``.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
import trustme

from service.config import WorkerSettings, WorkerTlsSettings
from service.security.guard import SecurityConfigError
from service.security.keys import create_key
from service.security.worker_link import worker_link_summary
from tests.conftest import REPO
from tests.e2e.deployment import Gateway, Worker, deployment_env, new_gateway, new_worker, pose3d_command
from tests.service.media_samples import encode_image, person_image

WORKER = "/pose3d.worker.v1.Worker/"

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.mark.parametrize(
    ("host", "trusted", "level"), [("127.0.0.1", False, logging.INFO), ("0.0.0.0", True, logging.WARNING)]
)
def test_the_rule_at_start(host: str, trusted: bool, level: int) -> None:
    assert worker_link_summary(WorkerSettings(host=host, trusted_network=trusted))[0] == level
    with pytest.raises(SecurityConfigError, match="POSE3D_TRUSTED_NETWORK=true"):
        worker_link_summary(WorkerSettings(host="10.0.0.7"))
    with pytest.raises(SecurityConfigError, match="needs TLS"):
        worker_link_summary(WorkerSettings(host="10.0.0.7", api_keys_file=Path("k.json")))
    mtls = WorkerTlsSettings(certfile=Path("w.pem"), keyfile=Path("w-key.pem"), client_ca_file=Path("ca.pem"))
    assert "mTLS" in worker_link_summary(WorkerSettings(host="0.0.0.0", tls=mtls))[1]


def test_a_worker_beyond_loopback_without_credentials_refuses_to_start() -> None:
    env = deployment_env("")
    args = pose3d_command("worker", "--host", "0.0.0.0", "--port", "0", "--metrics-port", "0")
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("pose3d worker: error: the worker would listen on 0.0.0.0"), last
    assert "CLIENT_CA_FILE" in last
    assert "API_KEYS_FILE" in last
    assert "TRUSTED_NETWORK" in last
    assert "Traceback" not in done.stderr


@dataclass
class KeyedWorker:
    worker: Worker
    gateway: Gateway
    ca: Path
    key: str


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedWorker]:
    tmp = tmp_path_factory.mktemp("worker-link")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp / "worker.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "worker-key.pem"))
    _, key = create_key(tmp / "worker-keys.json", "gateway")
    env = deployment_env("") | {
        "POSE3D_TLS__CERTFILE": str(tmp / "worker.pem"),
        "POSE3D_TLS__KEYFILE": str(tmp / "worker-key.pem"),
        "POSE3D_API_KEYS_FILE": str(tmp / "worker-keys.json"),
    }
    worker = new_worker("worker", env, tmp)
    gateway_env = deployment_env("") | {
        "POSE3D_SECURITY__WORKER_CA_FILE": str(tmp / "ca.pem"),
        "POSE3D_SECURITY__WORKER_API_KEY": key,
    }
    gateway = new_gateway([worker], gateway_env, tmp)
    worker.start()
    try:
        gateway.start()
        gateway.wait_ready(timeout_s=240)
        yield KeyedWorker(worker, gateway, tmp / "ca.pem", key)
    finally:
        gateway.stop()
        worker.stop()


def _call(keyed: KeyedWorker, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.StatusCode:
    credentials = grpc.ssl_channel_credentials(keyed.ca.read_bytes())
    with grpc.secure_channel(keyed.worker.address, credentials) as channel:
        try:
            channel.unary_unary(WORKER + method)(b"", timeout=30, metadata=metadata)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_a_caller_without_a_key_is_refused(keyed: KeyedWorker) -> None:
    for method in ("Stream", "Describe", "Submit"):
        assert _call(keyed, method) is grpc.StatusCode.UNAUTHENTICATED, method
        assert _call(keyed, method, (("authorization", "Bearer p3d_00000000_nope"),)) is grpc.StatusCode.UNAUTHENTICATED
    assert _call(keyed, "Describe", (("authorization", f"Bearer {keyed.key}"),)) is grpc.StatusCode.OK
    with grpc.insecure_channel(keyed.worker.address) as plain:  # plaintext: no TLS handshake, no call
        with pytest.raises(grpc.RpcError) as refused:
            plain.unary_unary(WORKER + "Stream")(b"", timeout=10)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


def test_worker_metrics_need_the_key_too(keyed: KeyedWorker) -> None:
    url = f"https://127.0.0.1:{keyed.worker.metrics_port}/metrics"
    assert httpx.get(url, verify=ssl.create_default_context(cafile=str(keyed.ca)), timeout=10).status_code == 401
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{keyed.worker.metrics_port}/metrics", timeout=10)  # no plaintext either
    ok = httpx.get(
        url,
        verify=ssl.create_default_context(cafile=str(keyed.ca)),
        timeout=10,
        headers={"Authorization": f"Bearer {keyed.key}"},
    )
    assert ok.status_code == 200
    assert "pose3d_worker_up 1.0" in ok.text


def test_the_gateway_presents_its_worker_key(keyed: KeyedWorker) -> None:
    image = encode_image(person_image(), ".png")
    answer = httpx.post(keyed.gateway.url + "/v1/pose3d", files={"file": ("p.png", image)}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["frames"]
