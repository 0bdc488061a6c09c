"""Traces (OpenTelemetry) and structured logs for every pose3d process."""
