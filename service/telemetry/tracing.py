"""OpenTelemetry traces: one tracer, stage spans, and the exporters chosen by settings.

Spans use only the OpenTelemetry API, which does nothing until a tracer provider is installed: with
``telemetry.otlp_endpoint`` and/or ``telemetry.spans_file`` unset (the default) tracing costs nothing.
:func:`setup_tracing` installs the SDK provider (``opentelemetry-sdk``; the OTLP exporter needs
``opentelemetry-exporter-otlp-proto-grpc``, both in the ``otel`` extra). Context crosses processes as W3C
``traceparent``: REST headers in, gRPC metadata gateway → worker.

Span tree of one request: ``POST /v1/...`` (gateway) → ``admission`` → ``Worker/<Method>`` (client, then the
worker's server span) → the engine's stages ``decode``, ``boxes``, ``detect``, ``tokens``, ``lift``, ``buffer``.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from opentelemetry import trace

from service.config import TelemetrySettings
from service.errors import Unavailable

tracer = trace.get_tracer("pose3d")


def tracing_on(used: trace.Tracer) -> bool:
    """Whether spans of the tracer ``used`` are recorded: it is a real tracer, or a tracer provider is installed
    (:func:`setup_tracing`, or a host program's). While not, the transports' server and client spans skip their
    set-up (parsing ``traceparent``, injecting one back): every refusal from a request's head passes there."""
    return not isinstance(used, trace.ProxyTracer) or not isinstance(
        trace.get_tracer_provider(), trace.ProxyTracerProvider
    )


def stage_span(name: str) -> AbstractContextManager[trace.Span]:
    """A child span of the current one for an engine stage (no-op without a provider)."""
    return tracer.start_as_current_span(name)


def trace_id_hex() -> str:
    """The current trace id (32 hex) or ''."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def _file_exporter(path: Path) -> Any:
    """Appends each finished span to ``path`` as one JSON line (trace id, span id, parent, name, attributes)."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    def line(span: ReadableSpan) -> str:
        return json.dumps(json.loads(span.to_json()), separators=(",", ":")) + "\n"

    return ConsoleSpanExporter(out=path.open("a"), formatter=line)


def setup_tracing(settings: TelemetrySettings, service_name: str) -> bool:
    """Install a tracer provider exporting as ``settings`` say; False (nothing installed) when none is named."""
    if not settings.otlp_endpoint and settings.spans_file is None:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        if settings.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    except ImportError as e:
        raise Unavailable(
            f"exporting traces (telemetry.otlp_endpoint, telemetry.spans_file) needs the otel extra ({e}): "
            "pip install 'pose3d[otel]', or unset those settings"
        ) from e
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if settings.spans_file is not None:
        provider.add_span_processor(SimpleSpanProcessor(_file_exporter(settings.spans_file)))
    if settings.otlp_endpoint:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    trace.set_tracer_provider(provider)
    return True
