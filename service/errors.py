"""The exception tree. Each error carries its HTTP status and gRPC code name; each transport maps it once.

Raise these anywhere in the service; the REST layer renders RFC 9457 problem+json and the gRPC
layer aborts with the matching status. Anything else escaping a handler is a bug (500/INTERNAL).
"""

from __future__ import annotations

from typing import ClassVar


class Pose3DError(Exception):
    """Base of every error the service reports to a client."""

    status: ClassVar[int] = 500
    grpc_code: ClassVar[str] = "INTERNAL"  # name of a grpc.StatusCode member
    type_slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


class BadRequest(Pose3DError):
    status, grpc_code, type_slug, title = 400, "INVALID_ARGUMENT", "bad-request", "Bad request"


class InvalidInput(Pose3DError):
    """Well-formed request whose values are not acceptable (shapes, non-finite numbers, ranges)."""

    status, grpc_code, type_slug, title = 422, "INVALID_ARGUMENT", "invalid-input", "Invalid input"


class DecodeFailed(InvalidInput):
    """An image or clip could not be decoded."""

    type_slug, title = "decode-failed", "Media could not be decoded"


class UnsupportedMediaType(Pose3DError):
    status, grpc_code, type_slug, title = 415, "INVALID_ARGUMENT", "unsupported-media-type", "Unsupported media type"


class PayloadTooLarge(Pose3DError):
    status, grpc_code, type_slug, title = 413, "INVALID_ARGUMENT", "payload-too-large", "Payload too large"


class NotFound(Pose3DError):
    status, grpc_code, type_slug, title = 404, "NOT_FOUND", "not-found", "Not found"


class UnknownModel(NotFound):
    type_slug, title = "unknown-model", "Unknown model"


class UnknownStream(NotFound):
    type_slug, title = "unknown-stream", "Unknown stream"


class Gone(Pose3DError):
    """Stored data the answer needs is lost for good (Redis evicted or expired it): said at once, never waited on or
    answered without it; retrying gets the same answer."""

    status, grpc_code, type_slug, title = 410, "DATA_LOSS", "gone", "Gone"


class StreamFramesLost(Gone):
    """Frames a stream's windows need are gone from the frame buffer while the stream is not (evicted under
    ``maxmemory``): the frame is refused rather than answered without them (open a new stream)."""

    type_slug, title = "stream-frames-lost", "Stream frames lost"


class Conflict(Pose3DError):
    status, grpc_code, type_slug, title = 409, "FAILED_PRECONDITION", "conflict", "Conflict"


class Overloaded(Pose3DError):
    """Too much work: this caller's (:class:`QuotaExceeded`, 429) or the server's (:class:`OverCapacity`, 503);
    retry after ``retry_after_s``. Raised as itself by the gateway's bound on requests in flight (429)."""

    status, grpc_code, type_slug, title = 429, "RESOURCE_EXHAUSTED", "overloaded", "Too many requests"


class OverCapacity(Overloaded):
    """The server's capacity, not the client's quota: the engine's queue would not reach this work before its
    deadline (or holds its bound of units); ``retry_after_s`` from the measured drain rate. A refusal is an answer:
    RESOURCE_EXHAUSTED is not in the worker channel's retry policy, so the client sees it once, with Retry-After."""

    status, grpc_code, type_slug, title = 503, "RESOURCE_EXHAUSTED", "over-capacity", "Over capacity"


class QuotaExceeded(Overloaded):
    """This API key's rate or open-stream quota is spent; retry after ``retry_after_s``."""

    type_slug, title = "quota-exceeded", "Quota exceeded"


class Unauthenticated(Pose3DError):
    """No API key, or one that is unknown or revoked."""

    status, grpc_code, type_slug, title = 401, "UNAUTHENTICATED", "unauthenticated", "Unauthenticated"


class Unavailable(Pose3DError):
    """No worker / model / buffer can take the request right now."""

    status, grpc_code, type_slug, title = 503, "UNAVAILABLE", "unavailable", "Service unavailable"


class DeadlineExceeded(Pose3DError):
    status, grpc_code, type_slug, title = 504, "DEADLINE_EXCEEDED", "deadline-exceeded", "Deadline exceeded"


class InternalError(Pose3DError):
    """A bug or an unexpected failure of one request (never of the worker)."""


def error_class(slug: str | None, status: int | None = None) -> type[Pose3DError] | None:
    """The error class whose ``type_slug`` is ``slug``, else the first with ``status`` (breadth first: a status's
    base class before its refinements); None when neither matches."""
    found = [Pose3DError]
    for cls in found:  # the list grows while it is walked: breadth first
        found.extend(cls.__subclasses__())
    return next((c for c in found if c.type_slug == slug), None) or next((c for c in found if c.status == status), None)
