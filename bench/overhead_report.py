"""The overhead of each layer over the one below, Triton's published figure beside it, and the report files
(``overhead.json``, ``overhead.md``) of ``bench.overhead``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.overhead_layers import Timing

STEPS = (
    ("engine − bare", "engine", "bare"),
    ("REST − engine", "rest", "engine"),
    ("gRPC − engine", "grpc", "engine"),
    ("remote REST − REST", "remote_rest", "rest"),
    ("remote gRPC − gRPC", "remote_grpc", "grpc"),
)
MODES = {"batch1": "us_per_request", "load": "us_per_frame"}
"""Batch 1 compares the mean latency of one request; under load, the wall time per frame (throughput)."""

TRITON = {
    "source": "Triton Perf Analyzer docs, Quick Start, 'Observe and Analyze Output' "
    "(https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/perf_analyzer/docs/quick_start.html)",
    "configuration": "perf_analyzer -m simple (the example 'simple' model: two INT32 [16] inputs, add/sub), HTTP, "
    "batch 1, concurrency 1, synchronous calls, 5000 ms windows; Triton in its container, hardware not stated",
    "server_overhead_us": 41,
    "server_request_us": 382,
    "compute_us": 299,
    "client_latency_us": 708,
    "quote": "Avg request latency: 382 usec (overhead 41 usec + queue 41 usec + compute input 26 usec + "
    "compute infer 257 usec + compute output 16 usec); client Avg latency: 708 usec; "
    "Avg HTTP time: 700 usec (send/recv 102 usec + response wait 598 usec)",
}
"""Triton's own published per-request figures, as quoted in its docs (not measured here)."""


def overheads(results: dict[str, dict[str, dict[str, Timing]]]) -> list[dict[str, Any]]:
    """Per case and mode, µs each layer adds over the one below (missing layers skipped), and engine ÷ bare."""
    rows: list[dict[str, Any]] = []
    for case, layers in results.items():
        for mode, field in MODES.items():
            for name, upper, lower in STEPS:
                if mode not in layers.get(upper, {}) or mode not in layers.get(lower, {}):
                    continue
                hi, lo = layers[upper][mode], layers[lower][mode]
                us_hi, us_lo = getattr(hi, field), getattr(lo, field)
                rows.append(
                    {
                        "case": case,
                        "mode": mode,
                        "layer": name,
                        "metric": field,
                        "overhead_us": us_hi - us_lo,
                        "ratio": us_hi / us_lo,
                        "load_avg": max(hi.load_avg + lo.load_avg),
                    }
                )
    return rows


def _layer_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| case | layer | batch 1 µs/request | load avg | under load µs/frame | µs/request | batch | load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case, layers in report["results"].items():
        for layer, modes in layers.items():
            b1, ld = modes["batch1"], modes["load"]
            lines.append(
                f"| {case} | {layer} | {b1['us_per_request']:.0f} | {max(b1['load_avg']):.2f} | "
                f"{ld['us_per_frame']:.0f} | {ld['us_per_request']:.0f} | {ld['batch']} | {max(ld['load_avg']):.2f} |"
            )
    return lines


def _overhead_table(report: dict[str, Any]) -> list[str]:
    lines = ["| case | mode | layer | overhead µs | ratio | load avg |", "|---|---|---|---:|---:|---:|"]
    for row in report["overheads"]:
        unit = "per request" if row["mode"] == "batch1" else "per frame"
        lines.append(
            f"| {row['case']} | {row['mode']} ({unit}) | {row['layer']} | {row['overhead_us']:+.0f} | "
            f"{row['ratio']:.3f} | {row['load_avg']:.2f} |"
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: configuration, every layer's figures, the overheads, Triton's figure."""
    config = report["configuration"]
    head = ["# Serving overhead per layer (`python -m bench.overhead`)", ""]
    head += [f"- {k}: {v}" for k, v in config.items()]
    formed = ", ".join(f"{c} {b:.1f}" for c, b in report["formed_batch"].items())
    head += [f"- mean batch the engine formed under load (bare runs at it, rounded): {formed}", ""]
    targets = [
        f"- engine ÷ bare per frame under load, {row['case']}: {row['ratio']:.3f} (target ≤ 1.05; load avg "
        f"{row['load_avg']:.2f})"
        for row in report["overheads"]
        if row["mode"] == "load" and row["layer"] == "engine − bare"
    ]
    t = report["triton"]
    triton = [
        "",
        f"Triton, for comparison (published, not measured here): server overhead {t['server_overhead_us']} µs "
        f"per request of a {t['server_request_us']} µs server request, client latency {t['client_latency_us']} µs. "
        f'{t["configuration"]}. Source: {t["source"]}: "{t["quote"]}".',
    ]
    tables = [*_layer_table(report), "", *_overhead_table(report), ""]
    return "\n".join([*head, *tables, *targets, *triton, ""])


def write_report(report: dict[str, Any], out: Path) -> dict[str, Path]:
    """``overhead.json`` and ``overhead.md`` in ``out`` (created); Triton's figure added to both."""
    out.mkdir(parents=True, exist_ok=True)
    full = {**report, "triton": TRITON}
    paths = {"json": out / "overhead.json", "markdown": out / "overhead.md"}
    paths["json"].write_text(json.dumps(full, indent=2, ensure_ascii=False))
    paths["markdown"].write_text(markdown(full))
    return paths
