"""Real ``pose3d serve`` processes with API keys on (tiny random-weight models), and their clients.

Each gateway is started as an operator would start it (``POSE3D_*`` in the environment, keys created with
``pose3d keys create``), on free ports, logging to a file under the test's temporary directory.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.e2e.deployment import Gateway, deployment_env, pose3d_command


@dataclass
class KeyFile:
    """A key file made with ``pose3d keys create``: key name → full key, and key name → key id."""

    path: Path
    keys: dict[str, str]
    ids: dict[str, str]

    def revoke(self, name: str) -> None:
        """``pose3d keys revoke`` as an operator runs it."""
        subprocess.run(pose3d_command("keys", "revoke", "--file", str(self.path), self.ids[name]), check=True,
                       capture_output=True, timeout=120)  # fmt: skip


def make_key_file(tmp: Path, names: list[str]) -> KeyFile:
    """Create one key per name with the ``pose3d keys create`` command."""
    path = tmp / "keys.json"
    keys: dict[str, str] = {}
    for name in names:
        out = subprocess.run(pose3d_command("keys", "create", "--file", str(path), "--name", name), check=True,
                             capture_output=True, text=True, timeout=120).stdout  # fmt: skip
        keys[name] = next(word for word in out.split() if word.startswith("p3d_"))
    ids = {name: key.split("_")[1] for name, key in keys.items()}
    return KeyFile(path, keys, ids)


def secured_gateway(name: str, keys: KeyFile, redis_url: str, logs: Path, **env: str) -> Gateway:
    """``pose3d serve`` with keys required, the key file re-read every 0.2 s, and ``env`` (``POSE3D_*``) on top."""
    environ = deployment_env(redis_url) | {
        "POSE3D_SECURITY__AUTH": "on",
        "POSE3D_SECURITY__API_KEYS_FILE": str(keys.path),
        "POSE3D_SECURITY__API_KEYS_CHECK_S": "0.2",
    }
    if not redis_url:
        del environ["POSE3D_REDIS_URL"]
    port, grpc_port = free_port(), free_port()
    args = pose3d_command("serve", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port))
    return Gateway(name, args, environ | env, logs / f"{name}.log", port=port, grpc_port=grpc_port)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def grpc_meta(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


POSE = [[320.0 + 4 * j, 180.0 + 10 * j, 0.9] for j in range(17)]


def keypoints_body(frames: int, model: str = "pstmo-9") -> dict[str, Any]:
    """A keypoints request (``POST /v1/pose3d`` / ``/v1/jobs``) of ``frames`` frames of one person."""
    return {"keypoints_2d": [POSE] * frames, "image_size": [640, 480], "model": model}
