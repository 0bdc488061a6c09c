"""One call per process: traces and log format from ``settings.telemetry``."""

from __future__ import annotations

import logging

from service.config import CommonSettings
from service.telemetry.logs import use_json_logs
from service.telemetry.tracing import setup_tracing

log = logging.getLogger("pose3d.telemetry")


def setup_telemetry(settings: CommonSettings, service_name: str) -> None:
    use_json_logs(settings.telemetry.json_logs)
    if setup_tracing(settings.telemetry, service_name):
        log.info("traces exported (%s)", settings.telemetry.otlp_endpoint or settings.telemetry.spans_file)
