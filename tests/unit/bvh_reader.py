"""A small, independent BVH reader and forward kinematics for the export tests (not the exporter's own code)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass
class BvhJoint:
    name: str
    parent: int
    offset: Array
    channels: list[str]
    end_site: Array | None = None
    children: list[int] = field(default_factory=list)


@dataclass
class Bvh:
    joints: list[BvhJoint]
    frame_time: float
    motion: Array  # (frames, channels)


def parse_bvh(text: str) -> Bvh:
    tokens = text.split()
    pos = 0
    joints: list[BvhJoint] = []

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def joint(parent: int) -> None:
        name = take()
        assert take() == "{"
        assert take() == "OFFSET"
        offset = np.array([float(take()) for _ in range(3)])
        assert take() == "CHANNELS"
        channels = [take() for _ in range(int(take()))]
        joints.append(BvhJoint(name, parent, offset, channels))
        me = len(joints) - 1
        if parent >= 0:
            joints[parent].children.append(me)
        while (word := take()) != "}":
            if word == "JOINT":
                joint(me)
            elif word == "End":
                assert take() == "Site"
                assert take() == "{"
                assert take() == "OFFSET"
                joints[me].end_site = np.array([float(take()) for _ in range(3)])
                assert take() == "}"
            else:
                raise ValueError(f"unexpected {word!r}")

    assert take() == "HIERARCHY"
    assert take() == "ROOT"
    joint(-1)
    assert take() == "MOTION"
    assert take() == "Frames:"
    frames = int(take())
    assert (take(), take()) == ("Frame", "Time:")
    frame_time = float(take())
    values = np.array([float(t) for t in tokens[pos:]])
    width = sum(len(j.channels) for j in joints)
    assert values.size == frames * width
    return Bvh(joints, frame_time, values.reshape(frames, width))


def _axis_rotation(axis: str, degrees: float) -> Array:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    if axis == "X":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "Y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def forward_kinematics(bvh: Bvh, frame: int) -> dict[str, Array]:
    """World position of every joint in ``frame`` (channels applied in their listed order)."""
    values = list(bvh.motion[frame])
    world_pos: list[Array] = []
    world_rot: list[Array] = []
    out: dict[str, Array] = {}
    for j in bvh.joints:
        translation = np.zeros(3)
        rotation = np.eye(3)
        for channel in j.channels:
            value = values.pop(0)
            if channel.endswith("position"):
                translation["XYZ".index(channel[0])] = value
            else:
                rotation = rotation @ _axis_rotation(channel[0], value)
        if j.parent < 0:
            p, r = j.offset + translation, rotation
        else:
            p = world_pos[j.parent] + world_rot[j.parent] @ (j.offset + translation)
            r = world_rot[j.parent] @ rotation
        world_pos.append(p)
        world_rot.append(r)
        out[j.name] = p
    return out
