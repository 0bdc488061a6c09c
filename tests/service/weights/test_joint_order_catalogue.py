"""A lifter entry states the joint order and unit its checkpoint was trained in, and a model naming it gets them."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.joints import JointOrder
from service.config import WorkerSettings, build_settings, load_settings_file
from service.profiles import profile_path
from service.weights.catalogue import Kind, load_catalogue
from service.weights.resolve import resolved, weight_set_overrides
from service.weights.store import WeightsError, install


def _install_fake(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    src = root.parent / f"{name}.src"
    src.write_bytes(b"weights")
    return install(root, load_catalogue().entry(name), src, origin="test").path


def test_only_the_3dhp_checkpoint_is_in_another_order_and_unit() -> None:
    lifters = [e for e in load_catalogue().entries if e.kind in (Kind.LIFTER, Kind.LIFTER_BACKBONE)]
    other = {e.name: (e.joint_order, e.output_unit) for e in lifters if (e.joint_order, e.output_unit) != ("h36m", "m")}
    assert other == {"pstmo-81-3dhp": (JointOrder.MPI_INF_3DHP, "mm")}


def test_a_model_naming_the_3dhp_entry_gets_its_order_and_unit(tmp_path: Path) -> None:
    root = tmp_path / "weights"
    path = _install_fake(root, "pstmo-81-3dhp")
    spec = {"kind": "pstmo", "arch": "pstmo-81", "frames": 81, "checkpoint": "pstmo-81-3dhp"}
    got = resolved(build_settings(WorkerSettings, weights_dir=root, models={"p": spec})).models["p"]
    assert (got.checkpoint, got.joint_order, got.output_unit) == (path, JointOrder.MPI_INF_3DHP, "mm")
    # saying the same explicitly is fine; contradicting the checkpoint is refused, naming both
    same = {**spec, "joint_order": "mpi-inf-3dhp", "output_unit": "mm"}
    assert resolved(build_settings(WorkerSettings, weights_dir=root, models={"p": same})).models["p"] == got
    with pytest.raises(WeightsError, match=r"models\.p\.joint_order = 'h36m', but checkpoint pstmo-81-3dhp"):
        resolved(build_settings(WorkerSettings, weights_dir=root, models={"p": {**spec, "joint_order": "h36m"}}))
    # a file path carries no catalogue facts: the settings' own values stand
    own = resolved(build_settings(WorkerSettings, weights_dir=root, models={"p": {**spec, "checkpoint": str(path)}}))
    assert (own.models["p"].joint_order, own.models["p"].output_unit) == (JointOrder.H36M, "m")


def test_the_realtime_profile_and_weight_sets_declare_the_order() -> None:
    model = load_settings_file(profile_path("realtime"))["models"]["pstmo-81"]
    assert (model["checkpoint"], model["joint_order"], model["output_unit"]) == ("pstmo-81-3dhp", "mpi-inf-3dhp", "mm")
    for s in load_catalogue().sets:
        for m in weight_set_overrides(s.name)["models"].values():
            entry = load_catalogue().entry(m["checkpoint"])
            assert (m["joint_order"], m["output_unit"]) == (entry.joint_order, entry.output_unit)
