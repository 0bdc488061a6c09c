"""``pose3d bench [ARGS ...]``: runs ``python -m bench ARGS`` (the network suite, ``bench/README.md``).

The benchmarks live in the repository's ``bench/`` directory, not in the installed package, so this command
runs from a checkout (the repository root, or with it on ``PYTHONPATH``). It imports neither torch nor the
benchmark here: the suite runs in a child interpreter (the same one), whose exit status it returns.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from typing import Any


def _cmd_bench(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("bench") is None:
        print("pose3d bench: run it from a checkout of the repository (bench/ is not installed)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "bench", *args.bench_args])


def add_bench_command(sub: Any) -> None:
    """Register ``bench`` on the ``pose3d`` subparsers; every argument after it goes to ``python -m bench``."""
    bench = sub.add_parser(
        "bench",
        help="network benchmark suite (python -m bench): items/s, FLOPs, %% of matmul peak, fast vs reference",
        description="Runs `python -m bench` with the given arguments (see `python -m bench --help`).",
        add_help=False,
        prefix_chars="+",  # so that --quick, --help ... are not pose3d's options but python -m bench's
    )
    bench.add_argument("bench_args", nargs="*", help="arguments for python -m bench")
    bench.set_defaults(func=_cmd_bench)
