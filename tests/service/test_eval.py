"""``pose3d eval`` end to end on synthetic data in the real files' layouts, through the served engine (tiny
random-weight models): Human3.6M with a temporal model, CA-PF on images, MPI-INF-3DHP, ``--compare``; a dataset
made of the model's own outputs scores 0 mm, a known offset exactly its size; the evaluator's predictions are
what ``POST /v1/pose3d`` answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from service.api.models import resolve_model
from service.assembly import in_process_engine
from service.cli import main
from service.config import GatewaySettings, build_settings
from service.evaluation.api import Candidate
from service.evaluation.runner import Prediction, SequenceRunner
from service.evaluation.sequences import KEEP_JOINTS, EvalSequence, load_h36m
from service.evaluation.synthetic import render_frames, save_3d, write_h36m
from service.metrics import Metrics
from tests.service.eval_support import tiny_config
from tests.service.rest_support import live_server

pytestmark = pytest.mark.slow


def run_eval(capsys: pytest.CaptureFixture[str], folder: Path, *args: str | Path) -> tuple[str, list[dict[str, Any]]]:
    result = folder / "result.json"
    code = main(["eval", *map(str, args), "--json", str(result), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    return printed, json.loads(result.read_text())


def _settings(config: Path) -> GatewaySettings:
    return build_settings(GatewaySettings, config, workers=[], host="127.0.0.1", grpc_port=0)


async def _predictions(config: Path, sequences: list[EvalSequence], model: str) -> list[Prediction]:
    """The evaluator's predictions (its runner over the composition root's engine) for every sequence."""
    engine = await in_process_engine(_settings(config), Metrics())
    try:
        runner = SequenceRunner(engine, await resolve_model(engine, model))
        predictions, _ = await runner.run(sequences, progress=False)
        return predictions
    finally:
        await engine.aclose()


def test_h36m_layout_end_to_end_with_a_temporal_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_h36m(tmp_path)
    plot = tmp_path / "plot.png"
    printed, (result,) = run_eval(
        capsys, tmp_path, "h36m", "--data-3d", data.data_3d, "--data-2d", data.data_2d, "--cameras", data.cameras,
        "--config", tiny_config(tmp_path), "--plot", plot,
    )  # fmt: skip
    assert result["model"]["name"] == "pstmo"
    assert result["model"]["weights"] == "random"
    assert result["frames"] == 2 * 3 * 4 * 12  # S9 + S11, 3 recordings, 4 cameras, 12 frames
    assert result["frames_per_group"] == {"Eating": 96, "Walking": 192}  # "Walking 1" counts as Walking
    assert set(result["metrics"]) == {"mpjpe", "p_mpjpe", "n_mpjpe", "mpjve"}
    walking, eating = (result["metrics"]["mpjpe"]["groups"][g] for g in ("Walking", "Eating"))
    assert result["metrics"]["mpjpe"]["average"] == pytest.approx((walking + eating) / 2, abs=2e-3)
    header = next(line for line in printed.splitlines() if "Avg" in line)
    assert header.split() == ["Eat", "Walk", "Avg"]  # the papers' column order
    assert "RANDOM" in printed
    assert "frames/s" in printed
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_the_evaluator_predicts_what_post_v1_pose3d_answers(tmp_path: Path) -> None:
    data = write_h36m(tmp_path, subjects=("S9",), actions=("Walking",), frames=10)
    config = tiny_config(tmp_path)
    sequences = load_h36m(data.data_3d, data.data_2d, data.cameras, ["S9"])
    predictions = await _predictions(config, sequences, "pstmo")
    with live_server(_settings(config)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            for seq, pred in zip(sequences, predictions, strict=True):
                assert seq.keypoints_2d is not None
                body = {"keypoints_2d": seq.keypoints_2d.tolist(), "image_size": list(seq.image_size),
                        "joint_set": "h36m", "model": "pstmo"}  # fmt: skip
                response = await client.post("/v1/pose3d", json=body)
                assert response.status_code == 200, response.text
                served = np.array([f["people"][0]["keypoints_3d"] for f in response.json()["frames"]])
                np.testing.assert_allclose(served, pred.keypoints_3d, atol=1e-5)


def test_own_outputs_score_zero_and_a_known_offset_exactly_its_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cameras at the world origin: the ground truth written from the model's own predictions scores 0 mm on
    every metric; the same shifted by d on the 16 non-root joints scores MPJPE = 16/17 |d| and MPJVE 0."""
    data = write_h36m(tmp_path, frames=10, identity=True)
    config = tiny_config(tmp_path)

    sequences = load_h36m(data.data_3d, data.data_2d, data.cameras)
    predictions = asyncio.run(_predictions(config, sequences, "pstmo"))
    offset = np.zeros((17, 3), np.float32)
    offset[1:] = [0.012, 0.0, -0.005]  # 13 mm
    for name, shift, expected in (("own", 0.0, 0.0), ("offset", offset, 13.0 * 16 / 17)):
        positions: dict[str, dict[str, np.ndarray]] = {}
        for seq, pred in zip(sequences, predictions, strict=True):
            world = np.zeros((seq.length, 32, 3), np.float32)
            world[:, list(KEEP_JOINTS)] = pred.keypoints_3d - pred.keypoints_3d[:, :1] + shift
            positions.setdefault(seq.meta["subject"], {})[seq.meta["action"]] = world  # cameras agree
        gt = tmp_path / f"{name}_3d.npz"
        save_3d(gt, positions)
        _, (result,) = run_eval(
            capsys, tmp_path, "h36m", "--data-3d", gt, "--data-2d", data.data_2d, "--cameras", data.cameras,
            "--config", config,
        )  # fmt: skip
        averages = {k: v["average"] for k, v in result["metrics"].items()}
        assert averages["mpjpe"] == pytest.approx(expected, abs=2e-3), name
        assert averages["mpjve"] == pytest.approx(0.0, abs=2e-3), name
        if name == "own":
            assert averages["p_mpjpe"] == pytest.approx(0.0, abs=2e-3)
            assert averages["n_mpjpe"] == pytest.approx(0.0, abs=2e-3)


