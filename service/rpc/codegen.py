"""Generate ``service/proto_gen`` from ``proto/`` (the generated code is committed).

``python -m service.rpc.codegen`` rewrites the package; ``python -m service.rpc.codegen --check`` exits 1
when the committed code differs from what the protos generate (a test runs the same check). ``grpcio-tools``
(a test dependency) provides ``protoc``; the runtime needs only ``grpcio`` and ``protobuf``.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
GENERATED = REPO / "service" / "proto_gen"
PROTO_FILES = ("pose3d/v1/pose3d.proto", "pose3d/worker/v1/worker.proto")
_IMPORT_RE = re.compile(r"^from pose3d\.(\S+) import ", re.MULTILINE)
_PACKAGE_INIT = '"""Generated from proto/ by `python -m service.rpc.codegen`; do not edit."""\n'


def generate(out_dir: Path) -> list[Path]:
    """Write ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` for every proto under ``out_dir``.

    Imports between generated modules are rewritten to ``service.proto_gen.pose3d...`` so that the
    package needs nothing on ``sys.path``. Returns the files written, sorted.
    """
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(PROTO_ROOT / name) for name in PROTO_FILES),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    for package in {out_dir, *(p for p in out_dir.rglob("*") if p.is_dir() and p.name != "__pycache__")}:
        (package / "__init__.py").write_text(_PACKAGE_INIT)
    written = sorted(p for p in out_dir.rglob("*") if p.is_file())
    for path in written:
        if path.suffix in {".py", ".pyi"}:
            path.write_text(_IMPORT_RE.sub(r"from service.proto_gen.pose3d.\1 import ", path.read_text()))
    return written


def stale_files(committed: Path = GENERATED) -> list[str]:
    """Relative paths whose committed content differs from a fresh generation (empty when current)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        fresh = {p.relative_to(fresh_root) for p in generate(fresh_root)}
        old = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        differing = {rel for rel in fresh & old if not filecmp.cmp(fresh_root / rel, committed / rel, shallow=False)}
        return sorted(str(rel) for rel in (fresh ^ old) | differing)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report whether the committed code is current")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for rel in stale:
            print(f"stale: service/proto_gen/{rel}", file=sys.stderr)
        return 1 if stale else 0
    for path in generate(GENERATED):
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
