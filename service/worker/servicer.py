# ruff: noqa: N802  (gRPC method names are fixed by the proto)
"""``pose3d.worker.v1.Worker``: the engine's ``submit`` and its stream control over gRPC. The worker only computes
(the gateway validated the input); while the engine loads, every call answers UNAVAILABLE so the channel tries
another worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from service.engine.types import EngineClient
from service.errors import Unavailable
from service.metrics import Metrics
from service.proto_gen.pose3d.worker.v1 import worker_pb2 as wpb
from service.proto_gen.pose3d.worker.v1 import worker_pb2_grpc
from service.rpc import link
from service.rpc.handlers import Context, deadline_of, observed_call, unary


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    """Serves ``engine`` once it is set (``None`` while loading)."""

    def __init__(self, metrics: Metrics, engine: EngineClient | None = None) -> None:
        self.metrics = metrics
        self.engine = engine

    def _engine(self) -> EngineClient:
        if self.engine is None:
            raise Unavailable("worker is loading its models", retry_after_s=1.0)
        return self.engine

    async def Submit(self, request: wpb.Work, context: Context) -> AsyncGenerator[wpb.Progress]:
        """Run the work here, one message per progress event; a cancelled call cancels the work at once."""
        async with observed_call(self.metrics, "worker.Submit", context):
            steps = self._engine().submit(link.work_from_pb(request, deadline_of(context)))
            async with contextlib.aclosing(steps):
                async for step in steps:
                    yield link.progress_to_pb(step)

    @unary("worker.Stream")
    async def Stream(self, request: wpb.StreamCall, context: Context) -> wpb.StreamReply:
        engine, sid = self._engine(), request.stream_id
        if request.op == wpb.StreamCall.OP_OPEN:
            return link.stream_to_pb(await engine.open_stream(link.options_from_pb(request.options), sid or None))
        if request.op == wpb.StreamCall.OP_CLOSE:
            return wpb.StreamReply(stream_id=sid, tail=link.results_to_pb(await engine.close_stream(sid)))
        return link.stream_to_pb(await engine.get_stream(sid))

    @unary("worker.Describe")
    async def Describe(self, request: wpb.DescribeRequest, context: Context) -> wpb.Description:
        engine = self._engine()
        models, components = await engine.models(), await engine.components()
        return wpb.Description(models=map(link.model_to_pb, models), components=map(link.model_to_pb, components))

    @unary("worker.Ready")
    async def Ready(self, request: wpb.ReadyRequest, context: Context) -> wpb.ReadyReply:
        if self.engine is None:
            return wpb.ReadyReply(ready=False, detail={"engine": "loading"})
        status = await self.engine.ready()
        return wpb.ReadyReply(ready=status.ready, detail=status.detail)
