"""How every client (``pose3d estimate``, ``stream``, ``jobs``, the Python API) reaches a gateway that requires keys
or TLS, on both transports. The flags are :func:`add_connection_arguments`; ``--api-key`` defaults to the
``POSE3D_API_KEY`` environment variable (read when the command runs)."""

from __future__ import annotations

import argparse
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

API_KEY_ENV = "POSE3D_API_KEY"


@dataclass(frozen=True)
class Connection:
    """Credentials and trust for one gateway (all optional: a loopback gateway needs none)."""

    api_key: str | None = None
    ca_file: Path | None = None  # PEM: trust this CA (self-signed gateways); None = the system's CAs
    client_cert: Path | None = None  # PEM: present this certificate (with client_key)
    client_key: Path | None = None
    tls: bool = False  # gRPC over TLS even without ca_file (REST follows the URL's scheme)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC call metadata carrying the key."""
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def http_options(self) -> dict[str, Any]:
        """Keyword arguments of ``httpx.Client`` / ``httpx.post``: the key header (none without a key) and the TLS
        context: the CA (or the system's) and, when set, the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.client_cert is not None:
            context.load_cert_chain(str(self.client_cert), str(self.client_key) if self.client_key else None)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {"headers": headers, "verify": context}

    def grpc_channel(self, address: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
        """A channel to ``address``: TLS when ``tls`` or ``ca_file``, else plaintext (the key goes per call)."""
        if not (self.tls or self.ca_file):
            return grpc.aio.insecure_channel(address, options=options)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.client_key.read_bytes() if self.client_key else None,
            certificate_chain=self.client_cert.read_bytes() if self.client_cert else None,
        )
        return grpc.aio.secure_channel(address, credentials, options=options)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--api-key``, ``--ca-file``, ``--client-cert``, ``--client-key``, ``--tls``."""
    parser.add_argument("--api-key", default=None, help=f"API key of the gateway (default: ${API_KEY_ENV})")
    parser.add_argument("--ca-file", default=None, help="PEM CA to trust for https:// and gRPC TLS")
    parser.add_argument("--client-cert", default=None, help="PEM client certificate to present (mTLS)")
    parser.add_argument("--client-key", default=None, help="its private key (PEM)")
    parser.add_argument("--tls", action="store_true", help="gRPC over TLS with the system's CAs (implied by --ca-file)")


def connection_from_args(args: argparse.Namespace) -> Connection:
    """The :class:`Connection` the flags (and ``POSE3D_API_KEY``) describe."""

    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    return Connection(
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        ca_file=path(args.ca_file),
        client_cert=path(args.client_cert),
        client_key=path(args.client_key),
        tls=bool(args.tls),
    )
