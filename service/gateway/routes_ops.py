"""Operations: ``/healthz`` (alive), ``/readyz`` (able to serve, with detail), ``/metrics``, ``/v1/models``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.schemas import PROBLEM_RESPONSES, ModelOut, ModelsResponse, Readiness
from service.engine.types import EngineClient
from service.errors import Pose3DError
from service.gateway.deps import engine_of, state_of
from service.security.disclosure import public_detail

router = APIRouter()


@router.get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready (detail says why)"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: models loaded and warmed, engine reachable, Redis reachable (and the password right) when
    configured, the API key file readable when keys are required.
    503 with ``Retry-After`` and the same detail body while not ready."""
    state = state_of(request)
    retry = {"Retry-After": str(max(1, round(state.settings.limits.retry_after_s)))}
    if state.engine is None:
        detail = {"engine": state.startup_error or "starting: loading and warming models"}
        return JSONResponse(Readiness(ready=False, detail=detail).model_dump(), status_code=503, headers=retry)
    ready, detail = await _engine_readiness(state.engine)
    problems = await request.app.state.security.readiness()
    ready, detail = ready and not problems, {**detail, **problems}
    body = Readiness(ready=ready, detail=detail).model_dump()
    return JSONResponse(body, status_code=200 if ready else 503, headers=None if ready else retry)


async def _engine_readiness(engine: EngineClient) -> tuple[bool, dict[str, str]]:
    """Whether ``engine`` serves, and its detail (already fit for any caller: :class:`OwnedEngine` hides worker
    names from strangers) with the weights it serves. An error on the way — a worker gone between saying READY and
    describing its models, before any model list was cached — is shown as every error is (:func:`public_detail`:
    redacted, a 5xx's text only in the log), never as a raw gRPC status with the worker's address in it."""
    detail: dict[str, str] = {}
    try:
        status = await engine.ready()
        detail = dict(status.detail)
        if status.ready:
            random = [m.name for m in await engine.models() if m.random_weights]
            detail.setdefault("weights", f"RANDOM weights: {', '.join(random)}" if random else "all from checkpoints")
        return status.ready, detail
    except Pose3DError as exc:
        return False, {**detail, "engine": public_detail(exc)}


@router.get("/metrics", tags=["health"], response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus exposition of the gateway's metrics and, embedded, the in-process engine's.

    ``pose3d_worker_up`` is refreshed from the engine's readiness at each scrape, so a gateway over remote
    workers reports them as it sees them (1 when a worker serves), not the 0 it started with."""
    state = state_of(request)
    if state.engine is not None:
        try:
            state.metrics.worker_up.set(1 if (await state.engine.ready()).ready else 0)
        except Pose3DError:
            state.metrics.worker_up.set(0)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models", tags=["models"], response_model=ModelsResponse, responses=PROBLEM_RESPONSES)
async def list_models(request: Request) -> ModelsResponse:
    """Served models: name, kind, window (frames, stride), joint set, weights sha256 or ``random``, device."""
    state = state_of(request)
    engine = engine_of(request)
    models, components = await engine.models(), await engine.components()
    return ModelsResponse(
        models=[ModelOut.of(m) for m in models],
        components=[ModelOut.of(c) for c in components],
        default_image_model=state.settings.default_image_model,
        default_clip_model=state.settings.default_clip_model,
    )
