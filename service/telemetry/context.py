"""The current request's id, for log lines and error reports (set by the transports per request)."""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("pose3d_request_id", default="")
