"""Per-model lift batch: an explicit ``lift_batch`` wins; on CPU the measured default caps the engine's batch."""

from __future__ import annotations

import torch

from model.pstmo import PSTMO, PSTMOConfig
from service.config import LifterKind, ModelSpec
from service.engine.lifters import CPU_LIFT_BATCH, PSTMOLifter


def _lifter(arch: str, device: str, lift_batch: int | None = None) -> PSTMOLifter:
    spec = ModelSpec(kind=LifterKind.PSTMO, arch=arch, frames=9, lift_batch=lift_batch)
    model = PSTMO(PSTMOConfig(frames=9, stride_num=(3, 3), layers=1, channel=16, d_hid=16))
    lifter = PSTMOLifter("m", spec, "random", torch.device("cpu"), model)
    lifter.device = torch.device(device)  # the choice depends on the device type only
    return lifter


def test_measured_cpu_default_caps_the_engine_batch() -> None:
    assert CPU_LIFT_BATCH["pstmo-243"] == 8
    assert _lifter("pstmo-243", "cpu").lift_batch_size(32) == 8
    assert _lifter("pstmo-243", "cpu").lift_batch_size(4) == 4
    assert _lifter("pstmo-27", "cpu").lift_batch_size(32) == 32


def test_other_devices_and_explicit_settings() -> None:
    assert _lifter("pstmo-243", "cuda").lift_batch_size(32) == 32
    assert _lifter("pstmo-243", "cpu", lift_batch=16).lift_batch_size(32) == 16
    assert _lifter("pstmo-27", "cuda", lift_batch=2).lift_batch_size(32) == 2
