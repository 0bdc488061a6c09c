"""CLI: ``python -m model.conformance [FILE ...]``; exits 0 only if every output is within tolerance.

With no FILE it checks every vector the repository ships in ``tests/data/conformance/*.pt`` (see the README
there for where each came from)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from model.conformance.core import ConformanceError, check_file

REPO_VECTORS = Path(__file__).resolve().parents[2] / "tests" / "data" / "conformance"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.conformance", description=__doc__)
    parser.add_argument(
        "files", nargs="*", help=f"conformance vector files (*.pt); default: every file in {REPO_VECTORS}"
    )
    args = parser.parse_args(argv)
    if not args.files:
        here = Path("tests") / "data" / "conformance"  # a checkout's own copy when run from its root
        vectors = here if here.is_dir() else REPO_VECTORS
        args.files = [os.path.relpath(p) for p in sorted(vectors.glob("*.pt"))]
        if not args.files:
            print(f"no vectors found in {REPO_VECTORS} (run from a checkout of the repository)")
            return 2
    torch.manual_seed(0)
    ok = True
    for path in args.files:
        try:
            kind, checks = check_file(path)
        except (ConformanceError, OSError, RuntimeError, ValueError) as e:
            print(f"{path}: ERROR {str(e).removeprefix(f'{path}: ')}")
            ok = False
            continue
        except Exception as e:
            print(f"{path}: ERROR (unexpected) {type(e).__name__}: {e}")
            ok = False
            continue
        for c in checks:
            status = "ok" if c.passed else "FAIL"
            shape = "" if c.shape_ok else " (shape mismatch or missing)"
            print(
                f"{path} [{kind}] {c.name}: max_abs_err={c.max_abs_err:.3e} tol={c.tolerance:.0e} "
                f"worst_err/tol={c.worst_ratio:.3g} {status}{shape}"
            )
            ok = ok and c.passed
    print("conformance: all outputs within tolerance" if ok else "conformance: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
