"""Call a worker's ``Describe`` method (its models) with no API key, over TLS trusting ``CA``, and print the gRPC status.

Usage: ``python examples/worker_call.py HOST:PORT CA.pem`` — the deployment page uses it to show that a keyed
worker refuses a caller without credentials (UNAUTHENTICATED), whatever network it is reached from.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc

from service.proto_gen.pose3d.worker.v1 import worker_pb2, worker_pb2_grpc


def main(target: str, ca_file: str) -> int:
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
    with grpc.secure_channel(target, credentials) as channel:
        try:
            worker_pb2_grpc.WorkerStub(channel).Describe(worker_pb2.DescribeRequest(), timeout=30)
        except grpc.RpcError as error:
            print(f"Describe without a key: {error.code().name} ({error.details()})")
            return 0
    print("Describe without a key: answered (this worker does not authenticate its callers)")
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
