"""The gateway's security policy in one object: API keys, quotas, ownership and the one in-flight bound. The
caller's key id travels from the transport to the engine wrapper and the job store in ``principal``, so route and
servicer code stays unaware of it."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Final

from service.config import GatewaySettings
from service.errors import Pose3DError, QuotaExceeded, Unauthenticated
from service.metrics import Metrics
from service.security.inflight import InFlight
from service.security.keys import KeyStore
from service.security.quotas import MemoryQuotaStore, QuotaStore, RedisQuotaStore

log = logging.getLogger("pose3d.security")

ANONYMOUS: Final = ""
"""The principal when authentication is off: it owns every stream, no quota applies."""

principal: ContextVar[str] = ContextVar("pose3d_principal", default=ANONYMOUS)
"""Key id of the caller of the request or call being served."""

Clock = Callable[[], float]


def may_use(owner: str | None) -> bool:
    """The one ownership rule, for every object a key creates (stream, job, its results, a WebSocket session):
    the caller may read, write, watch, list or cancel it only if it is the owner (anyone, when auth is off).
    Callers answer "not found" otherwise, exactly as for an id that never existed."""
    caller = principal.get()
    return caller == ANONYMOUS or owner == caller


class SecurityConfigError(Pose3DError):
    """The security settings cannot work (raised at start-up; `pose3d` prints it as one line and exits 2)."""

    type_slug, title = "security-config", "Security misconfigured"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_enabled(settings: GatewaySettings) -> bool:
    """``security.auth``: on, off, or (auto) on unless the gateway listens on a loopback address only."""
    mode = settings.security.auth
    return mode == "on" or (mode == "auto" and not is_loopback(settings.host))


def auth_summary(settings: GatewaySettings) -> str:
    """The start-up sentence saying whether API keys are required, and why."""
    sec = settings.security
    if not auth_enabled(settings):
        why = "security.auth=off" if sec.auth == "off" else f"listening on loopback {settings.host} only"
        return f"API keys NOT required ({why}); set POSE3D_SECURITY__AUTH=on to require them"
    why = "security.auth=on" if sec.auth == "on" else f"listening on {settings.host}, not loopback"
    return f"API keys required on /v1/ and gRPC ({why}) from {sec.api_keys_file}; set POSE3D_SECURITY__AUTH=off to open"


def log_auth_summary(settings: GatewaySettings) -> None:
    """Log :func:`auth_summary` at start: a WARNING when keys are off on an address other than loopback."""
    exposed = not auth_enabled(settings) and not is_loopback(settings.host)
    log.log(logging.WARNING if exposed else logging.INFO, "%s", auth_summary(settings))


class Security:
    """Authentication, quotas and ownership for one gateway process."""

    def __init__(
        self,
        settings: GatewaySettings,
        metrics: Metrics,
        *,
        store: QuotaStore | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        """``clock``: monotonic seconds for the in-memory quota store (Redis reads its own server's clock)."""
        self.enabled = auth_enabled(settings)
        sec = settings.security
        if self.enabled and sec.api_keys_file is None:
            raise SecurityConfigError(
                f"API keys are required ({auth_summary(settings)}) but security.api_keys_file is not set — "
                "create keys with `pose3d keys create --file keys.json` and set POSE3D_SECURITY__API_KEYS_FILE, "
                "or set POSE3D_SECURITY__AUTH=off"
            )
        self.keys = KeyStore(sec.api_keys_file, sec.api_keys_check_s) if self.enabled and sec.api_keys_file else None
        if self.keys is not None and self.keys.error is not None:
            raise SecurityConfigError(self.keys.error)
        self.quotas = sec.quotas
        self.public_metrics = sec.public_metrics or not self.enabled
        self.public_docs = sec.public_docs or not self.enabled
        self.ttl_s = settings.engine.stream_ttl_s
        self.in_flight = InFlight(settings.limits.max_inflight_requests, settings.limits.retry_after_s)
        self.revocation_check_s = max(0.05, sec.api_keys_check_s)
        self.metrics = metrics
        self.clock = clock
        if store is None:
            store = RedisQuotaStore(settings.redis_url) if settings.redis_url else MemoryQuotaStore()
        self.store = store

    def authenticate(self, presented: str | None) -> str:
        """The key id of ``presented`` (ANONYMOUS when auth is off); Unauthenticated (401) otherwise."""
        if not self.enabled:
            return ANONYMOUS
        if not presented:
            self.metrics.auth_failures_total.labels("missing").inc()
            raise Unauthenticated("an API key is required: `Authorization: Bearer <key>` or `X-API-Key: <key>`")
        assert self.keys is not None
        key_id = self.keys.verify(presented)
        if key_id is None:
            self.metrics.auth_failures_total.labels("invalid").inc()
            raise Unauthenticated("the API key is unknown or revoked")
        return key_id

    async def admit(self, key_id: str) -> None:
        """Spend one request token of ``key_id``; QuotaExceeded (429 + Retry-After) when its bucket is empty."""
        if key_id == ANONYMOUS:
            return
        if self.quotas.rate_per_s > 0:
            wait = await self.store.take_token(key_id, self.clock(), self.quotas.rate_per_s, self.quotas.burst)
            if wait > 0:
                self.metrics.key_requests_total.labels("rate_limited").inc()
                raise QuotaExceeded(
                    f"rate quota of {self.quotas.rate_per_s:g} requests/s (burst {self.quotas.burst}) spent; "
                    f"retry in {wait:.2f} s",
                    retry_after_s=wait,
                )
        self.metrics.key_requests_total.labels("admitted").inc()

    async def claim_stream(self, stream_id: str) -> None:
        """Make the caller the owner of the new ``stream_id``; QuotaExceeded past its open-stream limit, with the
        seconds until the first of the key's streams idles out (a slot frees only then, or at a close) as its
        Retry-After (1 s when one freed since the refusal)."""
        key_id = principal.get()
        if key_id == ANONYMOUS:
            return
        limit = self.quotas.max_streams
        if not await self.store.claim_stream(key_id, stream_id, self.clock(), self.ttl_s, limit):
            self.metrics.key_requests_total.labels("stream_limited").inc()
            wait = await self.store.slot_frees_in(key_id, self.clock())
            retry_after_s = 1.0 if wait is None else max(1.0, wait)
            raise QuotaExceeded(
                f"this key holds {limit} open streams (its limit); close one, or retry in {retry_after_s:.0f} s, "
                "when the first of them idles out unless it is used meanwhile",
                retry_after_s=retry_after_s,
            )

    async def owns(self, stream_id: str) -> bool:
        """True when the caller may use ``stream_id`` (anyone, when auth is off)."""
        if principal.get() == ANONYMOUS:
            return True
        return may_use(await self.store.owner_of(stream_id, self.clock(), self.ttl_s))

    def still_valid(self, key_id: str) -> bool:
        """False once ``key_id`` is revoked or gone from the key file (after the next reload)."""
        return key_id == ANONYMOUS or self.keys is None or self.keys.active(key_id)

    async def release_stream(self, stream_id: str) -> None:
        key_id = principal.get()
        if key_id != ANONYMOUS:
            await self.store.release_stream(key_id, stream_id)

    async def readiness(self) -> dict[str, str]:
        """What keeps this gateway's own door shut ({} = nothing): an unreadable key file (every key refused)
        or an unreachable Redis (every quota check, owner lookup and job fails), for ``/readyz``."""
        problems: dict[str, str] = {}
        if self.keys is not None and self.keys.error is not None:
            problems["api_keys"] = "the API key file cannot be read: every key is refused (see the gateway log)"
        if not await self.store.reachable():
            problems["redis"] = "unreachable, or it refused the password (check redis_url)"
        return problems

    def may_see_topology(self) -> bool:
        """Worker names and states (``/readyz`` detail) only for an authenticated caller, or with auth off."""
        return not self.enabled or principal.get() != ANONYMOUS

    async def aclose(self) -> None:
        await self.store.aclose()
