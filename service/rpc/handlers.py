"""Per-call accounting for every gRPC handler (unary wrapper and streaming): metrics per route and code,
and exceptions → status."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeAlias, TypeVar

import grpc

from service.errors import InternalError, InvalidInput, Pose3DError
from service.metrics import Metrics
from service.rpc.status import abort_with

log = logging.getLogger(__name__)

Context: TypeAlias = Any  # grpc.aio.ServicerContext (grpcio ships no type information)
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class HasMetrics(Protocol):
    metrics: Metrics


S = TypeVar("S", bound=HasMetrics)
Handler: TypeAlias = Callable[[S, Req, Context], Awaitable[Resp]]


def as_service_error(exc: Exception, route: str) -> Pose3DError:
    """The service error to report for ``exc`` (a bug becomes InternalError and is logged)."""
    if isinstance(exc, Pose3DError):
        return exc
    if isinstance(exc, ValueError):  # a malformed message the codec refused
        return InvalidInput(str(exc))
    log.exception("%s failed", route, exc_info=exc)
    return InternalError(f"{type(exc).__name__}: {exc}")


@contextlib.asynccontextmanager
async def observed_call(metrics: Metrics, route: str, context: Context) -> AsyncIterator[None]:
    """Count one call (unary or streaming) under ``route`` with its final status code and duration, and end
    it with the status of any error raised inside (``abort_with``; a bug becomes INTERNAL and is logged)."""
    start = time.perf_counter()
    code = "OK"
    try:
        yield
    except grpc.aio.AbortError:  # ended with context.abort (a frame's decoder): the status it sent, not ABORTED
        code = ended_with(context)
        raise
    except asyncio.CancelledError:  # not an Exception: without this a cancelled call counted as OK
        remaining = context.time_remaining()  # its deadline passed, or the client left
        code = "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
        raise
    except Exception as exc:
        error = as_service_error(exc, route)
        code = error.grpc_code
        await abort_with(context, error)
    finally:
        count_call(metrics, route, code, start)


def ended_with(context: Context) -> str:
    """The name of the status an aborted call ended with (``UNKNOWN`` if the context does not say)."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def count_call(metrics: Metrics, route: str, code: str, start: float) -> None:
    """One call of ``route`` ended with status ``code`` (a ``grpc.StatusCode`` name), begun at ``start``
    (``time.perf_counter()``)."""
    metrics.requests_total.labels(route, code).inc()
    metrics.request_duration.labels(route).observe(time.perf_counter() - start)


def refusal_counter(metrics: Metrics, prefix: str) -> Callable[[str, Context, float], None]:
    """Counts a call refused before its handler ran (:class:`~service.rpc.decoding.CallInterceptor`) under its
    handler's route, ``prefix`` + the method's name (``grpc.Estimate`` for ``/pose3d.v1.Pose3D/Estimate``)."""
    return lambda method, context, start: count_call(
        metrics, prefix + method.rsplit("/", 1)[-1], ended_with(context), start
    )


def unary(route: str) -> Callable[[Handler[S, Req, Resp]], Handler[S, Req, Resp]]:
    """Count the call in ``self.metrics`` under ``route`` and end it with the status of any error."""

    def wrap(handler: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
        @functools.wraps(handler)
        async def run(self: S, request: Req, context: Context) -> Resp:
            async with observed_call(self.metrics, route, context):
                return await handler(self, request, context)
            raise AssertionError("unreachable: observed_call re-raises or aborts")  # pragma: no cover

        return run

    return wrap


def deadline_of(context: Context, cap_s: float | None = None) -> float | None:
    """The call's deadline as a ``time.monotonic()`` instant, at most ``cap_s`` from now (None: none)."""
    remaining = context.time_remaining()
    candidates = [float(x) for x in (remaining, cap_s) if x is not None]
    return time.monotonic() + min(candidates) if candidates else None
