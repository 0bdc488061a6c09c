"""``detector.onnx_path`` naming a file that is not an ONNX graph (a partial export, another file) stops start-up in one
line naming the setting and the fix (Unavailable, exit 2): ONNX Runtime's InvalidProtobuf escaped as a traceback,
exit 1, on every start."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.hrnet import HRNET_PRESETS, PoseHRNet
from service.engine.hrnet_onnx import OnnxHRNet
from service.errors import Unavailable


def test_an_onnx_path_that_is_no_graph_is_one_clear_error(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = PoseHRNet(HRNET_PRESETS["hrnet-micro"]).eval()
    path = tmp_path / "hrnet.onnx"
    OnnxHRNet.from_torch(net, path)  # exported there
    path.write_bytes(path.read_bytes()[:1000])  # an export cut short
    with pytest.raises(Unavailable, match=r"detector.onnx_path .*hrnet.onnx does not open .*remove it"):
        OnnxHRNet.from_torch(net, path)
    path.unlink()
    assert OnnxHRNet.from_torch(net, path).session is not None  # the fix the message names
