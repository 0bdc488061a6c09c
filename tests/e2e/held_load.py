"""``python -m tests.e2e.held_load <pose3d arguments>``: the ``pose3d`` command whose model load never ends — its
first load step runs torch work until the process ends, after saying :data:`HELD` on stderr."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from service.config import CommonSettings
    from service.engine.lifters import ServedLifter

HELD = "held load: running"


def _endless_load(settings: CommonSettings, device: torch.device) -> dict[str, ServedLifter]:
    """torch calls that release the GIL and come back to Python, for ever (as reading a large checkpoint does)."""
    import torch  # the process's first torch import: after the command line is read

    print(HELD, file=sys.stderr, flush=True)
    x = torch.rand(128, 128)
    while True:
        x = torch.tanh(x @ x)


if __name__ == "__main__":
    from service.cli import main
    from service.engine import loader

    loader.build_lifters = _endless_load
    sys.exit(main(sys.argv[1:]))
