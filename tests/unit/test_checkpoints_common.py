"""Shared checkpoint mechanics: every unreadable or hostile file is a CheckpointError that names the problem."""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from model.checkpoints.common import CheckpointError, load_state_dict_strict, read_checkpoint


class _RunsCode:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _state() -> dict[str, torch.Tensor]:
    return {"weight": torch.randn(64, 64), "bias": torch.randn(64)}


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"hello, this is a README and not a checkpoint\n", "not a torch checkpoint"),
        (b"\x80\x02}q\x00.", "truncated or corrupt: RuntimeError: Invalid magic number"),  # a bare pickle
    ],
)
def test_bytes_that_are_not_a_torch_file_are_a_checkpoint_error(tmp_path: Path, content: bytes, named: str) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=named) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)


def test_corrupted_archive_bytes_are_a_checkpoint_error(tmp_path: Path) -> None:
    torch.save(_state(), tmp_path / "good.pth")
    data = bytearray((tmp_path / "good.pth").read_bytes())
    for i in range(200, len(data), 997):
        data[i] ^= 0xFF
    (tmp_path / "flipped.pth").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flipped\.pth"):
        read_checkpoint(tmp_path / "flipped.pth")


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_files_say_so_in_both_torch_layouts(tmp_path: Path, legacy: bool) -> None:
    torch.save(_state(), tmp_path / "good.pth", _use_new_zipfile_serialization=not legacy)
    data = (tmp_path / "good.pth").read_bytes()
    for cut in (10, 100, len(data) - 64):
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"truncated or corrupt: \w+"):
            read_checkpoint(tmp_path / "cut.pth")


def test_hostile_pickles_are_refused_without_running_code_or_advising_unsafe_loading(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    torch.save({"state_dict": _state(), "meta": _RunsCode(marker)}, tmp_path / "torch_evil.pth")
    (tmp_path / "plain_evil.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(CheckpointError, match=r"outside the allow-list \(GLOBAL posix\.system\)") as e:
        read_checkpoint(tmp_path / "torch_evil.pth")
    assert "weights_only` set to `False`" not in str(e.value)
    assert "\x1b[" not in str(e.value)
    with pytest.raises(CheckpointError, match=r"plain_evil\.pkl is not a torch checkpoint readable safely"):
        read_checkpoint(tmp_path / "plain_evil.pkl")
    assert not marker.exists()


def test_a_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_checkpoint(tmp_path)


def test_strict_load_names_non_tensor_entries() -> None:
    layer = nn.Linear(2, 3)
    with pytest.raises(CheckpointError, match=r"entries that are not tensors: weight"):
        load_state_dict_strict(layer, {"weight": [[1.0, 2.0]] * 3, "bias": torch.zeros(3)}, "test")  # type: ignore[dict-item]


def test_strict_load_refuses_two_keys_mapping_to_one_parameter() -> None:
    layer = nn.Linear(2, 3)
    state = {"weight": torch.zeros(3, 2), "bias": torch.zeros(3), "module_weight": torch.ones(3, 2)}
    with pytest.raises(CheckpointError, match=r"same parameter: weight and module_weight -> weight"):
        load_state_dict_strict(layer, state, "test", key_map=lambda k: k.removeprefix("module_"))
    assert float(layer.weight.detach().abs().sum()) > 0  # nothing was loaded


def test_damaged_tensor_bytes_are_refused_not_served_as_nan_weights(tmp_path: Path) -> None:
    """torch does not checksum tensor data: overwrite bytes of a stored tensor with a NaN pattern."""
    layer = nn.Linear(16, 16)
    torch.save({"weight": torch.zeros(16, 16), "bias": torch.zeros(16)}, tmp_path / "good.pth")
    data = bytearray((tmp_path / "good.pth").read_bytes())
    with zipfile.ZipFile(tmp_path / "good.pth") as archive:
        entry = next(i for i in archive.infolist() if i.filename.endswith("/data/0"))
    name_len, extra_len = struct.unpack_from("<HH", data, entry.header_offset + 26)  # the local header's own
    start = entry.header_offset + 30 + name_len + extra_len + 8
    data[start : start + 4] = b"\xff\xff\xff\x7f"  # one float32 NaN inside 'weight'
    (tmp_path / "damaged.pth").write_bytes(bytes(data))
    state = read_checkpoint(tmp_path / "damaged.pth")  # loads: nothing in the file format notices
    with pytest.raises(CheckpointError, match=r"corrupt: NaN or infinite values in 1 tensors: weight"):
        load_state_dict_strict(layer, state, "damaged.pth")
    assert not torch.isnan(layer.weight).any()
