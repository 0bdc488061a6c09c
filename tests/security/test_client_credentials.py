"""Issue 21, first line: the bundled clients reach a gateway that requires keys and speaks TLS.

One real ``pose3d serve`` with ``security.auth=on`` and a certificate from a ``trustme`` CA on REST and gRPC:
``pose3d estimate`` (REST and ``--grpc``), ``pose3d stream`` and ``pose3d jobs`` with ``--api-key`` or
``POSE3D_API_KEY`` and ``--ca-file``, and the Python client (``api_key=``, ``Connection(ca_file=...)``) on both
transports; without the key each is refused (401 / UNAUTHENTICATED). On faaed5b none of these flags existed.
The start-up line names ``https://`` (it said ``http://`` with TLS on).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from service.client import Connection, Pose3DClient
from service.errors import Unauthenticated
from tests.conftest import REPO
from tests.e2e.deployment import deployment_env, pose3d_command
from tests.security.servers import SecureServe, start_secure_serve
from tests.service.media_samples import encode_image, person_image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tls_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SecureServe, Path]]:
    tmp = tmp_path_factory.mktemp("client-tls")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp / "gateway.pem"))
    cert.private_key_pem.write_to_path(str(tmp / "gateway-key.pem"))
    env = {
        "POSE3D_SECURITY__TLS_CERTFILE": str(tmp / "gateway.pem"),
        "POSE3D_SECURITY__TLS_KEYFILE": str(tmp / "gateway-key.pem"),
        "POSE3D_TEST_CA": str(tmp / "ca.pem"),
    }
    server = start_secure_serve(tmp, env, scheme="https")
    (tmp / "person.png").write_bytes(encode_image(person_image(), ".png"))
    yield server, tmp
    server.proc.stop()


def _pose3d(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pose3d_command(*args), env=deployment_env("") | (env or {}), cwd=REPO, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_the_start_line_says_https(tls_serve: tuple[SecureServe, Path]) -> None:
    server, _ = tls_serve
    assert f"ready on https://127.0.0.1:{server.port}" in server.proc.log.read_text()


def test_estimate_over_rest_and_grpc_with_a_key_and_a_ca(tls_serve: tuple[SecureServe, Path]) -> None:
    server, tmp = tls_serve
    image, ca = str(tmp / "person.png"), str(tmp / "ca.pem")
    rest = _pose3d("estimate", image, "--url", server.url, "--ca-file", ca, "--api-key", server.key, "--compact")
    assert rest.returncode == 0, rest.stderr
    assert json.loads(rest.stdout)["frames"]
    by_env = _pose3d("estimate", image, "--url", server.url, "--ca-file", ca, env={"POSE3D_API_KEY": server.key})
    assert by_env.returncode == 0, by_env.stderr
    grpc_args = ("estimate", image, "--grpc", server.grpc_address, "--ca-file", ca, "--compact")
    over_grpc = _pose3d(*grpc_args, "--api-key", server.key)
    assert over_grpc.returncode == 0, over_grpc.stderr
    assert json.loads(over_grpc.stdout)["frames"]
    no_key = _pose3d("estimate", image, "--url", server.url, "--ca-file", ca)
    assert no_key.returncode == 1
    assert "401" in no_key.stderr
    no_key_grpc = _pose3d(*grpc_args)
    assert no_key_grpc.returncode == 1
    assert "API key is required" in no_key_grpc.stderr


def test_stream_and_jobs_with_a_key_and_a_ca(tls_serve: tuple[SecureServe, Path]) -> None:
    server, tmp = tls_serve
    ca = str(tmp / "ca.pem")
    stream = _pose3d(
        "stream", "--synthetic", "3", "--grpc", server.grpc_address, "--ca-file", ca, "--no-progress",
        "--max-rate", env={"POSE3D_API_KEY": server.key},
    )  # fmt: skip
    assert stream.returncode == 0, stream.stderr
    assert len(stream.stdout.strip().splitlines()) == 3
    jobs = _pose3d("jobs", "list", "--url", server.url, "--ca-file", ca, "--api-key", server.key)
    assert jobs.returncode == 0, jobs.stderr
    refused = _pose3d("jobs", "list", "--url", server.url, "--ca-file", ca)
    assert refused.returncode == 1
    assert "401" in refused.stderr


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_the_python_client_takes_a_key_and_a_ca(tls_serve: tuple[SecureServe, Path], transport: str) -> None:
    server, tmp = tls_serve
    image = tmp / "person.png"
    connection = Connection(ca_file=tmp / "ca.pem")
    grpc_address = server.grpc_address if transport == "grpc" else None
    client = Pose3DClient(server.url, grpc=grpc_address, api_key=server.key, connection=connection)
    assert client.estimate(image).frames
    stranger = Pose3DClient(server.url, grpc=grpc_address, connection=connection)
    with pytest.raises(Unauthenticated):
        stranger.estimate(image)