def test_capf_on_images_of_a_human36m_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One synthetic recording converted by ``pose3d eval h36m-labels`` and run from its frames through the whole
    pipeline (detector crops at the labelled boxes, CA-PF): camera-space error, % of distance and 2D PCK."""
    data = write_h36m(tmp_path, subjects=("S9",), actions=("Walking 1",), frames=6)
    (seq, *_) = load_h36m(data.data_3d, data.data_2d, data.cameras, ["S9"])
    assert seq.keypoints_2d is not None
    frames = render_frames(tmp_path / "frames", seq.keypoints_2d, seq.image_size)
    labels = tmp_path / "labels" / "S9_walking_1.npz"
    labels.parent.mkdir()
    code = main(["eval", "h36m-labels", "--data-3d", str(data.data_3d), "--data-2d", str(data.data_2d),
                 "--cameras", str(data.cameras), "--subject", "S9", "--action", "Walking 1", "--camera", "0",
                 "--media", str(frames), "--out", str(labels)])  # fmt: skip
    assert code == 0
    assert "6 labelled frames" in capsys.readouterr().out
    _, (result,) = run_eval(capsys, tmp_path, "clips", labels, "--config", tiny_config(tmp_path))
    assert result["model"]["name"] == "capf"
    assert result["frames"] == 6
    assert result["missed_frames"] == 0
    metrics = result["metrics"]
    assert {"mpjpe", "p_mpjpe", "camera_error", "camera_error_pct", "pck2d"} <= set(metrics)
    assert result["frames_per_group"] == {"Walking": 6}
    assert 0.0 <= metrics["pck2d"]["average"] <= 100.0
    _, (temporal,) = run_eval(capsys, tmp_path, "clips", labels, "--config", tiny_config(tmp_path), "--model", "pstmo")
    assert temporal["model"]["name"] == "pstmo"  # the clip as a clip: HRNet on the whole frame, then P-STMO's windows
    assert temporal["frames"] == 6
    assert temporal["frames_per_group"]["Walking"] + temporal["missed_frames"] == 6
    assert metrics["camera_error"]["average"] > 0.0


def test_mpi_inf_3dhp_layout_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    data = {name: {"data_3d": (rng.normal(0, 300, (12, 17, 3)) + np.array([0, 0, 4000])).astype(np.float32),
                   "data_2d": rng.uniform(200, 1800, (12, 17, 2)).astype(np.float32),
                   "valid": np.array([1] * 10 + [0] * 2)} for name in ("TS1", "TS5")}  # fmt: skip
    path = tmp_path / "data_test_3dhp.npz"
    np.savez(path, data=np.array(data, dtype=object))
    printed, (result,) = run_eval(capsys, tmp_path, "3dhp", "--data", path, "--config", tiny_config(tmp_path))
    assert result["frames_per_group"] == {"TS1": 10, "TS5": 10}
    assert result["average"] == "frames"
    assert {"mpjpe", "pck150", "auc"} <= set(result["metrics"])
    assert "PCK@150mm" in printed


def test_compare_prints_one_table_with_mpjpe_and_frames_per_second(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_h36m(tmp_path, subjects=("S9",), frames=10)
    flip, no_flip = tiny_config(tmp_path, "tiny-flip"), tiny_config(tmp_path, "tiny-noflip", flip_test=False)
    printed, results = run_eval(
        capsys, tmp_path, "h36m", "--data-3d", data.data_3d, "--data-2d", data.data_2d, "--cameras", data.cameras,
        "--subjects", "S9", "--compare", flip, no_flip,
    )  # fmt: skip
    assert [r["label"] for r in results] == ["tiny-flip", "tiny-noflip"]
    assert [r["model"]["flip_test"] for r in results] == [True, False]
    table = printed[printed.index("profile/model") :].splitlines()
    assert "MPJPE (P1) mm" in table[0]
    assert "frames/s" in table[0]
    for line, r in zip(table[1:3], results, strict=True):
        cells = line.split()
        assert cells[0] == r["label"]
        assert float(cells[2]) == pytest.approx(r["metrics"]["mpjpe"]["average"], abs=0.06)
        assert float(cells[6]) > 0  # frames/s, after the 4 metrics
    assert results[0]["metrics"]["mpjpe"]["average"] != results[1]["metrics"]["mpjpe"]["average"]


def test_bad_input_is_a_clear_message_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_h36m(tmp_path, subjects=("S9",), frames=4)
    code = main(["eval", "h36m", "--data-3d", str(data.data_3d), "--data-2d", str(data.data_2d),
                 "--cameras", str(data.cameras), "--config", str(tiny_config(tmp_path))])  # fmt: skip
    assert code == 2
    assert "subject S11 is missing" in capsys.readouterr().err
    code = main(["eval", "clips", str(tmp_path / "nothing.npz"), "--config", str(tiny_config(tmp_path))])
    assert code == 2
    assert "nothing.npz" in capsys.readouterr().err
    code = main(["eval", "h36m", "--data-3d", str(data.data_3d), "--data-2d", str(data.data_2d),
                 "--cameras", str(data.cameras), "--subjects", "S9", "--compare", "nonsense"])  # fmt: skip
    assert code == 2
    assert "neither a settings file" in capsys.readouterr().err
    code = main(["eval", "h36m", "--data-3d", str(data.data_3d), "--data-2d", str(data.data_2d),
                 "--cameras", str(data.cameras), "--subjects", "S9", "--config", str(tiny_config(tmp_path)),
                 "--no-allow-random-weights"])  # fmt: skip
    assert code == 2
    assert "RANDOM" in capsys.readouterr().err.upper()


def test_compare_entries_are_profiles_settings_files_or_models(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    base = _settings(config)
    default = Candidate.parse("default", base)
    assert (default.label, default.model, default.model_for(images=False)) == ("default", None, "pstmo-243")
    from_file = Candidate.parse(str(config), base)
    assert (from_file.label, from_file.settings.default_clip_model) == ("tiny", "pstmo")
    model = Candidate.parse("capf", base)
    assert (model.settings, model.model_for(images=False)) == (base, "capf")
    with pytest.raises(ValueError, match="neither a settings file"):
        Candidate.parse("fast", base)
