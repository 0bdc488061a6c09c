"""Structured logs: one JSON object per line with request id and trace id; credentials redacted."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from service.telemetry.context import request_id
from service.telemetry.setup import JsonFormatter


def test_json_line_carries_request_and_trace_ids_and_no_secret() -> None:
    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord("pose3d.x", logging.WARNING, __file__, 1, "redis %s down", ("redis://:pw@r:6379",), None)
    token = request_id.set("req-1")
    try:
        with tracer.start_as_current_span("s") as span:
            line = JsonFormatter().format(record)
    finally:
        request_id.reset(token)
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert entry["logger"] == "pose3d.x"
    assert entry["message"] == "redis redis://***@r:6379 down"
    assert entry["request_id"] == "req-1"
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert json.loads(JsonFormatter().format(record))["trace_id"] is None
