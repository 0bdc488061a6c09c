"""Outputs of the suite: ``bench.json`` (everything), ``bench.md`` (the table) and ``bench.png`` (plots).

Every output carries the configuration (models and widths, threads, device, torch version, rounds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def config_line(config: dict[str, Any]) -> str:
    """One line naming the configuration (for the markdown header and the plot's footer)."""
    return (
        f"torch {config['torch']} · device {config['device']} ({config['processor']}) · {config['threads']} thread(s) · "
        f"fp32, eval, inference_mode, random weights · median of {config['rounds']} interleaved rounds · "
        f"fp32 matmul peak (torch.mm {config['peak_size']}², measured before each round's pair) median "
        f"{config['peak_gflops']:.1f}, max {config['peak_gflops_max']:.1f} GFLOP/s; speed-up and % of peak per round, "
        "then median"
    )


def best(net: dict[str, Any]) -> dict[str, Any]:
    """The batch size row with the most fast-path items/s."""
    return max(net["batches"], key=lambda row: row["fast_items_s"])


def markdown(result: dict[str, Any]) -> str:
    """The summary table and the per-batch table as markdown."""
    cfg = result["config"]
    lines = [
        "Configuration: " + config_line(cfg),
        "",
        "| network | widths | FLOPs / item | best batch | items/s fast | items/s reference | speed-up | "
        "% of peak (fast) | batching ÷ batch-1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for net in result["networks"]:
        row = best(net)
        batching = net.get("batching")
        ratio = f"{batching['ratio']:.2f} (max batch {batching['max_batch']})" if batching else "—"
        lines.append(
            f"| {net['label']} | {json.dumps(net['config'])} | {net['gflops_per_item']:.3f} GFLOP / {net['unit']} | "
            f"{row['batch']} | {row['fast_items_s']:.1f} | {row['reference_items_s']:.1f} | {row['speedup']:.2f}× | "
            f"{row['fast_peak_pct']:.0f}% (ref {row['reference_peak_pct']:.0f}%) | {ratio} |"
        )
    lines += ["", "| network | batch | items/s fast | items/s reference | speed-up | % of peak fast / reference |"]
    lines.append("|---|---|---|---|---|---|")
    for net in result["networks"]:
        for row in net["batches"]:
            lines.append(
                f"| {net['label']} | {row['batch']} | {row['fast_items_s']:.1f} | {row['reference_items_s']:.1f} | "
                f"{row['speedup']:.2f}× | {row['fast_peak_pct']:.0f}% / {row['reference_peak_pct']:.0f}% |"
            )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """Per network: items/s by batch size (fast vs reference) and % of the matmul peak."""
    nets = result["networks"]
    fig, axes = plt.subplots(2, len(nets), figsize=(4 * len(nets), 7), squeeze=False)
    for col, net in enumerate(nets):
        batches = [row["batch"] for row in net["batches"]]
        top, bottom = axes[0][col], axes[1][col]
        for key, label in (("fast", "fast"), ("reference", "reference")):
            top.plot(batches, [row[f"{key}_items_s"] for row in net["batches"]], marker="o", label=label)
            bottom.plot(batches, [row[f"{key}_peak_pct"] for row in net["batches"]], marker="o", label=label)
        top.set_title(f"{net['label']}\n{net['gflops_per_item']:.3f} GFLOP / {net['unit']}", fontsize=9)
        top.set_ylabel(f"{net['unit']}s / s")
        bottom.set_ylabel("% of fp32 matmul peak")
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.set_xlabel("batch size")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.text(0.5, 0.005, config_line(result["config"]), ha="center", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110, metadata={"Description": config_line(result["config"])})
    plt.close(fig)


def write(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``bench.json``, ``bench.md`` and ``bench.png`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "markdown": out_dir / "bench.md", "png": out_dir / "bench.png"}
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    paths["markdown"].write_text(markdown(result))
    plot(result, paths["png"])
    return paths
