"""``pose3d stream``: a clip or a camera over gRPC (bidirectional), results as JSON lines.

Imports no torch and no model code (import-linter contract; tests/service/test_light_client.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from service.client.connection import add_connection_arguments, connection_from_args
from service.client.estimate import options_message
from service.client.estimate_cli import add_options, count_arg, estimate_args
from service.client.sources import SourceFrame, camera_frames, clip_frame_count, clip_frames, write_synthetic_clip
from service.client.stream import StreamClient, StreamConfig, StreamStats
from service.errors import Pose3DError


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
    count = clip_frame_count(path)
    if args.max_frames is not None:
        frames = itertools.islice(frames, max(0, args.max_frames))  # indices 0, 1, ...: stop decoding there
        count = min(count, args.max_frames) if count else args.max_frames
    return frames, count, True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``stream`` flags."""
    parser.description = (
        "Send frames to Pose3D.StreamEstimate at the source rate (or --max-rate), print each result "
        "as a JSON line as soon as it arrives, a progress bar on stderr, and end-to-end latency percentiles "
        "and frames per second at the end. Resumes the stream by id if the connection drops."
    )
    parser.add_argument("clip", nargs="?", default=None, help="a video file")
    parser.add_argument("--camera", type=int, default=None, help="capture from camera N instead of a file")
    parser.add_argument("--synthetic", type=count_arg, default=None, metavar="FRAMES", help="generate a clip this long")
    parser.add_argument("--width", type=count_arg, default=192, help="--synthetic frame width")
    parser.add_argument("--height", type=count_arg, default=256, help="--synthetic frame height")
    parser.add_argument("--fps", type=count_arg, default=25, help="--synthetic frame rate")
    parser.add_argument("--grpc", default="127.0.0.1:50051", help="gateway gRPC address host:port")
    parser.add_argument("--max-rate", action="store_true", help="send as fast as possible, not at the source rate")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--max-ahead", type=int, default=8, help="unanswered frames allowed beyond the window lag")
    parser.add_argument("--encoding", choices=["png", "jpeg"], default="png", help="frame encoding (png: lossless)")
    parser.add_argument("--output", "-o", default=None, help="write JSON lines here instead of stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--summary-json", default=None, help="also write the statistics as JSON here")
    add_options(parser)
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    options = options_message(estimate_args(args))
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as files:
        frames, total, from_file = _source(args, Path(tmp))
        out: TextIO = files.enter_context(open(args.output, "w")) if args.output else sys.stdout

        def emit(result: dict[str, Any]) -> None:
            out.write(json.dumps(result) + "\n")

        progress = _progress_printer(total, sys.stderr) if not args.no_progress else None
        config = StreamConfig(
            options=options,
            encoding=args.encoding,
            paced=from_file and not args.max_rate,
            max_ahead=args.max_ahead,
            connection=connection_from_args(args),
        )
        try:
            stats = asyncio.run(StreamClient(args.grpc, frames, config, emit, progress).run())
        except Pose3DError as exc:
            print(f"\npose3d stream: {type(exc).__name__}: {exc.detail}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            if progress is not None:  # end the progress line: "interrupted" goes on a line of its own
                sys.stderr.write("\n")
            raise
    if progress is not None:
        sys.stderr.write("\n")
    print(stats.report(), file=sys.stderr)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(stats.summary(), indent=2) + "\n")
    return 0
