"""``python -m bench.code_size``: each line of a module counted once as code, docstring, comment or blank, and
``service/proto_gen`` left out (the issue's measure of ``service/``)."""

from __future__ import annotations

from collections import Counter
from pathlib import PurePosixPath

from bench.code_size import line_kinds, table, tally

MODULE = '''"""A module docstring
over two lines."""

import os  # a trailing comment is code

# a comment line


def f() -> int:
    """One line."""
    return 1


class C:
    """Class
    docstring."""

    x = "not a docstring"
'''


def test_every_line_is_one_kind() -> None:
    kinds = line_kinds(MODULE)
    assert kinds == Counter({"docstring": 5, "code": 5, "comment": 1, "blank": 7})
    assert sum(kinds.values()) == MODULE.count("\n")


def test_generated_code_and_other_files_are_left_out() -> None:
    files = [
        (PurePosixPath("service/engine/a.py"), "x = 1\n"),
        (PurePosixPath("service/config.py"), "y = 2\n\n"),
        (PurePosixPath("service/proto_gen/pose3d/v1/pose3d_pb2.py"), "z = 3\n" * 50),
        (PurePosixPath("service/gateway/demo_static/demo.js"), "let a = 1;\n"),
        (PurePosixPath("bench/b.py"), "w = 4\n"),
    ]
    groups = tally(files)
    assert groups == {"engine": Counter({"code": 1}), "(top level)": Counter({"code": 1, "blank": 1})}
    assert "| total | 3 (2 / 0 / 0 / 1) |" in table({"now": groups})
