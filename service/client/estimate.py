"""One-off requests: an image or a clip to ``POST /v1/pose3d`` (REST) or ``Pose3D.Estimate`` (gRPC)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx

from service.client.connection import Connection
from service.client.results import estimate_json
from service.errors import DeadlineExceeded, Unavailable
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb
from service.proto_gen.pose3d.v1 import pose3d_pb2_grpc
from service.rpc.server import channel_options
from service.rpc.status import error_from_rpc

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
NO_CREDENTIALS = Connection()


@dataclass(frozen=True)
class EstimateArgs:
    """What to send with the media; ``None`` leaves the server's default."""

    model: str | None = None
    boxes: list[list[float]] | None = None
    flip_test: bool | None = None
    max_people: int | None = None
    mode: str | None = None  # "centred" | "causal"
    every_nth: int | None = None


def rest_form(args: EstimateArgs) -> dict[str, str]:
    """The multipart form fields of ``POST /v1/pose3d`` for ``args`` (fields left at None are not sent)."""
    fields = {
        "model": args.model,
        "boxes": None if args.boxes is None else json.dumps(args.boxes),
        "flip_test": None if args.flip_test is None else str(args.flip_test).lower(),
        "max_people": None if args.max_people is None else str(args.max_people),
        "mode": args.mode,
        "every_nth": str(args.every_nth) if args.every_nth else None,
    }
    return {name: value for name, value in fields.items() if value}


@contextmanager
def http_failures(url: str) -> Iterator[None]:
    """httpx's transport failures as the errors gRPC answers for the same (:func:`~service.rpc.status.error_from_rpc`):
    a timeout is :class:`DeadlineExceeded`, a connection that cannot be made or drops mid-answer :class:`Unavailable`
    (never a bare ``httpx`` exception: the CLI reports it in one line, the Python API raises one error tree)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise DeadlineExceeded(f"{url}: no answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise Unavailable(f"{url}: {str(exc) or type(exc).__name__}") from exc


def estimate_rest(
    base_url: str, media: Path, args: EstimateArgs, timeout_s: float = 300.0, connection: Connection = NO_CREDENTIALS
) -> dict[str, Any]:
    """POST ``media`` as multipart to ``{base_url}/v1/pose3d``; the JSON document, or RuntimeError with
    the problem+json detail (transport failures: :func:`http_failures`)."""
    form = rest_form(args)
    with (
        http_failures(base_url),
        media.open("rb") as fh,
        httpx.Client(timeout=timeout_s, **connection.http_options()) as http,
    ):
        response = http.post(base_url.rstrip("/") + "/v1/pose3d", files={"file": (media.name, fh)}, data=form)
    return rest_json(response)


def rest_json(response: httpx.Response, expected: int = 200, error: type[Exception] = RuntimeError) -> dict[str, Any]:
    """The JSON document of an ``expected`` answer; else ``error`` saying ``<status> <title>: <detail>`` of the
    problem+json, or quoting a body that is not JSON (e.g. an HTML error page from a proxy in front of the gateway).
    """
    try:
        document: dict[str, Any] = response.json()
    except ValueError:
        raise error(f"{response.status_code}: {response.text[:200]!r} (not a pose3d response)") from None
    if response.status_code != expected:
        raise error(f"{response.status_code} {document.get('title')}: {document.get('detail')}")
    return document


def options_message(args: EstimateArgs) -> pb.Options:
    msg = pb.Options(model=args.model or "")
    for x1, y1, x2, y2 in args.boxes or []:
        msg.boxes.add(x1=x1, y1=y1, x2=x2, y2=y2)
    if args.flip_test is not None:
        msg.flip_test = args.flip_test
    if args.max_people is not None:
        msg.max_people = args.max_people
    if args.mode:
        msg.mode = pb.WINDOW_MODE_CAUSAL if args.mode == "causal" else pb.WINDOW_MODE_CENTRED
    if args.every_nth:
        msg.every_nth = args.every_nth
    return msg


async def estimate_grpc(
    address: str, media: bytes, args: EstimateArgs, timeout_s: float = 300.0, connection: Connection = NO_CREDENTIALS
) -> dict[str, Any]:
    """``Pose3D.Estimate`` with encoded ``media`` (the server tells image from clip by its content); returns the
    REST-shaped JSON document. Service errors raise the matching :class:`~service.errors.Pose3DError`."""
    request = pb.EstimateRequest(image=media, options=options_message(args))
    async with connection.grpc_channel(address, channel_options(MAX_MESSAGE_BYTES)) as channel:
        stub = pose3d_pb2_grpc.Pose3DStub(channel)  # type: ignore[no-untyped-call]
        try:
            reply: pb.EstimateResponse = await stub.Estimate(request, timeout=timeout_s, metadata=connection.metadata())
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from exc
    return estimate_json(reply)
