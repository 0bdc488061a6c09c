"""Reading request bodies: content-type dispatch, JSON documents, the bounds of a multipart form.

The body size is bounded by the guard middleware; here only the shape of the body is checked. The two route
classes let FastAPI declare and document a route's body (``File``/``Form`` parameters, a pydantic JSON model) while
this service keeps its own rules: the content type is checked (415) and the engine asked for (503) before a byte of
the body is read, and a JSON keypoints body is parsed by the endpoint off the event loop, never by FastAPI on it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from service.api.validation import validation_problem
from service.errors import BadRequest, UnsupportedMediaType
from service.gateway.deps import engine_of

if TYPE_CHECKING:
    from fastapi._form_limits import _FormLimits

Model = TypeVar("Model", bound=BaseModel)

MAX_FORM_FIELDS = 16
MAX_FIELD_BYTES = 64 * 1024
FORM_LIMITS: Final[_FormLimits] = {"max_files": 1, "max_fields": MAX_FORM_FIELDS, "max_part_size": MAX_FIELD_BYTES}
"""What FastAPI may read of a multipart form (``form_limits`` of a route; past them: 400)."""

JsonEndpoint = Callable[..., Awaitable[Response]]
"""The endpoint of a :class:`JSONBodyRoute`, called as ``endpoint(request, None, **path_params)``."""


def is_json(request: Request) -> bool:
    """True for a JSON body (``application/json`` / ``*+json``), False for ``multipart/form-data``; 415 for
    anything else."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return False
    if media_type == "application/json" or media_type.endswith("+json"):
        return True
    shown = media_type or "none"
    raise UnsupportedMediaType(
        f"content type {shown!r} is not accepted: send multipart/form-data (field 'file') or application/json"
    )


async def read_json(request: Request, model: type[Model], where: str = "JSON body") -> Model:
    """Parse and validate a JSON body: not JSON → 400, wrong shape or values → 422 with field errors."""
    raw = await request.body()
    try:
        document: Any = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or an integer past Python's digit limit
        raise BadRequest(f"{where} is not valid JSON") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_problem(exc, where) from None


class JSONBodyRoute(APIRoute):
    """A route whose JSON body FastAPI documents from the endpoint's pydantic parameter but never reads: the endpoint
    is called as ``endpoint(request, None, **path_params)`` and reads and validates the body itself, off the event loop (a
    20 000-frame keypoints body parsed by FastAPI on the loop would stall every other request)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            if not is_json(request):
                raise UnsupportedMediaType("send the keypoints as application/json")
            engine_of(request)  # 503 before reading a body the engine could not take
            return await _call_json(endpoint, request)

        return handler


async def _call_json(endpoint: JsonEndpoint, request: Request) -> Response:
    return await endpoint(request, None, **request.path_params)


def multipart_route(json_alias: JsonEndpoint) -> type[APIRoute]:
    """A route class for a ``multipart/form-data`` route whose path also answered JSON before the routes were split:
    a JSON body goes to ``json_alias`` (the keypoints route's endpoint, unchanged), any other non-multipart body is a
    415, and the engine is asked for (503) before FastAPI reads the form."""

    class MultipartRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def dispatch(request: Request) -> Response:
                json_body = is_json(request)
                engine_of(request)
                return await (_call_json(json_alias, request) if json_body else handler(request))

            return dispatch

    return MultipartRoute


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
        f"{path}/keypoints", keypoints, methods=["POST"], route_class_override=JSONBodyRoute, **route, **keypoints_doc
    )
    router.add_api_route(
        path, media, methods=["POST"], route_class_override=multipart_route(keypoints), form_limits=FORM_LIMITS,
        **route, **media_doc,
    )  # fmt: skip
