"""The evaluator as a library call: datasets, candidates (profiles, settings files or models) and ``evaluate``.

    from service.evaluation.api import Candidate, evaluate_sync, h36m_dataset
    data = h36m_dataset(Path("data_3d_h36m.npz"), Path("data_2d_h36m_cpn_ft_h36m_dbb.npz"), Path("cameras.json"))
    (result,) = evaluate_sync([Candidate.from_profile("default")], data)
    print(result.table.average["mpjpe"])  # millimetres

Each candidate's engine is the in-process engine of :func:`service.assembly.in_process_engine` (the one the
embedded service runs), started from the candidate's settings and closed afterwards.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from service.api.models import resolve_model
from service.assembly import in_process_engine
from service.config import GatewaySettings, InputKind, build_settings
from service.engine.types import EngineClient
from service.evaluation.aggregate import Average, score, tabulate
from service.evaluation.report import Evaluation, paper_row
from service.evaluation.runner import SequenceRunner
from service.evaluation.sequences import (
    ACTIONS,
    PCK_JOINTS,
    TEST_SUBJECTS,
    EvalSequence,
    load_3dhp,
    load_clip,
    load_h36m,
)
from service.metrics import Metrics
from service.profiles import profile_names, profile_path


@dataclass(frozen=True)
class Dataset:
    """Sequences to evaluate and how their table is laid out (column order, average, PCK joints)."""

    name: str
    sequences: list[EvalSequence]
    order: tuple[str, ...] = ()
    weighting: Average = Average.FRAMES
    pck_joints: tuple[int, ...] | None = None
    input_2d: str = "images"  # the 2D input the published rows are matched by: cpn, gt or images


def h36m_dataset(data_3d: Path, data_2d: Path, cameras: Path, subjects: Sequence[str] = TEST_SUBJECTS) -> Dataset:
    """Human3.6M protocol: S9 + S11, every action and camera, per-action table averaged over actions."""
    input_2d = "gt" if "_gt" in data_2d.name else "cpn"
    sequences = load_h36m(data_3d, data_2d, cameras, subjects)
    return Dataset("Human3.6M", sequences, ACTIONS, Average.ACTIONS, None, input_2d)


def mpi3dhp_dataset(path: Path) -> Dataset:
    """MPI-INF-3DHP test set (P-STMO's npz): PCK@150 mm, AUC and MPJPE over the valid frames."""
    return Dataset("MPI-INF-3DHP", load_3dhp(path), (), Average.FRAMES, PCK_JOINTS, "gt")


def clips_dataset(paths: Sequence[Path]) -> Dataset:
    """Labelled clips (:mod:`service.evaluation.sequences`), through the whole pipeline from the images."""
    return Dataset("labelled clips", [load_clip(p) for p in paths], (), Average.FRAMES, PCK_JOINTS)


@dataclass(frozen=True)
class Candidate:
    """What to evaluate: the settings of an engine and the served model to ask (``None``: the server's default
    for the dataset's input); ``label`` names its row."""

    label: str
    settings: GatewaySettings
    model: str | None = None

    @classmethod
    def from_profile(cls, name: str, **overrides: Any) -> Candidate:
        return cls(name, build_settings(GatewaySettings, profile_path(name), workers=[], **overrides))

    @classmethod
    def parse(cls, entry: str, base: GatewaySettings, **overrides: Any) -> Candidate:
        """``entry``: a settings file (TOML/YAML), a shipped profile, or a model served by ``base``."""
        path = Path(entry)
        if path.suffix in {".toml", ".yaml", ".yml"} and path.is_file():
            return cls(path.stem, build_settings(GatewaySettings, path, workers=[], **overrides))
        if entry in profile_names():
            return cls.from_profile(entry, **overrides)
        if entry in base.models:
            return cls(entry, base, entry)
        raise ValueError(
            f"{entry!r} is neither a settings file, a profile ({', '.join(profile_names())}) nor a model of the "
            f"settings ({', '.join(base.models)})"
        )

    def model_for(self, images: bool) -> str:
        return self.model or self.settings.default_model(InputKind.IMAGE if images else InputKind.KEYPOINTS)


async def evaluate_engine(
    engine: EngineClient, dataset: Dataset, model: str, label: str, concurrency: int = 4, progress: bool = True
) -> Evaluation:
    """``dataset`` through ``engine``'s model ``model``: predictions, scores and the table."""
    info = await resolve_model(engine, model)
    predictions, seconds = await SequenceRunner(engine, info).run(dataset.sequences, concurrency, progress)
    load = os.getloadavg()
    scores = [score(s, p, dataset.pck_joints) for s, p in zip(dataset.sequences, predictions, strict=True)]
    table = tabulate(scores, dataset.order, dataset.weighting)
    config = f"{info.device}, flip_test={info.flip_test}, {concurrency} sequences in flight"
    paper = paper_row(dataset.name, info.version, dataset.input_2d)
    frames = sum(s.length for s in dataset.sequences)
    return Evaluation(label, dataset.name, asdict(info), table, frames, seconds, scores, config, load, paper)


async def evaluate(
    candidates: Sequence[Candidate], dataset: Dataset, concurrency: int = 4, progress: bool = True
) -> list[Evaluation]:
    """Each candidate in turn on its own started engine (one engine for candidates sharing settings)."""
    out = []
    engines: dict[int, EngineClient] = {}
    images = any(s.images is not None for s in dataset.sequences)
    try:
        for c in candidates:
            if id(c.settings) not in engines:
                engines[id(c.settings)] = await in_process_engine(c.settings, Metrics())
            engine = engines[id(c.settings)]
            result = await evaluate_engine(engine, dataset, c.model_for(images), c.label, concurrency, progress)
            knobs = c.settings.engine  # those that set the throughput
            result.config += f", max_batch_size={knobs.max_batch_size}, max_delay_ms={knobs.max_delay_ms:g}, "
            result.config += f"torch_threads={knobs.torch_threads}"
            out.append(result)
    finally:
        for engine in engines.values():
            await engine.aclose()
    return out


def evaluate_sync(
    candidates: Sequence[Candidate], dataset: Dataset, concurrency: int = 4, progress: bool = True
) -> list[Evaluation]:
    """:func:`evaluate` from synchronous code."""
    return asyncio.run(evaluate(candidates, dataset, concurrency, progress))
