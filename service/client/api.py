"""The Python client: one image or clip in, typed 3D poses out, over REST or gRPC, sync or async.

    from service.client import Pose3DClient, EstimateArgs

    client = Pose3DClient("http://127.0.0.1:8000")            # REST; Pose3DClient(grpc="127.0.0.1:50051") for gRPC
    # a gateway that requires keys / TLS: Pose3DClient(url, api_key=key, connection=Connection(ca_file=Path("ca.pem")))
    result = client.estimate(Path("person.jpg"), EstimateArgs(max_people=2))
    result.frames[0].people[0].keypoints_3d                    # (17, 3) float32, metres, root-relative

:class:`AsyncPose3DClient` has the same methods as coroutines. Both transports answer the same
:class:`PoseResult`; service errors raise the matching :class:`~service.errors.Pose3DError` subclass
(``UnknownModel``, ``PayloadTooLarge``, ``Overloaded`` …) whichever transport carried them. Streams over gRPC:
:class:`service.client.stream.StreamClient`. This package imports no torch and no model code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from service.client.connection import Connection
from service.client.estimate import EstimateArgs, estimate_grpc, http_failures, rest_form
from service.errors import Pose3DError, error_class

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelRef:
    """The model that answered: name, version, weights digest, and whether its weights are random."""

    name: str
    version: str
    weights: str
    random_weights: bool


@dataclass(frozen=True)
class Person:
    """One person in one frame (Human3.6M-17 joints)."""

    track_id: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 pixels
    box_score: float
    keypoints_2d: FloatArray  # (17, 2) pixels
    keypoint_scores: FloatArray  # (17,) in [0, 1]
    keypoints_3d: FloatArray  # (17, 3) metres, camera frame, root-relative (pelvis at 0)


@dataclass(frozen=True)
class FramePoses:
    frame_index: int
    timestamp_s: float | None
    people: list[Person]


@dataclass(frozen=True)
class PoseResult:
    """The answer to one estimate (the REST ``PoseResponse`` document, typed)."""

    request_id: str
    model: ModelRef
    joint_names: list[str]
    box_source: str
    frames: list[FramePoses]
    timings_ms: dict[str, float]
    warnings: list[str]

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> PoseResult:
        """From the REST document (also what :mod:`service.client.results` makes of a gRPC reply)."""
        frames = [
            FramePoses(
                int(f["frame_index"]),
                None if f.get("timestamp_s") is None else float(f["timestamp_s"]),
                [_person(p) for p in f["people"]],
            )
            for f in document["frames"]
        ]
        model = document["model"]
        return cls(
            request_id=str(document.get("request_id", "")),
            model=ModelRef(model["name"], model["version"], model["weights"], bool(model["random_weights"])),
            joint_names=list(document["joint_names"]),
            box_source=str(document["box_source"]),
            frames=frames,
            timings_ms={k: float(v) for k, v in document.get("timings_ms", {}).items()},
            warnings=list(document.get("warnings", [])),
        )


def _person(p: dict[str, Any]) -> Person:
    x1, y1, x2, y2 = (float(v) for v in p["box"])
    return Person(
        track_id=int(p["track_id"]),
        box=(x1, y1, x2, y2),
        box_score=float(p["box_score"]),
        keypoints_2d=np.asarray(p["keypoints_2d"], dtype=np.float32).reshape(-1, 2),
        keypoint_scores=np.asarray(p["keypoint_scores"], dtype=np.float32),
        keypoints_3d=np.asarray(p["keypoints_3d"], dtype=np.float32).reshape(-1, 3),
    )


def error_from_problem(status: int, document: dict[str, Any], retry_after: str | None = None) -> Pose3DError:
    """The :class:`Pose3DError` subclass a problem+json document names (by its type slug, else its status), with
    ``retry_after_s`` from the answer's ``Retry-After`` header (seconds; as gRPC's ``retry-after-s`` trailer)."""
    slug = str(document.get("type", "")).rsplit(":", 1)[-1]
    detail = str(document.get("detail") or document.get("title") or status)
    try:
        retry_after_s = None if retry_after is None else float(retry_after)
    except ValueError:  # an HTTP date (RFC 9110 allows one; the gateway sends seconds)
        retry_after_s = None
    return (error_class(slug, status) or Pose3DError)(detail, retry_after_s=retry_after_s)


def _media(media: Path | bytes) -> tuple[str, bytes]:
    return (media.name, media.read_bytes()) if isinstance(media, Path) else ("media", media)


def _result(response: httpx.Response) -> PoseResult:
    try:
        document: dict[str, Any] = response.json()
    except ValueError:  # e.g. an HTML error page from a proxy in front of the gateway
        raise Pose3DError(f"{response.status_code}: {response.text[:200]!r} (not a pose3d response)") from None
    if response.status_code != 200:
        raise error_from_problem(response.status_code, document, response.headers.get("retry-after"))
    return PoseResult.from_json(document)


class _Gateway:
    """One gateway: REST at ``url`` or, when ``grpc`` (``host:port``) is given, gRPC.

    ``api_key`` is sent on every call (``Authorization: Bearer``); ``connection`` carries it too, plus the TLS
    trust (``ca_file``) and client certificate (see :class:`~service.client.connection.Connection`)."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        grpc: str | None = None,
        timeout_s: float = 300.0,
        api_key: str | None = None,
        connection: Connection | None = None,
    ):
        self.url = url.rstrip("/")
        self.grpc = grpc
        self.timeout_s = timeout_s
        connection = connection or Connection()
        self.connection = replace(connection, api_key=api_key) if api_key else connection

    async def _estimate(self, media: Path | bytes, options: EstimateArgs | None) -> PoseResult:
        name, data = _media(media)
        args = options or EstimateArgs()
        if self.grpc:
            return PoseResult.from_json(await estimate_grpc(self.grpc, data, args, self.timeout_s, self.connection))
        with http_failures(self.url):
            async with httpx.AsyncClient(timeout=self.timeout_s, **self.connection.http_options()) as http:
                response = await http.post(self.url + "/v1/pose3d", files={"file": (name, data)}, data=rest_form(args))
        return _result(response)


class AsyncPose3DClient(_Gateway):
    """Async client of one gateway (the arguments: :class:`_Gateway`)."""

    async def estimate(self, media: Path | bytes, options: EstimateArgs | None = None) -> PoseResult:
        """3D poses of an encoded image or clip (a path or its bytes; the server tells which by its content)."""
        return await self._estimate(media, options)


class Pose3DClient(_Gateway):
    """Blocking client with the methods of :class:`AsyncPose3DClient` (not for use inside a running event loop)."""

    def estimate(self, media: Path | bytes, options: EstimateArgs | None = None) -> PoseResult:
        """See :meth:`AsyncPose3DClient.estimate`."""
        return asyncio.run(self._estimate(media, options))
