"""The error tree ↔ gRPC status, mapped once for every gRPC surface: a :class:`~service.errors.Pose3DError` becomes
its ``grpc_code`` plus the trailers ``pose3d-error-type`` (its problem type slug) and ``retry-after-s`` when set;
the remote client turns them back into the same error class.
"""

from __future__ import annotations

from typing import Final, NoReturn

import grpc

from service.errors import (
    DeadlineExceeded,
    InternalError,
    InvalidInput,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Pose3DError,
    Unavailable,
    error_class,
)
from service.security.disclosure import public_detail

ERROR_TYPE_KEY: Final = "pose3d-error-type"
RETRY_AFTER_KEY: Final = "retry-after-s"

_CODE_FALLBACK: Final[dict[grpc.StatusCode, type[Pose3DError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


async def abort_with(context: grpc.aio.ServicerContext[object, object], error: Pose3DError) -> NoReturn:
    """End the RPC with the status of ``error`` (its ``grpc_code``; INTERNAL if unknown) and its trailers (raises,
    as ``context.abort`` does)."""
    trailers = [(ERROR_TYPE_KEY, error.type_slug)]
    if error.retry_after_s is not None:
        trailers.append((RETRY_AFTER_KEY, f"{error.retry_after_s:g}"))
    context.set_trailing_metadata(tuple(trailers))
    code: grpc.StatusCode = getattr(grpc.StatusCode, error.grpc_code, grpc.StatusCode.INTERNAL)
    await context.abort(code, public_detail(error))  # no credentials, no upstream text in a 5xx
    raise AssertionError("context.abort returned")  # pragma: no cover


def error_from_rpc(exc: grpc.aio.AioRpcError) -> Pose3DError:
    """The service error a failed call carries; transport failures become ``Unavailable``."""
    trailers = {str(k): str(v) for k, v in (exc.trailing_metadata() or ())}
    slug = trailers.get(ERROR_TYPE_KEY)
    retry_after = float(trailers[RETRY_AFTER_KEY]) if RETRY_AFTER_KEY in trailers else None
    detail = exc.details() or exc.code().name
    cls = error_class(slug) or _CODE_FALLBACK.get(exc.code(), InternalError)
    if slug is None and exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in detail:
        cls = PayloadTooLarge  # gRPC's own message limit (the service reports its refusals): no later try succeeds
    return cls(detail, retry_after_s=retry_after)
