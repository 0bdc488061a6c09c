"""``pose3d render results.json|jsonl [--video clip.mp4] -o out.png|out.mp4``: render saved results."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from service.export.formats import read_results
from service.render.compose import render_mp4, render_png
from service.render.video import clip_frames


def said_random(text: str) -> bool:
    """Whether a saved result document says its weights were random (``model.random_weights`` or a warning);
    JSON lines of frames do not say, see ``--random-weights``."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return False
    if not isinstance(document, dict):
        return False
    model = document.get("model")
    warned = any("RANDOM" in str(w) for w in document.get("warnings", []))
    return warned or (isinstance(model, dict) and bool(model.get("random_weights")))


def _png(frames: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> str:
    wanted = args.frame if args.frame is not None else int(frames[0]["frame_index"])
    frame = next((f for f in frames if int(f["frame_index"]) == wanted), None)
    if frame is None:
        raise ValueError(f"no result for frame {wanted}")
    image = None
    if args.video:
        source = Path(args.video)
        decoded = cv2.imread(str(source), cv2.IMREAD_COLOR)
        if decoded is not None:
            image = np.ascontiguousarray(decoded[:, :, ::-1], dtype=np.uint8)
        else:
            image = next((img for i, img in clip_frames(source) if i == wanted), None)
            if image is None:
                raise ValueError(f"{source} has no frame {wanted}")
    out.write_bytes(render_png(frame, image, random=args.random))
    return f"wrote {out}: frame {wanted}, {len(frame['people'])} people"


def _mp4(frames: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> str:
    from tqdm import tqdm

    video = clip_frames(Path(args.video)) if args.video else None
    with tqdm(total=len(frames), unit="frame", desc="rendering", disable=args.no_progress, file=sys.stderr) as bar:
        info = render_mp4(frames, video, out, progress=bar.update, random=args.random)
    return f"wrote {out}: {info.frames} frames {info.width}x{info.height} at {info.fps:.2f} fps ({info.codec})"


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    try:
        text = Path(args.results).read_text()
        frames = read_results(text)
        args.random = args.random_weights or said_random(text)
        write = {".png": _png, ".mp4": _mp4}.get(out.suffix.lower())
        if write is None:
            raise ValueError(f"-o must end in .png or .mp4, not {out.suffix or 'nothing'!r}")
        note = write(frames, args, out)
    except (OSError, ValueError) as exc:
        print(f"pose3d render: {exc}", file=sys.stderr)
        return 1
    print(note, file=sys.stderr)
    return 0


def add_arguments(render: argparse.ArgumentParser) -> None:
    """The ``render`` command, for the table in :mod:`service.cli`."""
    render.description = (
        "Render results saved by `pose3d estimate -o x.json` or `pose3d stream -o x.jsonl`. With "
        "--video the skeletons are drawn over the source image/clip; without it only the 3D panel is drawn."
    )
    render.add_argument("results", help="a result .json document or .jsonl frames")
    render.add_argument("--video", default=None, help="the source image or clip the results were made from")
    render.add_argument("--output", "-o", required=True, help="out.png (one frame) or out.mp4 (every result frame)")
    render.add_argument("--frame", type=int, default=None, help="PNG: which frame_index (default: the first)")
    render.add_argument("--no-progress", action="store_true", help="no progress bar")
    render.add_argument(
        "--random-weights",
        action="store_true",
        help="stamp RANDOM WEIGHTS on the picture (automatic for a result document that says so)",
    )
