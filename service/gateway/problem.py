"""RFC 9457 ``application/problem+json``: the one place ``service.errors`` meets HTTP.

Every error response of the gateway, including framework errors (unknown route, wrong method,
unparseable body) and bugs (a catch-all that logs and answers 500), is rendered here.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.validation import validation_problem
from service.errors import BadRequest, InternalError, Pose3DError, error_class
from service.security.disclosure import public_detail

log = logging.getLogger("pose3d.gateway")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:pose3d:problem:"
REQUEST_ID_HEADER = "X-Request-ID"


def request_id_of(request: Request) -> str:
    """The id the request-id middleware gave this request (a fresh one if it did not run)."""
    rid = getattr(request.state, "request_id", None)
    if isinstance(rid, str):
        return rid
    rid = uuid.uuid4().hex
    request.state.request_id = rid
    return rid


def problem_of(error: Pose3DError, detail: str | None = None) -> dict[str, Any]:
    """The RFC 9457 members of ``error`` (``detail``: its own unless given); a job's error is stored as this."""
    return {
        "type": PROBLEM_TYPE_PREFIX + error.type_slug,
        "title": error.title,
        "status": error.status,
        "detail": error.detail if detail is None else detail,
    }


def problem_body(error: Pose3DError, request_id: str, instance: str | None = None) -> dict[str, Any]:
    """The problem+json document of ``error`` (RFC 9457 members plus ``request_id``)."""
    # no credentials, no upstream text in a 5xx
    body = {**problem_of(error, public_detail(error, request_id)), "request_id": request_id}
    if instance:
        body["instance"] = instance
    extra = getattr(error, "extensions", None)
    if isinstance(extra, dict):
        body.update(extra)
    return body


RETRY_STATUSES = frozenset({429, 503})  # always with ``Retry-After`` (the error's own value, else the default)


def retry_after_of(error: Pose3DError, default_retry_after_s: float) -> float | None:
    """Seconds to wait before retrying ``error``: its own, else the default for a status of ``RETRY_STATUSES``."""
    if error.retry_after_s is None and error.status in RETRY_STATUSES:
        return default_retry_after_s
    return error.retry_after_s


def problem_message(error: Pose3DError, request_id: str, instance: str, default_retry_after_s: float) -> dict[str, Any]:
    """The WebSocket's ``{"type": "problem"}`` message of ``error``; a refusal's document says when to retry, as
    ``Retry-After`` does over HTTP: ``retry_after_s``, seconds."""
    body = problem_body(error, request_id, instance)
    if (retry_after_s := retry_after_of(error, default_retry_after_s)) is not None:
        body["retry_after_s"] = retry_after_s
    return {"type": "problem", "problem": body}


def problem_response(
    error: Pose3DError, request_id: str, instance: str | None = None, default_retry_after_s: float = 1.0
) -> JSONResponse:
    """Render ``error`` with its status, the request id header, and ``Retry-After`` (whole seconds, at least 1)
    when the error carries one or its status is in ``RETRY_STATUSES``."""
    headers = {REQUEST_ID_HEADER: request_id}
    if (retry_after_s := retry_after_of(error, default_retry_after_s)) is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return JSONResponse(
        problem_body(error, request_id, instance),
        status_code=error.status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


class _HttpStatusProblem(Pose3DError):
    """A framework-raised HTTP error with a status no class of the tree has (405, 406, ...)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status  # type: ignore[misc]
        self.type_slug = f"http-{status}"  # type: ignore[misc]
        self.title = "Method not allowed" if status == 405 else "HTTP error"  # type: ignore[misc]


def install_problem_handlers(app: FastAPI, default_retry_after_s: float = 1.0) -> None:
    """Register the handlers mapping every exception to problem+json (and only there)."""

    async def on_pose3d_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Pose3DError)
        if exc.status >= 500 and exc.status not in (503, 504):
            log.error("request %s failed: %s", request_id_of(request), exc.detail)
        return problem_response(exc, request_id_of(request), request.url.path, default_retry_after_s)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        error: Pose3DError = validation_problem(exc)
        if any(isinstance(e, dict) and e.get("type") == "json_invalid" for e in exc.errors()):
            error = BadRequest("request body is not valid JSON")
        return problem_response(error, request_id_of(request), request.url.path)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        error_type = error_class(None, exc.status_code)
        error = error_type(detail) if error_type else _HttpStatusProblem(exc.status_code, detail)
        response = problem_response(error, request_id_of(request), request.url.path)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id_of(request)
        log.exception("request %s: unexpected %s", rid, type(exc).__name__)
        return problem_response(InternalError(f"internal error (request id {rid})"), rid, request.url.path)

    app.add_exception_handler(Pose3DError, on_pose3d_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
