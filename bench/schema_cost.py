"""``python -m bench.schema_cost [--frames N] [--people P] [--rounds R]``: what the one schema costs a gRPC answer.

The gRPC ``EstimateResponse`` is derived from the REST document (``PoseAnswer.to_document`` then
``service.gateway.messages.to_message``) instead of being written field by field from the engine's results
(``bench.old_codec.estimate_result_to_pb``, the hand-written encoder it replaced). Both run here on the same
random results, interleaved, best of ``--rounds``; the REST JSON encoding (``PoseAnswer.to_chunks``) is shown beside
them for scale. Prints the configuration and the load average next to the figures (the machine may be busy).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np

from bench import old_codec
from model.joints import H36M_JOINT_NAMES
from service.engine.types import BoxSource, EstimateResult, FrameResult, ModelInfo, PersonResult
from service.gateway.encoding import PoseAnswer
from service.gateway.messages import to_message
from service.proto_gen.pose3d.v1 import pose3d_pb2 as pb

INFO = ModelInfo("capf", "capf", "capf-w32", "random", 1, 1, "h36m", "cpu", True, False)


def results(frames: int, people: int) -> list[FrameResult]:
    rng = np.random.default_rng(0)

    def person(track: int) -> PersonResult:
        return PersonResult(
            track_id=track,
            box=rng.random(4, dtype=np.float32) * 400,
            box_score=0.9,
            keypoints_2d=rng.random((17, 2), dtype=np.float32) * 400,
            keypoint_scores=rng.random(17, dtype=np.float32),
            keypoints_3d=rng.random((17, 3), dtype=np.float32),
            keypoints_3d_camera=rng.random((17, 3), dtype=np.float32) + 3.0,
            distance_m=3.5,
        )

    return [FrameResult(i, i / 30.0, [person(p) for p in range(people)]) for i in range(frames)]


def best_ms(run: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best * 1000.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.schema_cost", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--people", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    frames = results(args.frames, args.people)
    answer = PoseAnswer("bench", INFO, BoxSource.WHOLE_FRAME, frames, {"engine": 1.0}, None)
    timings = {"engine": 1.0}

    def by_hand() -> pb.EstimateResponse:
        result = EstimateResult("bench", INFO, BoxSource.WHOLE_FRAME, frames, timings)
        return old_codec.estimate_result_to_pb(result, H36M_JOINT_NAMES)

    def derived() -> pb.EstimateResponse:
        return to_message(answer.to_document(), pb.EstimateResponse)

    document = answer.to_document()
    assert derived().frames[0] == by_hand().frames[0]  # the same message either way
    rows = {"by hand (codec)": 0.0, "derived: document": 0.0, "derived: to_message": 0.0, "REST JSON": 0.0}
    for name, run in zip(
        rows,
        (by_hand, answer.to_document, lambda: to_message(document, pb.EstimateResponse), answer.to_chunks),
        strict=True,
    ):
        rows[name] = best_ms(run, args.rounds)
    print(
        f"config: {args.frames} frames x {args.people} people, best of {args.rounds}; python {platform.python_version()}"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    for name, ms in rows.items():
        print(f"{name:22s} {ms:8.1f} ms  ({1000.0 * ms / args.frames:6.1f} us/frame)")
    total = rows["derived: document"] + rows["derived: to_message"]
    print(f"{'derived total':22s} {total:8.1f} ms  (x{total / rows['by hand (codec)']:.1f} the hand-written encoder)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
