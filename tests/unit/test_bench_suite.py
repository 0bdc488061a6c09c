"""`python -m bench --quick` end to end on tiny models: the three outputs exist and each carries the configuration."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch

from bench.__main__ import main


def test_quick_bench_writes_json_markdown_png_with_configuration(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    try:
        assert main(["--quick", "--out", str(tmp_path), "--batches", "1", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads((tmp_path / "bench.json").read_text())
    cfg = result["config"]
    assert cfg["torch"] == torch.__version__
    assert cfg["threads"] == 1
    assert cfg["device"] == "cpu"
    assert cfg["peak_gflops"] > 0
    assert set(cfg["models"]) == {"pstmo-tiny-27", "capf-tiny", "hrnet-micro"}
    assert cfg["models"]["capf-tiny"]["feature_channels"] == [8, 16, 32, 64]
    for net in result["networks"]:
        assert [row["batch"] for row in net["batches"]] == [1, 2]
        assert net["gflops_per_item"] > 0
        for row in net["batches"]:
            assert row["fast_items_s"] > 0
            assert row["reference_items_s"] > 0
            paired = [f / r for f, r in zip(row["fast_rounds"], row["reference_rounds"], strict=True)]
            assert row["speedup"] == statistics.median(paired)
            assert len(row["peak_gflops_rounds"]) == 1  # one round in --quick, its peak measured with it
    lifters = [n for n in result["networks"] if n["unit"] != "crop"]
    assert all(n["batching"]["ratio"] > 0 for n in lifters)
    table = (tmp_path / "bench.md").read_text()
    assert f"torch {torch.__version__}" in table
    assert "1 thread(s)" in table
    assert "| P-STMO tiny 27 |" in table
    assert "| HRNet micro 256x192 |" in table
    png = (tmp_path / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    # the configuration is drawn into the plot: the PNG carries it as text metadata too
    assert b"torch " + torch.__version__.encode() in png


def test_pose3d_bench_passes_every_argument_to_python_m_bench() -> None:
    from service.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--out", "somewhere", "--help"])
    assert args.module == "service.bench_command"  # service.cli runs this module's run(args)
    assert args.bench_args == ["--quick", "--out", "somewhere", "--help"]
