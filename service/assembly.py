"""The composition root: the one place that chooses and builds the EngineClient for every entry point. Its imports
are deferred, so a gateway over remote workers never loads PyTorch.
"""

from __future__ import annotations

import errno

from service.config import GatewaySettings
from service.engine.types import EngineClient
from service.metrics import Metrics


async def build_engine_client(settings: GatewaySettings, metrics: Metrics) -> EngineClient:
    """A started engine: a remote client over ``settings.workers``, else the in-process engine (models warm)."""
    if settings.workers:
        from service.rpc.remote_engine import RemoteEngineClient
        from service.security.tls import worker_channel_credentials

        try:
            remote = RemoteEngineClient(
                settings.workers,
                max_message_bytes=settings.worker_message_limit(),
                call_timeout_s=settings.engine.request_timeout_s,
                clip_chunk_frames=settings.worker_clip_chunk_frames,
                credentials=worker_channel_credentials(settings.security),
            )
        except ValueError as e:  # an address gRPC could never connect to: one line at start-up, not 503s for ever
            raise OSError(errno.EINVAL, f"{e}: check --workers (POSE3D_WORKERS)") from None
        await remote.start()
        return remote
    return await in_process_engine(settings, metrics)


async def in_process_engine(settings: GatewaySettings, metrics: Metrics) -> EngineClient:
    """The embedded engine in this process, sharing the gateway's metrics registry (loads torch and the models)."""
    from service.engine.inprocess import build_engine

    return await build_engine(settings, metrics)
