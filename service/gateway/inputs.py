"""Reading request bodies: content-type dispatch, JSON documents, the bounds of a multipart form.

The body size is bounded by the guard middleware (``limits.max_body_bytes``, for an image or a clip); a small JSON
document (a stream's open, one frame's keypoints) is bounded here at ``CONTROL_JSON_BYTES``, since it is parsed in one
call that holds the interpreter lock (~35 ms per MiB). Otherwise only its shape. FastAPI declares and documents each route's
body (``File``/``Form`` parameters, a pydantic JSON model) while the route class keeps this service's rules: the
content type is checked (415) and the engine asked for (503) before a byte of the body is read, and a JSON keypoints
body is parsed by the endpoint off the event loop, never by FastAPI on it (20 000 frames would stall the loop).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from service.api.validation import validation_problem
from service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from service.gateway.deps import engine_of

if TYPE_CHECKING:
    from fastapi._form_limits import _FormLimits

Model = TypeVar("Model", bound=BaseModel)

MAX_FORM_FIELDS = 16
MAX_FIELD_BYTES = 64 * 1024
FORM_LIMITS: Final[_FormLimits] = {"max_files": 1, "max_fields": MAX_FORM_FIELDS, "max_part_size": MAX_FIELD_BYTES}
"""What FastAPI may read of a multipart form (``form_limits`` of a route; past them: 400)."""

CONTROL_JSON_BYTES: Final = 64 * 1024
"""The longest stream-open or keypoints-frame body (one person's keypoints take ~2 KiB): past it, 413 unparsed."""

JsonEndpoint = Callable[..., Awaitable[Response]]
"""An endpoint that reads its JSON body itself, called as ``endpoint(request, None, **path_params)``."""


def is_json(request: Request) -> bool:
    """True for a JSON body (``application/json``, ``*+json``), False for ``multipart/form-data``; else 415."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return False
    if media_type == "application/json" or media_type.endswith("+json"):
        return True
    shown = media_type or "none"
    raise UnsupportedMediaType(
        f"content type {shown!r} is not accepted: send multipart/form-data (field 'file') or application/json"
    )


async def read_capped(request: Request, where: str, limit: int = CONTROL_JSON_BYTES) -> bytes:
    """The body, refused 413 as soon as it passes ``limit`` bytes (declared or streamed); kept on ``request`` for
    whoever reads it next (FastAPI's own body parameters)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"{where} is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{where} is over {limit} bytes")
    request._body = body = b"".join(chunks)  # Starlette's cache of the body, which FastAPI's parameters read
    return body


async def read_json(request: Request, model: type[Model], where: str = "JSON body") -> Model:
    """Parse and validate a small JSON body: over ``CONTROL_JSON_BYTES`` → 413, not JSON → 400, wrong shape or
    values → 422 with field errors."""
    raw = await read_capped(request, where)
    try:
        document: Any = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or an integer past Python's digit limit
        raise BadRequest(f"{where} is not valid JSON") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_problem(exc, where) from None


def _body_route(json_endpoint: JsonEndpoint, form: bool) -> type[APIRoute]:
    """A route class: a JSON body goes to ``json_endpoint``, a ``multipart/form-data`` one (where ``form``) to
    FastAPI's handler, anything else is a 415; the engine is asked for (503) before a byte of the body is read."""

    class BodyRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def dispatch(request: Request) -> Response:
                json_body = is_json(request)
                if not (json_body or form):
                    raise UnsupportedMediaType("send the keypoints as application/json")
                engine_of(request)
                return await (json_endpoint(request, None, **request.path_params) if json_body else handler(request))

            return dispatch

    return BodyRoute


def capped_route(where: str) -> type[APIRoute]:
    """A route class whose body FastAPI parses (a pydantic ``Body`` parameter) only once it is known to be at most
    ``CONTROL_JSON_BYTES`` (413 unparsed past it)."""

    class CappedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def dispatch(request: Request) -> Response:
                await read_capped(request, where)
                return await handler(request)

            return dispatch

    return CappedRoute


def add_split_route(
    router: APIRouter,
    path: str,
    endpoints: tuple[Callable[..., Any], JsonEndpoint],
    docs: tuple[dict[str, Any], dict[str, Any]] = ({}, {}),
    **route: Any,
) -> None:
    """Register one split route: ``POST {path}`` takes ``multipart/form-data`` (``endpoints[0]``; a JSON body there is
    the deprecated alias, answered by ``endpoints[1]``) and ``POST {path}/keypoints`` takes JSON (``endpoints[1]``).
    ``route`` goes to both (``response_model``, ``responses``, ``status_code``...), ``docs`` (``summary``,
    ``description``... of the multipart route, then of the JSON one) to one each."""
    (media, keypoints), (media_doc, keypoints_doc) = endpoints, docs
    router.add_api_route(
        f"{path}/keypoints", keypoints, methods=["POST"], route_class_override=_body_route(keypoints, form=False),
        **route, **keypoints_doc,
    )  # fmt: skip
    router.add_api_route(
        path, media, methods=["POST"], route_class_override=_body_route(keypoints, form=True), form_limits=FORM_LIMITS,
        **route, **media_doc,
    )  # fmt: skip
