"""Shared by the security tests: a key file with keys, settings that require them, a settable clock."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.config import GatewaySettings, QuotaSettings, SecuritySettings
from service.security.keys import create_key


@dataclass
class Keys:
    file: Path
    alice: str
    bob: str
    revoked: str
    alice_id: str


def make_keys(tmp: Path) -> Keys:
    from service.security.keys import revoke_key

    file = tmp / "keys.json"
    alice_rec, alice = create_key(file, "alice")
    _, bob = create_key(file, "bob")
    gone, revoked = create_key(file, "gone")
    revoke_key(file, gone.key_id)
    return Keys(file, alice, bob, revoked, alice_rec.key_id)


def secured(keys: Keys, quotas: QuotaSettings | None = None, **overrides: Any) -> GatewaySettings:
    security = SecuritySettings(
        auth="on", api_keys_file=keys.file, api_keys_check_s=0.0, quotas=quotas or QuotaSettings()
    )
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "grpc_port": 0,
        "default_image_model": "toy",
        "default_clip_model": "toy",
        "security": security,
    }
    return GatewaySettings(**(base | overrides))


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
