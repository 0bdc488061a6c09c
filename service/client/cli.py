"""``pose3d estimate`` and ``pose3d stream``: the client side of the service, from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from service.client.estimate import EstimateArgs, estimate_grpc, estimate_rest, options_message
from service.client.jobs_cli import add_job_options, add_jobs_commands, estimate_as_job, wants_job
from service.client.outputs import write_output
from service.client.sources import SourceFrame, camera_frames, clip_frames, clip_info, write_synthetic_clip
from service.client.stream import StreamClient, StreamConfig, StreamStats
from service.errors import Pose3DError


def _estimate_args(args: argparse.Namespace) -> EstimateArgs:
    boxes = json.loads(args.boxes) if args.boxes else None
    return EstimateArgs(
        model=args.model,
        boxes=boxes,
        flip_test=args.flip_test,
        max_people=args.max_people,
        mode=args.mode,
        every_nth=getattr(args, "every_nth", None),
    )


def _cmd_estimate(args: argparse.Namespace) -> int:
    media = Path(args.file)
    options = _estimate_args(args)
    if wants_job(args):
        return estimate_as_job(args, options)
    try:
        if args.grpc:
            document = asyncio.run(estimate_grpc(args.grpc, media.read_bytes(), options, args.timeout))
        else:
            document = estimate_rest(args.url, media, options, args.timeout)
    except (Pose3DError, RuntimeError) as exc:
        print(f"pose3d estimate: {exc}", file=sys.stderr)
        return 1
    if args.output:
        try:
            notes = write_output(document, Path(args.output), args.compact)
        except ValueError as exc:
            print(f"pose3d estimate: {exc}", file=sys.stderr)
            return 1
        print("\n".join(notes), file=sys.stderr)
    else:
        print(json.dumps(document, indent=None if args.compact else 2))
    return 0


def _progress_printer(total: int | None, out: TextIO) -> Callable[[StreamStats], None]:
    def show(stats: StreamStats) -> None:
        p50 = sorted(stats.latency_ms)[len(stats.latency_ms) // 2] if stats.latency_ms else 0.0
        if total:
            done = min(1.0, stats.results / total)
            bar = "#" * int(done * 30) + "." * (30 - int(done * 30))
            head = f"[{bar}] {stats.results}/{total}"
        else:
            head = f"{stats.results} results"
        out.write(f"\r{head}  sent {stats.frames_sent}  {stats.fps:5.1f} fps  p50 {p50:6.1f} ms ")
        out.flush()

    return show


def _source(args: argparse.Namespace, scratch: Path) -> tuple[Iterator[SourceFrame], int | None, bool]:
    """The frames, their count if known, and whether they come from a file (paced by timestamps)."""
    if args.camera is not None:
        return camera_frames(args.camera, args.max_frames), args.max_frames, False
    if args.synthetic:
        path = write_synthetic_clip(scratch / "synthetic.mp4", args.synthetic, args.width, args.height, args.fps)
    elif args.clip:
        path = Path(args.clip)
    else:
        raise SystemExit("pose3d stream: give a CLIP, --camera N or --synthetic FRAMES")
    frames = clip_frames(path)
    count = clip_info(path).frame_count
    if args.max_frames is not None:
        frames = (f for f in frames if f.index < args.max_frames)
        count = min(count, args.max_frames) if count else args.max_frames
    return frames, count, True


def _cmd_stream(args: argparse.Namespace) -> int:
    options = options_message(_estimate_args(args))
    with tempfile.TemporaryDirectory() as tmp:
        frames, total, from_file = _source(args, Path(tmp))
        out: TextIO = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
        try:

            def emit(result: dict[str, Any]) -> None:
                out.write(json.dumps(result) + "\n")

            progress = _progress_printer(total, sys.stderr) if not args.no_progress else None
            config = StreamConfig(
                options=options,
                encoding=args.encoding,
                paced=from_file and not args.max_rate,
                max_ahead=args.max_ahead,
            )
            client = StreamClient(args.grpc, frames, config, emit, progress)
            try:
                stats = asyncio.run(client.run())
            except Pose3DError as exc:
                print(f"\npose3d stream: {type(exc).__name__}: {exc.detail}", file=sys.stderr)
                return 1
        finally:
            if out is not sys.stdout:
                out.close()
    if progress is not None:
        sys.stderr.write("\n")
    print(stats.report(), file=sys.stderr)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(stats.summary(), indent=2) + "\n")
    return 0


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="served model name (default: the server's for the input)")
    parser.add_argument("--boxes", default=None, help="JSON [[x1, y1, x2, y2], ...] person boxes (pixels)")
    parser.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--max-people", type=int, default=None)
    parser.add_argument("--mode", choices=["centred", "causal"], default=None, help="temporal window mode")


def add_client_commands(sub: Any) -> None:
    """Register ``estimate`` and ``stream`` on the ``pose3d`` subparsers."""
    estimate = sub.add_parser(
        "estimate",
        help="3D poses of an image or a clip, over REST (--url) or gRPC (--grpc)",
        description="Send one image or clip; prints the JSON result (the REST document, also for --grpc).",
    )
    estimate.add_argument("file", help="JPEG/PNG/WebP image or MP4/MOV/WebM/AVI clip")
    estimate.add_argument("--url", default="http://127.0.0.1:8000", help="REST base URL")
    estimate.add_argument("--grpc", default=None, help="use gRPC at host:port instead of REST")
    estimate.add_argument("--every-nth", type=int, default=None, help="clips: process every n-th frame")
    estimate.add_argument("--timeout", type=float, default=300.0, help="seconds")
    estimate.add_argument(
        "--output",
        "-o",
        default=None,
        help="write the result here instead of stdout: .json, .jsonl, .csv or .bvh (by suffix)",
    )
    estimate.add_argument("--compact", action="store_true", help="one-line JSON")
    _options(estimate)
    add_job_options(estimate)
    estimate.set_defaults(func=_cmd_estimate)
    add_jobs_commands(sub)

    stream = sub.add_parser(
        "stream",
        help="stream a clip or a camera over gRPC (bidirectional), results as JSON lines",
        description="Send frames to Pose3D.StreamEstimate at the source rate (or --max-rate), print each result "
        "as a JSON line as soon as it arrives, a progress bar on stderr, and end-to-end latency percentiles "
        "and frames per second at the end. Resumes the stream by id if the connection drops.",
    )
    stream.add_argument("clip", nargs="?", default=None, help="a video file")
    stream.add_argument("--camera", type=int, default=None, help="capture from camera N instead of a file")
    stream.add_argument("--synthetic", type=int, default=None, metavar="FRAMES", help="generate a clip this long")
    stream.add_argument("--width", type=int, default=192, help="--synthetic frame width")
    stream.add_argument("--height", type=int, default=256, help="--synthetic frame height")
    stream.add_argument("--fps", type=int, default=25, help="--synthetic frame rate")
    stream.add_argument("--grpc", default="127.0.0.1:50051", help="gateway gRPC address host:port")
    stream.add_argument("--max-rate", action="store_true", help="send as fast as possible, not at the source rate")
    stream.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    stream.add_argument("--max-ahead", type=int, default=8, help="unanswered frames allowed beyond the window lag")
    stream.add_argument("--encoding", choices=["png", "jpeg"], default="png", help="frame encoding (png: lossless)")
    stream.add_argument("--output", "-o", default=None, help="write JSON lines here instead of stdout")
    stream.add_argument("--no-progress", action="store_true", help="no progress bar")
    stream.add_argument("--summary-json", default=None, help="also write the statistics as JSON here")
    _options(stream)
    stream.set_defaults(func=_cmd_stream)
