"""Finding 4 of issue 20: nothing is allocated for a caller before its key is checked, on every listener.

Against a real ``pose3d serve`` process (keys required): six concurrent 60 MiB ``Estimate`` calls without a key
(gRPC checks the key from the metadata and refuses before reading the message), and two connections sending
256 MiB of unterminated HTTP headers (the REST listener answers 431 past ``limits.max_header_bytes`` and closes).
The gateway's peak RSS (``VmHWM``, reset through ``/proc/<pid>/clear_refs`` before the attack) may grow < 50 MB.
On faaed5b both failed: gRPC 136 → 1 051 MB, headers 432 → 1 068 MB. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from tests.security.servers import SecureServe, start_secure_serve

MIB = 1024 * 1024
GROWTH_LIMIT = 50 * MIB
ESTIMATE = "/pose3d.v1.Pose3D/Estimate"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServe]:
    server = start_secure_serve(tmp_path_factory.mktemp("listeners"))
    yield server
    server.proc.stop()


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def _reset_peak(pid: int) -> int:
    """Reset the process's peak RSS to its current RSS (``clear_refs`` 5); returns that RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status(pid, "VmRSS")


def _estimate_bytes(size: int) -> bytes:
    """A serialized ``EstimateRequest`` whose ``image`` field (1, bytes) holds ``size`` bytes (built by hand:
    one buffer shared by every call instead of one copy per serialization)."""
    tag, length = b"\x0a", bytearray()
    n = size
    while True:
        byte, n = n & 0x7F, n >> 7
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return tag + bytes(length) + b"\0" * size


async def _unauthenticated_calls(address: str, body: bytes, calls: int) -> list[grpc.StatusCode]:
    options = [("grpc.max_send_message_length", 128 * MIB), ("grpc.max_receive_message_length", MIB)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        estimate = channel.unary_unary(ESTIMATE)  # raw bytes in and out

        async def one() -> grpc.StatusCode:
            try:
                await estimate(body, timeout=120)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        return list(await asyncio.gather(*(one() for _ in range(calls))))


def test_six_60_mib_grpc_calls_without_a_key_allocate_nothing(serve: SecureServe) -> None:
    pid = serve.proc.pid
    warm = asyncio.run(_unauthenticated_calls(serve.grpc_address, _estimate_bytes(1024), 2))
    assert warm == [grpc.StatusCode.UNAUTHENTICATED] * 2
    body = _estimate_bytes(60 * MIB)
    before = _reset_peak(pid)
    codes = asyncio.run(_unauthenticated_calls(serve.grpc_address, body, 6))
    peak = _status(pid, "VmHWM")
    print(f"gRPC 6 x 60 MiB without a key: RSS {before / MIB:.0f} MiB -> peak {peak / MIB:.0f} MiB; "
          f"codes {[c.name for c in codes]}; load {os.getloadavg()}")  # fmt: skip
    assert all(code is grpc.StatusCode.UNAUTHENTICATED for code in codes), codes
    assert peak - before < GROWTH_LIMIT


def _header_flood(port: int, total: int, outcome: list[str]) -> None:
    """Send a request head whose one header never ends, 1 MiB at a time, up to ``total`` bytes; record what the
    server did: its status line, or 'closed' when it closed the connection without one."""
    chunk = b"a" * MIB
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
        sent = 0
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            head = sock.recv(256)
        except ConnectionResetError:
            head = b""
    outcome.append(head.split(b"\r\n", 1)[0].decode("latin-1") if head else "closed")


def test_two_256_mib_header_streams_get_431_and_allocate_nothing(serve: SecureServe) -> None:
    pid = serve.proc.pid
    before = _reset_peak(pid)
    outcome: list[str] = []
    floods = [threading.Thread(target=_header_flood, args=(serve.port, 256 * MIB, outcome)) for _ in range(2)]
    for flood in floods:
        flood.start()
    for flood in floods:
        flood.join()
    peak = _status(pid, "VmHWM")
    print(f"2 x 256 MiB header streams: RSS {before / MIB:.0f} MiB -> peak {peak / MIB:.0f} MiB; {outcome}; "
          f"load {os.getloadavg()}")  # fmt: skip
    assert len(outcome) == 2
    assert all(o.startswith("HTTP/1.1 431") or o == "closed" for o in outcome), outcome
    assert peak - before < GROWTH_LIMIT


def _raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            if not data:
                break
            received += data
        return received


def test_too_many_header_fields_get_431_and_normal_heads_pass(serve: SecureServe) -> None:
    many = b"".join(b"X-F%d: v\r\n" % i for i in range(150))
    answer = _raw_request(serve.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    long_line = b"GET /healthz?" + b"q" * (80 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _raw_request(serve.port, long_line).startswith(b"HTTP/1.1 431")
    fine = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * (32 * 1024) + b"\r\nConnection: close\r\n\r\n"
    assert _raw_request(serve.port, fine).startswith(b"HTTP/1.1 200")


def test_websocket_without_a_key_is_refused_before_it_is_accepted(serve: SecureServe) -> None:
    """No key: the handshake is refused (HTTP 403), or closed at once with 4401 — never a session."""
    key = base64.b64encode(os.urandom(16))
    head = (
        b"GET /v1/streams/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", serve.port), timeout=30) as sock:
        sock.sendall(head)
        answer = sock.recv(65536)
        status = answer.split(b"\r\n", 1)[0]
        if status.startswith(b"HTTP/1.1 101"):
            frame = answer.split(b"\r\n\r\n", 1)[1] or sock.recv(65536)
            assert frame[0] & 0x0F == 0x8, frame  # a close frame, nothing else
            assert int.from_bytes(frame[2:4], "big") == 4401
        else:
            assert status.startswith(b"HTTP/1.1 403"), status


def test_keyed_websocket_and_kept_alive_connections_pass_the_bounded_head(serve: SecureServe) -> None:
    """The head limits sit in front of every request on a connection and of the WebSocket upgrade."""
    with httpx.Client(base_url=f"http://127.0.0.1:{serve.port}", timeout=30) as client:
        answers = [client.get("/healthz", headers={"X-Pad": "v" * 20_000}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    key = base64.b64encode(os.urandom(16))
    head = (
        b"GET /v1/streams/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        + key
        + b"\r\nX-API-Key: "
        + serve.key.encode()
        + b"\r\n\r\n"
    )
    assert _raw_request(serve.port, head).startswith(b"HTTP/1.1 101")
