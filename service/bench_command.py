"""``pose3d bench [ARGS ...]``: runs ``python -m bench ARGS`` (``bench/README.md``) in a child interpreter, from a
checkout of the repository (``bench/`` is not installed), and returns its exit status.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys


def add_arguments(bench: argparse.ArgumentParser) -> None:
    """The ``bench`` command for the table in :mod:`service.cli` (its parser takes ``+`` as prefix and has no
    ``-h``); every argument after it goes to ``python -m bench``."""
    bench.description = "Runs `python -m bench` with the given arguments (see `python -m bench --help`)."
    bench.add_argument("bench_args", nargs="*", help="arguments for python -m bench")


def run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("bench") is None:
        print("pose3d bench: run it from a checkout of the repository (bench/ is not installed)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "bench", *args.bench_args])
