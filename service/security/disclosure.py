"""What may leave the service: no credentials, no upstream error text, no topology for strangers.

``public_detail`` is applied to every error a client receives (REST problem+json and gRPC status details):
credentials in URLs are redacted everywhere, and the detail of a 500/503 — which may carry Redis or worker
error text, addresses included — is replaced by a fixed sentence naming the request id, the original being
logged (redacted) with that id. ``public_readiness`` gives ``/readyz``'s detail: redacted always, and the
worker addresses only to an authenticated caller (or when authentication is off).
"""

from __future__ import annotations

import logging
import re
from typing import Final

from service.engine.types import ReadyStatus
from service.errors import Pose3DError
from service.redaction import redact
from service.telemetry.context import request_id

log = logging.getLogger("pose3d.security")

HIDDEN_STATUSES: Final = frozenset({500, 503})
"""Statuses whose detail may carry upstream text (a bug's message, Redis or worker errors)."""

SAFE_5XX_PREFIXES: Final = ("the engine is still loading", "over capacity:")
"""Such details the service writes itself (no upstream text in them): shown, and not logged per request."""

_WORKER_KEY: Final = re.compile(r"^worker .+$")


def public_detail(error: Pose3DError, rid: str | None = None) -> str:
    """The detail a client may see for ``error``."""
    detail = redact(error.detail)
    if error.status not in HIDDEN_STATUSES or detail.startswith(SAFE_5XX_PREFIXES):
        return detail
    rid = rid or request_id.get() or "-"
    log.warning("request %s: %s (%s) — not shown to the client", rid, detail, error.type_slug)
    return f"{error.title.lower()}: the request could not be served right now (request id {rid}; see the server log)"


def public_readiness(status: ReadyStatus, *, full: bool) -> ReadyStatus:
    """``status`` with credentials redacted and, unless ``full``, workers counted instead of named."""
    detail = {redact(k): redact(v) for k, v in status.detail.items()}
    if not full:
        workers = [v for k, v in detail.items() if _WORKER_KEY.match(k)]
        detail = {k: v for k, v in detail.items() if not _WORKER_KEY.match(k)}
        if workers:
            serving = sum(1 for v in workers if v.startswith("serving"))
            detail["workers"] = f"{serving} of {len(workers)} serving (names and states with an API key)"
    return ReadyStatus(ready=status.ready, detail=detail)
