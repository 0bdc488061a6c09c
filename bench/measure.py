"""Timing primitives of the suite: interleaved fast/reference rounds, the fp32 matmul peak, FLOPs per item,
and dynamic batching through the engine's :class:`~service.engine.batcher.DynamicBatcher`.

Nothing here asserts a speed: the numbers are reported, and ratios come from measurements interleaved in one
process (alternating order per round, median over rounds) so that load from other processes hits both sides.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.networks import Inputs, NetworkCase
from model.fastpath import set_fast_path
from service.engine.batcher import BatcherLimits, DynamicBatcher

PEAK_SIZE = 2048


def items_per_second(run: Callable[[], Any], items: int, min_seconds: float) -> float:
    """Call ``run`` (one forward of ``items`` items) until ``min_seconds`` have passed (at least once)."""
    calls = 0
    start = time.perf_counter()
    while True:
        run()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * items / elapsed


def matmul_gflops(min_seconds: float, size: int = PEAK_SIZE, device: str = "cpu") -> float:
    """Achieved fp32 GFLOP/s of ``torch.mm`` on two ``size × size`` matrices at the current thread count
    (on CUDA: with the default matmul precision, i.e. TF32 off unless a caller enabled it)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)

    def mm() -> None:
        torch.mm(a, b)
        if a.is_cuda:
            torch.cuda.synchronize()

    mm()  # warm-up (allocations, oneDNN/BLAS dispatch)
    per_second = items_per_second(mm, 1, min_seconds)
    return per_second * 2 * size**3 / 1e9


def flops_per_item(case: NetworkCase, batch: int = 2) -> float:
    """FLOPs of one item counted by ``FlopCounterMode`` on the reference path (explicit matmuls and convs).

    The fast path does the same arithmetic (its fused attention kernel is not counted by every torch build).
    """
    run = case.runner(batch, fast=False)
    with FlopCounterMode(display=False) as counter:
        run()
    set_fast_path(case.model, True)
    return float(counter.get_total_flops()) / batch


@dataclass(frozen=True)
class PathTimes:
    """One network at one batch size over interleaved rounds: every round's items/s of both paths and the fp32
    matmul GFLOP/s measured right before that round's pair (so a round's load hits all three alike).

    ``fast`` / ``reference``: median items/s; ``speedup``: median of the per-round ratios (paired);
    ``fast_peak_fraction`` / ``reference_peak_fraction``: median over rounds of items/s × FLOPs ÷ that round's peak.
    """

    batch: int
    fast_rounds: tuple[float, ...]
    reference_rounds: tuple[float, ...]
    peak_rounds: tuple[float, ...]

    @property
    def fast(self) -> float:
        return statistics.median(self.fast_rounds)

    @property
    def reference(self) -> float:
        return statistics.median(self.reference_rounds)

    @property
    def speedup(self) -> float:
        return statistics.median(f / r for f, r in zip(self.fast_rounds, self.reference_rounds, strict=True))

    def peak_fraction(self, fast: bool, gflops_per_item: float) -> float:
        rounds = self.fast_rounds if fast else self.reference_rounds
        return statistics.median(x * gflops_per_item / p for x, p in zip(rounds, self.peak_rounds, strict=True))


def interleaved(
    case: NetworkCase, batches: Sequence[int], rounds: int, min_seconds: float, device: str = "cpu"
) -> list[PathTimes]:
    """Fast and reference path of ``case`` at each batch size, alternating which goes first in every round,
    each pair preceded by a matmul peak measurement."""
    fast: dict[int, list[float]] = {b: [] for b in batches}
    ref: dict[int, list[float]] = {b: [] for b in batches}
    peak: dict[int, list[float]] = {b: [] for b in batches}
    for b in batches:  # warm-up: allocator, oneDNN primitive caches, channels-last reorders
        case.runner(b, True)()
        case.runner(b, False)()
    for r in range(rounds):
        for b in batches:
            peak[b].append(matmul_gflops(min(min_seconds, 0.3), device=device))
            order = (True, False) if r % 2 == 0 else (False, True)
            for is_fast in order:
                figure = items_per_second(case.runner(b, is_fast), b, min_seconds)
                (fast if is_fast else ref)[b].append(figure)
    set_fast_path(case.model, True)
    return [PathTimes(b, tuple(fast[b]), tuple(ref[b]), tuple(peak[b])) for b in batches]


def _batched_forward(case: NetworkCase) -> Callable[[Sequence[Inputs]], list[Any]]:
    """The batch function of a batcher: stack single items (batch-first tensors, tuples of them), one fast forward."""

    def stack(parts: Sequence[Any]) -> Any:
        if isinstance(parts[0], tuple):
            return tuple(stack([p[i] for p in parts]) for i in range(len(parts[0])))
        return torch.cat(list(parts))

    def fn(items: Sequence[Inputs]) -> list[Any]:
        inputs = _to_device(stack(list(items)), case.device)
        model = case.fast_model if case.fast_model is not None else case.model
        if isinstance(model, torch.nn.Module):
            set_fast_path(model, True)
        with torch.inference_mode():
            out = case.forward(model, inputs)
        first = out[0] if isinstance(out, tuple) else out
        return list(first.cpu().split(1))

    return fn


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, tuple):
        return tuple(_to_device(x, device) for x in inputs)
    return inputs.to(device)


async def _saturate(case: NetworkCase, max_batch: int, callers: int, seconds: float) -> float:
    """Items/s through a DynamicBatcher of ``max_batch`` with ``callers`` concurrent one-item submitters."""
    item = case.make_inputs(1)  # host tensors; the batch function moves the stacked batch to the device
    with ThreadPoolExecutor(1) as pool:
        batcher: DynamicBatcher[Inputs, Any] = DynamicBatcher(
            "bench", _batched_forward(case), BatcherLimits(max_batch, 2.0, 100_000), executor=pool
        )
        batcher.start()
        done = 0
        deadline = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await batcher.submit(item)
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(callers)))
        elapsed = time.perf_counter() - start
        await batcher.aclose()
    return done / elapsed


def batching_ratio(case: NetworkCase, max_batch: int, rounds: int, seconds: float) -> dict[str, Any]:
    """Dynamic batching (``max_batch``, as many callers) ÷ batch size 1, interleaved rounds, medians."""
    batched: list[float] = []
    single: list[float] = []
    callers = max(2 * max_batch, 2)
    for r in range(rounds):
        for size in (max_batch, 1) if r % 2 == 0 else (1, max_batch):
            figure = asyncio.run(_saturate(case, size, callers, seconds))
            (batched if size == max_batch else single).append(figure)
    b, s = statistics.median(batched), statistics.median(single)
    return {"max_batch": max_batch, "batched_items_s": b, "batch1_items_s": s, "ratio": b / s}
