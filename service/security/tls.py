"""Encrypted links: TLS on the REST and public gRPC listeners, mTLS between gateway and workers.

Certificates are PEM files named by settings (nothing is generated here); Redis over TLS needs only its URL
(``rediss://…?ssl_ca_certs=…``). See docs/security.md, "Encrypted links".
"""

from __future__ import annotations

import errno
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from service.config import SecuritySettings, WorkerTlsSettings


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def _pem_pair(certfile: Path, keyfile: Path, names: str, client_ca: Path | None = None) -> tuple[bytes, bytes]:
    """``(key, certificate)`` PEM bytes for grpc, once Python's ssl has loaded them as a pair (and ``client_ca`` as
    CA certificates): grpc only logs what it cannot read, then fails to bind, which would read as a port in use.
    ``names``: the settings that name the files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile, password="")  # an encrypted key fails here (grpc cannot read it)
        if client_ca is not None:
            context.load_verify_locations(client_ca)
    except ssl.SSLError as e:
        files = ", ".join(str(f) for f in dict.fromkeys((certfile, keyfile, client_ca)) if f is not None)
        raise OSError(
            errno.EINVAL, f"TLS files that are not PEM certificates and key ({e}): check {names} ({files})"
        ) from None
    return keyfile.read_bytes(), certfile.read_bytes()


def _bound(listen: Callable[[], int]) -> int:
    """The port ``listen`` bound, or 0 when it could not bind it: older grpc returns 0, newer raises RuntimeError
    ('Failed to bind to address …'); the callers name the address in their EADDRINUSE error."""
    try:
        return int(listen())
    except RuntimeError:
        return 0


def add_port(server: grpc.aio.Server, address: str, security: SecuritySettings) -> int:
    """Listen on ``address``: TLS when ``security.tls_certfile``/``tls_keyfile`` are set, else plaintext; 0 when the
    address cannot be bound."""
    if security.tls_certfile is None or security.tls_keyfile is None:
        return _bound(lambda: server.add_insecure_port(address))
    pair = _pem_pair(security.tls_certfile, security.tls_keyfile, "security.tls_certfile, security.tls_keyfile")
    credentials = grpc.ssl_server_credentials([pair])
    return _bound(lambda: server.add_secure_port(address, credentials))


def add_worker_port(server: grpc.aio.Server, address: str, tls: WorkerTlsSettings) -> int:
    """The worker's port: mTLS (client certificate from ``tls.client_ca_file`` required) when configured; 0 when the
    address cannot be bound."""
    if tls.certfile is None or tls.keyfile is None:
        if tls.client_ca_file is not None:
            raise OSError(errno.EINVAL, "tls.client_ca_file needs tls.certfile and tls.keyfile (the worker's own)")
        return _bound(lambda: server.add_insecure_port(address))
    pair = _pem_pair(tls.certfile, tls.keyfile, "tls.certfile, tls.keyfile, tls.client_ca_file", tls.client_ca_file)
    credentials = grpc.ssl_server_credentials(
        [pair], root_certificates=_read(tls.client_ca_file), require_client_auth=tls.client_ca_file is not None
    )
    return _bound(lambda: server.add_secure_port(address, credentials))


def worker_channel_credentials(security: SecuritySettings) -> grpc.ChannelCredentials | None:
    """What the gateway presents to workers: None (plaintext) unless ``security.worker_ca_file`` is set; then TLS,
    with its client certificate (mTLS) and/or ``security.worker_api_key`` on every call."""
    if security.worker_ca_file is None:
        if security.worker_api_key is not None:
            raise OSError(errno.EINVAL, "security.worker_api_key needs security.worker_ca_file (keys travel over TLS)")
        return None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=security.worker_ca_file.read_bytes(),
        private_key=_read(security.worker_client_keyfile),
        certificate_chain=_read(security.worker_client_certfile),
    )
    if security.worker_api_key is None:
        return credentials
    key = grpc.access_token_call_credentials(security.worker_api_key.get_secret_value())  # authorization: Bearer
    return grpc.composite_channel_credentials(credentials, key)


def rest_scheme(security: SecuritySettings) -> str:
    """``https`` when the REST port serves TLS (a certificate and key are set), else ``http``."""
    return "https" if uvicorn_ssl(security) else "http"


def uvicorn_ssl(security: SecuritySettings) -> dict[str, Any]:
    """uvicorn's ``ssl_certfile``/``ssl_keyfile`` for HTTPS on the REST port ({} = plain HTTP)."""
    if security.tls_certfile is None or security.tls_keyfile is None:
        return {}
    return {"ssl_certfile": str(security.tls_certfile), "ssl_keyfile": str(security.tls_keyfile)}
