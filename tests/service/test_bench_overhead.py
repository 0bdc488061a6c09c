"""`python -m bench overhead` with tiny counts: every layer (bare, engine, REST, gRPC, remote worker in real child
processes) of both cases is timed and the report carries the configuration, the overheads and Triton's source.
Structure only: no figure is compared with another (the machine is shared)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.__main__ import main
from bench.overhead import parse_args
from bench.overhead_layers import Timing, median_timing
from bench.overhead_report import STEPS, TRITON, overheads

LAYERS = {"bare", "engine", "rest", "grpc", "remote_rest", "remote_grpc"}


@pytest.mark.slow
def test_overhead_bench_times_every_layer_and_writes_json_and_markdown(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    args = ["--requests", "2", "--load-requests", "4", "--concurrency", "2", "--warmup", "1", "--rounds", "2"]
    try:
        assert main(["overhead", *args, "--width", "96", "--height", "64", "--out", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "overhead.json").read_text())
    config = report["configuration"]
    assert {"models", "input", "torch_threads", "device", "torch", "load_avg_start", "load_avg_end"} <= set(config)
    assert config["torch"] == torch.__version__
    assert "96x64" in config["input"]
    assert config["requests"]["rounds"] == 2
    assert set(report["results"]) == {"image", "keypoints"}
    for case, layers in report["results"].items():
        assert set(layers) == LAYERS, case
        for layer, modes in layers.items():
            b1, load = modes["batch1"], modes["load"]
            assert (b1["concurrency"], b1["batch"]) == (1, 1), (case, layer)
            assert load["concurrency"] == (1 if layer == "bare" else 2), (case, layer)
            for t in (b1, load):
                assert min(t["us_per_request"], t["us_per_frame"]) > 0, (case, layer)
                assert len(t["load_avg"]) == 2
        assert layers["bare"]["load"]["batch"] == max(1, round(report["formed_batch"][case]))
    assert len(report["overheads"]) == 2 * 2 * len(STEPS)
    assert report["triton"]["source"] == TRITON["source"]
    md = (tmp_path / "overhead.md").read_text()
    for needle in (
        "engine ÷ bare per frame under load, image",
        "target ≤ 1.05",
        "engine − bare",
        "REST − engine",
        "gRPC − engine",
        "remote REST − REST",
        "load avg",
        "Triton",
    ):
        assert needle in md


def _timing(us_request: float, us_frame: float) -> Timing:
    return Timing(10, 1, 1, 1.0, us_request, us_frame, (1.0, 2.0))


def test_overheads_subtract_each_layer_from_the_one_below_per_request_at_batch_1_per_frame_under_load() -> None:
    results = {
        "image": {
            "bare": {"batch1": _timing(100, 100), "load": _timing(400, 50)},
            "engine": {"batch1": _timing(130, 130), "load": _timing(900, 55)},
            "rest": {"batch1": _timing(500, 500), "load": _timing(2000, 70)},
        }
    }
    rows = {(r["mode"], r["layer"]): r for r in overheads(results)}
    assert set(rows) == {(m, s) for m in ("batch1", "load") for s in ("engine − bare", "REST − engine")}
    assert rows["batch1", "engine − bare"]["overhead_us"] == 30
    assert rows["batch1", "REST − engine"]["overhead_us"] == 370
    assert rows["load", "engine − bare"]["overhead_us"] == 5
    assert rows["load", "engine − bare"]["ratio"] == pytest.approx(1.1)
    assert rows["load", "REST − engine"]["load_avg"] == 2.0


def test_the_median_round_is_reported_with_the_load_of_all_rounds() -> None:
    rounds = [
        Timing(10, 1, 1, 1.0, 300, 300, (2.0, 3.0)),
        Timing(10, 1, 1, 1.0, 100, 100, (1.0, 1.5)),
        Timing(10, 1, 1, 1.0, 200, 200, (4.0, 2.0)),
    ]
    median = median_timing(rounds)
    assert median.us_per_frame == 200
    assert median.load_avg == (1.0, 3.0)


def test_counts_below_one_are_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--concurrency", "0"])
