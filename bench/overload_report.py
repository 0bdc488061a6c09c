"""Figures of the overload bench (``bench/overload.py``) from its requests' outcomes, and their Markdown report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

REFUSED = frozenset({429, 503})


@dataclass(frozen=True)
class Outcome:
    """One request: ``sent`` and ``done`` in seconds from the start of its phase, the HTTP status (0: no answer)."""

    sent: float
    done: float
    status: int

    @property
    def latency(self) -> float:
        return self.done - self.sent


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` (0..1) quantile by the nearest-rank rule; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def engine_figures(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, Any]:
    """What the engine did meanwhile (two :meth:`ServedGateway.engine_totals`, ``seconds`` apart): per stage its
    mean batch, mean batch time and busy share of the time (from asking its thread for a batch to its outputs back:
    a wait for the thread the stages share counts), the mean wait of a unit in a stage's queue, refusals per
    second, and the door's Little's-law rate (real seconds per second of admitted work) at the end."""
    moved = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after if k != "seconds_per_work"}
    stages = sorted({k.split(".")[0] for k in moved if k.endswith(".batches")})
    figures: dict[str, Any] = {
        f"{stage}_batch_mean": round(moved[f"{stage}.units"] / moved[f"{stage}.batches"], 1)
        for stage in stages
        if moved[f"{stage}.batches"]
    }
    figures |= {f"{stage}_busy_share": round(moved.get(f"{stage}.busy_s", 0.0) / seconds, 3) for stage in stages}
    figures |= {  # a batch's time from asking the thread to its outputs back: ≫ its compute when it queued behind another
        f"{stage}_batch_ms": round(1000 * moved.get(f"{stage}.busy_s", 0.0) / moved[f"{stage}.batches"], 1)
        for stage in stages
        if moved[f"{stage}.batches"]
    }
    if moved.get("queue.waits"):
        figures["queue_wait_ms_mean"] = round(1000 * moved.get("queue.wait_s", 0.0) / moved["queue.waits"], 1)
    figures |= {
        f"refused_{k.split('.', 1)[1]}_per_s": round(v / seconds, 1)
        for k, v in moved.items()
        if k.startswith("refused.")
    }
    figures |= _door_estimates(moved)
    figures["seconds_per_work_after"] = round(after.get("seconds_per_work", 0.0), 2)
    return figures


def _door_estimates(moved: dict[str, float]) -> dict[str, float]:
    """What the door's per-stage model said (unscaled, ms) of the requests it judged after their bodies were read
    (admitted, and the few refused there): the mean expected wait at each stage, and their sum (``door_model_ms``:
    the mean per-stage estimate of a request that takes every stage, as the bench's all do), to set beside the 200s'
    latency and the calibration scale."""
    stages = sorted({k.split(".")[1] for k in moved if k.startswith("expected.") and k.endswith(".n")})
    means = {s: 1000 * moved[f"expected.{s}.s"] / moved[f"expected.{s}.n"] for s in stages if moved[f"expected.{s}.n"]}
    figures = {f"{stage}_expected_wait_ms": round(ms, 1) for stage, ms in means.items()}
    if means:
        figures["door_model_ms"] = round(sum(means.values()), 1)
    return figures


def summarise(
    outcomes: list[Outcome], capacity: float, offered: float, seconds: float, deadline_s: float
) -> dict[str, Any]:
    """The bench's figures: goodput = 200s within ``deadline_s`` that completed inside the ``seconds`` window, per
    second; admitted = every request not refused (429/503); met = 200 within the deadline."""
    met = [o for o in outcomes if o.status == 200 and o.latency <= deadline_s]
    admitted = [o for o in outcomes if o.status not in REFUSED]
    refused = [o.latency for o in outcomes if o.status in REFUSED]
    ok = [o.latency for o in outcomes if o.status == 200]
    goodput = sum(1 for o in met if o.done <= seconds) / seconds
    ms = 1000.0

    def as_ms(v: float | None) -> float | None:
        return None if v is None else round(v * ms, 1)

    return {
        "capacity_rps": round(capacity, 2),
        "offered_rps": round(offered, 2),
        "sent_rps": round(len(outcomes) / seconds, 2),
        "requests": len(outcomes),
        "goodput_rps": round(goodput, 2),
        "goodput_over_capacity": round(goodput / capacity, 3) if capacity else None,
        "admitted": len(admitted),
        "admitted_met_deadline": len(met),
        "admitted_met_share": round(len(met) / len(admitted), 4) if admitted else None,
        "refusal_ms_p50": as_ms(percentile(refused, 0.5)),
        "refusal_ms_p99": as_ms(percentile(refused, 0.99)),
        "ok_ms_p50": as_ms(percentile(ok, 0.5)),
        "ok_ms_p99": as_ms(percentile(ok, 0.99)),
        "by_status": {str(k): v for k, v in sorted(Counter(o.status for o in outcomes).items())},
    }


ROWS: tuple[tuple[str, str], ...] = (
    ("capacity (closed loop) before / after the load, req/s", "capacity"),
    ("offered (open loop), req/s", "offered_rps"),
    ("sent, req/s", "sent_rps"),
    ("goodput (200 within deadline, in window), req/s", "goodput_rps"),
    ("**goodput ÷ capacity** (their mean; target ≥ 0.9)", "goodput_over_capacity"),
    ("admitted (not 429/503)", "admitted"),
    ("**admitted that met their deadline** (target ≥ 0.99)", "admitted_met_share"),
    ("**refusal latency p50 / p99, ms** (target p99 < 50)", "refusal_ms"),
    ("200 latency p50 / p99, ms", "ok_ms"),
    ("responses by status (0 = none)", "by_status"),
    ("CPU, cores: load generator / server (open loop)", "cpu"),
    ("load average (1, 5, 15 min) before → after", "load"),
    ("engine meanwhile: mean batch and busy share by stage, refusals/s", "engine"),
    ("engine while capacity was measured before: mean batch by stage", "capacity_engine"),
)


def _cell(run: dict[str, Any], key: str) -> str:
    if key in {"refusal_ms", "ok_ms"}:
        return f"{run[key + '_p50']} / {run[key + '_p99']}"
    if key == "by_status":
        return ", ".join(f"{k}: {v}" for k, v in run["by_status"].items())
    if key == "capacity":
        return f"{run.get('capacity_before_rps', run['capacity_rps'])} / {run.get('capacity_after_rps', '?')}"
    if key == "cpu":
        return f"{run.get('client_cpu_cores')} / {run.get('server_cpu_cores')}"
    if key in {"engine", "capacity_engine"}:
        return ", ".join(f"{k} {v}" for k, v in run.get(key, {}).items())
    if key == "load":
        before, after = (" ".join(f"{x:.1f}" for x in run[k]) for k in ("load_average_before", "load_average_after"))
        return f"{before} → {after}"
    return str(run[key])


def markdown(result: dict[str, Any]) -> str:
    """The side-by-side table (one column per admission mode) and the configuration."""
    runs = result["runs"]
    config = result["configuration"]
    lines = [
        "Configuration: " + " · ".join(f"{k} {v}" for k, v in config.items()),
        "",
        "| | " + " | ".join(f"admission = {r['mode']}, {r.get('load', '?')}×" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    lines += ["| " + label + " | " + " | ".join(_cell(r, key) for r in runs) + " |" for label, key in ROWS]
    by_mode_load = {(r["mode"], r.get("load")): r for r in runs}
    for (mode, load), run in by_mode_load.items():
        count = by_mode_load.get(("count", load))
        if mode == "time" and count is not None and count["goodput_rps"]:
            lines += [
                "",
                f"goodput at {load}×, admission by time ÷ by count: {run['goodput_rps'] / count['goodput_rps']:.2f}×",
            ]
    return "\n".join(lines) + "\n"
