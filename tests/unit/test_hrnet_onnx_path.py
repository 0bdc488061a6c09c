"""``detector.onnx_path`` naming a file that is not an ONNX graph (a partial export, another file) stops start-up in one
line naming the setting and the fix (Unavailable, exit 2): ONNX Runtime's InvalidProtobuf escaped as a traceback,
exit 1, on every start."""

from __future__ import annotations

import resource
import signal
from collections.abc import Callable, Iterator
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


@pytest.fixture
def file_size_limit() -> Iterator[Callable[[int], None]]:
    """Set the process's largest writable file size (RLIMIT_FSIZE; a write past it fails with EFBIG, as on a full
    disk, instead of the SIGXFSZ that would kill the process); the old limit and handler come back after."""
    old_limit, old_handler = resource.getrlimit(resource.RLIMIT_FSIZE), signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield lambda size: resource.setrlimit(resource.RLIMIT_FSIZE, (size, old_limit[1]))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_an_export_that_fails_while_written_leaves_no_file_at_the_onnx_path(
    tmp_path: Path, file_size_limit: Callable[[int], None]
) -> None:
    """The export was written in place: a start killed (or a disk filled) while writing it left a cut file at
    ``detector.onnx_path``; now it is written beside it and renamed into place whole."""
    torch.manual_seed(0)
    net = PoseHRNet(HRNET_PRESETS["hrnet-micro"]).eval()
    path = tmp_path / "hrnet.onnx"
    file_size_limit(1000)  # the graph is larger: its write fails part way
    with pytest.raises(OSError, match="too large"):
        OnnxHRNet.from_torch(net, path)
    file_size_limit(resource.RLIM_INFINITY)
    assert list(tmp_path.iterdir()) == []  # neither a cut graph nor a temporary file
    assert OnnxHRNet.from_torch(net, path).session is not None
    assert OnnxHRNet.from_torch(net, path).session is not None  # read back whole
