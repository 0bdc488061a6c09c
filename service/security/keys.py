"""API keys: a JSON file of salted SHA-256 hashes, managed by ``pose3d keys`` and re-read when it changes.

A key is ``p3d_<key id>_<secret>``: the id (8 hex characters) names the key in logs, metrics and
ownership records; the secret (43 url-safe characters, 256 bits) is shown once at creation and never
stored — the file keeps ``sha256(salt || secret)`` with a random 16-byte salt per key. A plain salted
SHA-256 suffices because the secret is random with 256 bits of entropy (no dictionary to guess from);
the comparison is constant-time. The file is written atomically (temp file + rename), mode 0600.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from service.weights.store import atomic_write

log = logging.getLogger("pose3d.security")

KEY_PREFIX: Final = "p3d_"
_ID_HEX: Final = 8


@dataclass(frozen=True)
class KeyRecord:
    """One key as stored: no secret, only its salted hash."""

    key_id: str
    name: str
    salt: str  # hex, 16 bytes
    sha256: str  # hex of sha256(salt || secret)
    created: float  # unix seconds
    revoked: bool = False


def _digest(salt_hex: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt_hex) + secret.encode()).hexdigest()


def split_key(presented: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed key, else None (nothing about it is looked up)."""
    if not presented.startswith(KEY_PREFIX) or len(presented) > 200:
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
    if not sep or len(key_id) != _ID_HEX or not secret:
        return None
    return key_id, secret


def read_records(path: Path) -> dict[str, KeyRecord]:
    """The keys in ``path`` by id ({} when the file does not exist yet)."""
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text() or "{}")
    return {r["key_id"]: KeyRecord(**r) for r in data.get("keys", [])}


def write_records(path: Path, records: dict[str, KeyRecord]) -> None:
    """Replace ``path`` atomically with ``records`` (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"version": 1, "keys": [asdict(r) for r in records.values()]}, indent=2) + "\n"
    atomic_write(path, body.encode())


def create_key(path: Path, name: str) -> tuple[KeyRecord, str]:
    """Add a new key named ``name`` to ``path``; returns its record and the full key (shown once)."""
    records = read_records(path)
    key_id = secrets.token_hex(_ID_HEX // 2)
    while key_id in records:
        key_id = secrets.token_hex(_ID_HEX // 2)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    record = KeyRecord(key_id=key_id, name=name, salt=salt, sha256=_digest(salt, secret), created=time.time())
    records[key_id] = record
    write_records(path, records)
    return record, f"{KEY_PREFIX}{key_id}_{secret}"


def revoke_key(path: Path, key_id: str) -> KeyRecord:
    """Mark ``key_id`` revoked (kept in the file so its id is never reused). KeyError if unknown."""
    records = read_records(path)
    records[key_id] = revoked = replace(records[key_id], revoked=True)
    write_records(path, records)
    return revoked


def unreadable_reason(path: Path, exc: BaseException) -> str:
    """One line: why ``path`` gives no keys, and the fix."""
    if isinstance(exc, FileNotFoundError):
        fix = "create it with `pose3d keys create --file " + str(path) + "` or fix security.api_keys_file"
    elif isinstance(exc, PermissionError):
        fix = (
            f"this process (uid {os.getuid()}) cannot read it: `chown` it to the gateway's user "
            "(in a container: the image's uid 10001) and keep mode 0600"
        )
    else:
        fix = "it is not a key file written by `pose3d keys`; recreate it with `pose3d keys create`"
    return f"API key file {path} holds no usable keys ({type(exc).__name__}: {exc}) — {fix}; every key is refused"


class KeyStore:
    """Verifies presented keys against ``path``, re-read when its inode, mode, owner, size, mtime or ctime changes
    (checked at most every ``check_interval_s``; 0 = every lookup; docs/security.md). A missing, unreadable or
    malformed file holds no keys: ``error`` then says why and how to fix it (logged at ERROR once per change)."""

    def __init__(self, path: Path, check_interval_s: float = 1.0) -> None:
        self.path = path
        self.check_interval_s = check_interval_s
        self._records: dict[str, KeyRecord] = {}
        self._stamp: tuple[int, ...] | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.error: str | None = None
        self.reload()

    def _file_stamp(self) -> tuple[int, ...] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def reload(self) -> None:
        """Re-read the file now."""
        with self._lock:
            self._stamp = self._file_stamp()
            try:
                if not self.path.exists():
                    raise FileNotFoundError(errno.ENOENT, "no such file", str(self.path))
                self._records = read_records(self.path)
                self.error = None
            except (OSError, ValueError, TypeError, KeyError) as exc:
                self._records = {}
                self.error = unreadable_reason(self.path, exc)
                log.error("%s", self.error)
                return
            if self._stamp is not None and self._stamp[1] & 0o077:
                log.warning(
                    "API key file %s is readable or writable by group/others (mode %o): run `chmod 600 %s`",
                    self.path,
                    stat.S_IMODE(self._stamp[1]),
                    self.path,
                )

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_interval_s:
            return
        self._checked = now
        if self._file_stamp() != self._stamp:
            self.reload()

    def key_ids(self) -> list[str]:
        """Ids of the keys in the file (revoked ones too): the bounded label set of per-key metrics."""
        self._maybe_reload()
        return sorted(self._records)

    def active(self, key_id: str) -> bool:
        """True while ``key_id`` is in the file and not revoked (re-read as :meth:`verify` does)."""
        self._maybe_reload()
        record = self._records.get(key_id)
        return record is not None and not record.revoked

    def verify(self, presented: str) -> str | None:
        """The key id of a valid, unrevoked key; None otherwise."""
        parts = split_key(presented)
        if parts is None:
            return None
        key_id, secret = parts
        self._maybe_reload()
        record = self._records.get(key_id)
        if record is None or record.revoked:
            return None
        return key_id if hmac.compare_digest(_digest(record.salt, secret), record.sha256) else None


def presented_credentials(metadata: Any) -> tuple[str | None, str | None]:
    """``(API key, request id)`` from gRPC call metadata or HTTP headers (``(name, value)`` pairs):
    ``authorization: Bearer <key>`` or ``x-api-key: <key>``, and ``x-request-id``."""
    found = {str(item[0]).lower(): item[1] for item in metadata or () if isinstance(item[1], str)}
    auth = found.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" and token.strip() else found.get("x-api-key")
    return key or None, found.get("x-request-id")
