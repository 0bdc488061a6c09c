"""The Python client in a few lines: ``python examples/client.py [ADDRESS]``.

ADDRESS is a REST base URL (default ``http://localhost:8000``) or, without ``http``, a gRPC ``host:port``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from service.client import EstimateArgs, Pose3DClient


def main(address: str) -> None:
    client = Pose3DClient(address) if address.startswith("http") else Pose3DClient(grpc=address)
    result = client.estimate(Path(__file__).with_name("person.jpg"), EstimateArgs(max_people=1))
    person = result.frames[0].people[0]
    print(result.model.name, result.box_source, person.keypoints_3d.shape, person.keypoints_3d.dtype)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8000")
