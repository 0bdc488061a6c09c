"""One call per process: traces and log format from ``settings.telemetry``. Structured logs are one JSON object per
line with time, level, logger, message, request id and trace id."""

from __future__ import annotations

import json
import logging
import time

from service.config import CommonSettings
from service.redaction import redact
from service.telemetry.context import request_id
from service.telemetry.tracing import setup_tracing, trace_id_hex

log = logging.getLogger("pose3d.telemetry")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", "trace_id"[, "exc"]}``; credentials redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": request_id.get() or None,
            "trace_id": trace_id_hex() or None,
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def use_json_logs(enabled: bool) -> None:
    """Switch every root handler to :class:`JsonFormatter` (call after ``logging.basicConfig``)."""
    if not enabled:
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())


def setup_telemetry(settings: CommonSettings, service_name: str) -> None:
    use_json_logs(settings.telemetry.json_logs)
    if setup_tracing(settings.telemetry, service_name):
        log.info("traces exported (%s)", settings.telemetry.otlp_endpoint or settings.telemetry.spans_file)
