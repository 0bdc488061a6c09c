"""``pose3d eval``: accuracy (and throughput) of the served pipeline on a dataset; examples in docs/evaluation.md."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run a dataset through the served pipeline (the engine POST /v1/pose3d runs) and print the papers' "
        "metrics per action: Human3.6M (VideoPose3D/P-STMO npz), MPI-INF-3DHP (P-STMO npz) or labelled clips."
    )
    sub = parser.add_subparsers(dest="dataset", required=True)
    h36m = sub.add_parser("h36m", help="Human3.6M S9+S11 in the VideoPose3D / P-STMO npz layout")
    h36m.add_argument("--data-3d", type=Path, required=True, help="data_3d_h36m.npz")
    h36m.add_argument("--data-2d", type=Path, required=True, help="data_2d_h36m_cpn_ft_h36m_dbb.npz or _gt.npz")
    h36m.add_argument("--cameras", type=Path, required=True, help="the cameras JSON (docs/evaluation.md)")
    h36m.add_argument("--subjects", nargs="+", default=["S9", "S11"], help="test subjects (default S9 S11)")
    hp = sub.add_parser("3dhp", help="MPI-INF-3DHP test set in P-STMO's layout (data_test_3dhp.npz)")
    hp.add_argument("--data", type=Path, required=True, help="data_test_3dhp.npz")
    clips = sub.add_parser("clips", help="labelled clips: media + per-frame 3D (camera frame) labels, one npz each")
    clips.add_argument("labels", type=Path, nargs="+", help="the clips' .npz label files")
    for child in (h36m, hp, clips):
        _add_common(child)
    labels = sub.add_parser("h36m-labels", help="write a clip label file for one Human3.6M video (CA-PF on images)")
    labels.add_argument("--data-3d", type=Path, required=True, help="data_3d_h36m.npz")
    labels.add_argument("--data-2d", type=Path, required=True, help="data_2d_h36m_gt.npz (2D labels and boxes)")
    labels.add_argument("--cameras", type=Path, required=True, help="the cameras JSON (docs/evaluation.md)")
    labels.add_argument("--subject", required=True, help="e.g. S9")
    labels.add_argument("--action", required=True, help='e.g. "Walking 1" (as in the npz)')
    labels.add_argument("--camera", type=int, required=True, help="0-3, in the cameras file's order")
    labels.add_argument("--media", type=Path, required=True, help="the video file or its extracted frames' folder")
    labels.add_argument("--out", type=Path, required=True, help="the label file to write (.npz)")
    demo = sub.add_parser("synthetic", help="write a tiny synthetic Human3.6M (npz layout) + a labelled clip")
    demo.add_argument("folder", type=Path, help="where to write them")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="a shipped settings profile (default, realtime)")
    parser.add_argument("--config", help="a TOML/YAML settings file (as for `pose3d serve`)")
    parser.add_argument("--weights", metavar="SET", help="a complete weights set, as `pose3d serve --weights` (w32)")
    parser.add_argument("--model", help="the served model to evaluate (default: the server's default for the input)")
    parser.add_argument(
        "--compare", nargs="+", metavar="ENTRY",
        help="evaluate several: shipped profiles, settings files (.toml/.yaml) or models of the settings; "
             "prints one table with accuracy and frames/s side by side",
    )  # fmt: skip
    parser.add_argument(
        "--allow-random-weights", action=argparse.BooleanOptionalAction, default=None,
        help="evaluate models whose checkpoints are missing with random weights (pipeline checks only)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG here: MPJPE per action and error vs distance")
    parser.add_argument("--concurrency", type=int, default=4, help="sequences in flight at once (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.dataset == "h36m-labels":
        return _labels(args)
    if args.dataset == "synthetic":
        from service.evaluation.synthetic import write_demo

        files = write_demo(args.folder)
        print(f"wrote {files.data_3d}, {files.data_2d}, {files.cameras} and {args.folder / 'clips'}")
        return 0
    from service.config import GatewaySettings, build_settings
    from service.errors import Pose3DError
    from service.evaluation.api import Candidate, clips_dataset, evaluate_sync, h36m_dataset, mpi3dhp_dataset
    from service.evaluation.report import compare_text, plot, table_text
    from service.profiles import profile_path
    from service.weights.resolve import weight_set_overrides
    from service.weights.store import WeightsError

    overrides = {"allow_random_weights": args.allow_random_weights} if args.allow_random_weights is not None else {}
    config = Path(args.config) if args.config else (profile_path(args.profile) if args.profile else None)
    try:
        weights = weight_set_overrides(args.weights) if args.weights else {}
        base = build_settings(GatewaySettings, config, workers=[], **overrides, **weights)
        label = args.profile or (Path(args.config).stem if args.config else "default")
        entries = args.compare or []
        candidates = [Candidate.parse(e, base, **overrides) for e in entries] or [Candidate(label, base, args.model)]
        if args.dataset == "h36m":
            dataset = h36m_dataset(args.data_3d, args.data_2d, args.cameras, args.subjects)
        elif args.dataset == "3dhp":
            dataset = mpi3dhp_dataset(args.data)
        else:
            dataset = clips_dataset(args.labels)
    except (ValueError, OSError, KeyError, WeightsError) as exc:
        print(f"pose3d eval: {exc}", file=sys.stderr)
        return 2
    try:
        results = evaluate_sync(candidates, dataset, args.concurrency, progress=not args.no_progress)
    except (Pose3DError, ValueError) as exc:  # a model that cannot load, an unknown model
        print(f"pose3d eval: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(table_text(result))
        print()
    if len(results) > 1:
        print(compare_text(results))
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=2))
    if args.plot:
        plot(results, args.plot)
    return 0


def _labels(args: argparse.Namespace) -> int:
    from service.evaluation.sequences import write_h36m_labels

    try:
        frames = write_h36m_labels(
            args.data_3d, args.data_2d, args.cameras, args.subject, args.action, args.camera, args.media, args.out
        )
    except (ValueError, OSError, KeyError) as exc:
        print(f"pose3d eval h36m-labels: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: {frames} labelled frames of {args.subject} {args.action} camera {args.camera}")
    return 0
