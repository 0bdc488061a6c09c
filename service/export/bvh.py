"""BVH export of one track: an H36M-17 hierarchy whose offsets are the track's median bone lengths, and per-frame
rotations solved so that forward kinematics reproduces the joints (docs/renders-and-demo.md, "Exports").

BVH space is the camera frame turned 180° about x, ``(x, -y, -z)`` metres (y up); the rest pose is a T-pose facing
+z. Joints with several children carry one zero-length branch joint per child, so every bone points exactly where
the input says; the only error left is the bone-length residual against the median, ``max_error_m``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from service.export.skeleton import H36M_BONES, H36M_NAMES
from service.export.tracks import TrackSequence

Array = npt.NDArray[np.float64]

CAMERA_TO_BVH = np.diag([1.0, -1.0, -1.0])
"""Camera frame (y down, z forward) → BVH space (y up, z towards the camera)."""

_RIGHT, _LEFT, _UP, _DOWN = (-1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, -1.0, 0.0)
REST_DIRECTIONS: dict[int, tuple[float, float, float]] = {
    1: _RIGHT, 2: _DOWN, 3: _DOWN, 4: _LEFT, 5: _DOWN, 6: _DOWN, 7: _UP, 8: _UP, 9: _UP, 10: _UP,
    11: _LEFT, 12: _LEFT, 13: _LEFT, 14: _RIGHT, 15: _RIGHT, 16: _RIGHT,
}  # fmt: skip
"""Rest-pose direction (BVH space) of the bone ending at each joint: the subject faces +z, its right is -x."""

END_SITE_FRACTION = 0.2
_EPS = 1e-12


def rotation_between(a: Array, b: Array) -> Array:
    """The smallest rotation ``(3, 3)`` taking direction ``a (3,)`` to direction ``b (3,)``; identity when
    either is (near) zero. Antiparallel vectors turn by 180° about an axis perpendicular to ``a``."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < _EPS or nb < _EPS:
        return np.eye(3)
    u, v = a / na, b / nb
    axis = np.cross(u, v)
    s, c = float(np.linalg.norm(axis)), float(np.dot(u, v))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
        perp /= np.linalg.norm(perp)
        return 2.0 * np.outer(perp, perp) - np.eye(3)
    k = axis / s
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    out: Array = np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)
    return out


def kabsch(rest: Array, target: Array) -> Array:
    """The rotation ``R (3, 3)`` minimising ``sum |R @ rest_i - target_i|^2`` for ``rest, target (N, 3)``."""
    h = rest.T @ target
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    out: Array = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return out


def _about(axis: int, degrees: float) -> Array:
    """The rotation ``(3, 3)`` by ``degrees`` about axis x (0), y (1) or z (2), right-handed."""
    i, j = (axis + 1) % 3, (axis + 2) % 3
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    out = np.eye(3)
    out[i, i], out[i, j], out[j, i], out[j, j] = c, -s, s, c
    return out


def euler_zxy_degrees(r: Array) -> tuple[float, float, float]:
    """``(z, x, y)`` degrees with ``r = Rz(z) @ Rx(x) @ Ry(y)`` (BVH channels ``Zrotation Xrotation Yrotation``)."""
    x = np.arctan2(r[2, 1], np.hypot(r[2, 0], r[2, 2]))
    if np.hypot(r[2, 0], r[2, 2]) < 1e-9:  # gimbal lock: fold the y turn into z
        y = 0.0
        z = np.arctan2(r[1, 0], r[0, 0])
    else:
        y = np.arctan2(-r[2, 0], r[2, 2])
        z = np.arctan2(-r[0, 1], r[1, 1])
    return float(np.degrees(z)), float(np.degrees(x)), float(np.degrees(y))


def matrix_zxy_degrees(z: float, x: float, y: float) -> Array:
    """Inverse of :func:`euler_zxy_degrees`."""
    return _about(2, z) @ _about(0, x) @ _about(1, y)


@dataclass
class Node:
    """A BVH joint: an H36M joint, or a zero-length branch (``joint is None``) under a joint with several children."""

    name: str
    parent: int
    joint: int | None
    offset: Array
    children: list[int] = field(default_factory=list)

    def source_joint(self, nodes: list[Node]) -> int:
        """The H36M joint this node sits on (a branch sits on its parent's)."""
        return self.joint if self.joint is not None else nodes[self.parent].source_joint(nodes)


@dataclass(frozen=True)
class BvhExport:
    """The BVH text and how well it reproduces the input: ``max_error_m`` over all frames and joints (metres)."""

    text: str
    track_id: int
    frames: int
    max_error_m: float


def median_bone_lengths(joints: Array) -> Array:
    """``(17,)`` metres: median length over frames of the bone ending at each joint (0 for the pelvis)."""
    lengths = np.zeros(17)
    for parent, child in H36M_BONES:
        lengths[child] = float(np.median(np.linalg.norm(joints[:, child] - joints[:, parent], axis=-1)))
    return lengths


def build_hierarchy(lengths: Array) -> list[Node]:
    """Nodes in depth-first order (parents before children); offsets in BVH space, metres."""
    nodes = [Node("pelvis", -1, 0, np.zeros(3))]

    def add(joint: int, node: int) -> None:
        kids = [c for p, c in H36M_BONES if p == joint]
        for child in kids:
            parent = node
            if len(kids) > 1:
                nodes.append(Node(f"{H36M_NAMES[joint]}_to_{H36M_NAMES[child]}", node, None, np.zeros(3)))
                nodes[node].children.append(len(nodes) - 1)
                parent = len(nodes) - 1
            nodes.append(Node(H36M_NAMES[child], parent, child, lengths[child] * np.asarray(REST_DIRECTIONS[child])))
            nodes[parent].children.append(len(nodes) - 1)
            add(child, len(nodes) - 1)

    add(0, 0)
    return nodes


def _bone(nodes: list[Node], node: Node) -> tuple[Array, int]:
    """The rest offset and H36M joint at the far end of ``node``'s only bone (through a branch node)."""
    end = nodes[node.children[0]]
    assert end.joint is not None
    return end.offset, end.joint


def solve_frame(nodes: list[Node], points: Array) -> list[Array]:
    """Local rotations ``(3, 3)`` per node so that FK puts every bone along ``points (17, 3)`` (BVH space)."""
    global_rot: list[Array] = []
    local: list[Array] = []
    for node in nodes:
        parent_rot = global_rot[node.parent] if node.parent >= 0 else np.eye(3)
        start = points[node.source_joint(nodes)]
        if not node.children:
            rot = parent_rot
        elif len(node.children) == 1:
            offset, end = _bone(nodes, node)
            rot = rotation_between(parent_rot @ offset, points[end] - start) @ parent_rot
        else:
            rest = np.stack([_bone(nodes, nodes[c])[0] for c in node.children])
            target = np.stack([points[_bone(nodes, nodes[c])[1]] - start for c in node.children])
            norms = np.linalg.norm(target, axis=1, keepdims=True)
            unit = np.divide(target, norms, out=np.zeros_like(target), where=norms > 1e-12)
            rot = kabsch(rest, unit * np.linalg.norm(rest, axis=1, keepdims=True))
        global_rot.append(rot)
        local.append(parent_rot.T @ rot)
    return local


def forward_kinematics(nodes: list[Node], root: Array, local: list[Array]) -> Array:
    """``(17, 3)`` joint positions (BVH space) from the root position and local rotations per node."""
    out = np.zeros((17, 3))
    glob: list[Array] = []
    pos: list[Array] = []
    for i, node in enumerate(nodes):
        parent_pos, parent_rot = (pos[node.parent], glob[node.parent]) if node.parent >= 0 else (root, np.eye(3))
        pos.append(parent_pos + parent_rot @ node.offset)  # the root's offset is zero
        glob.append(parent_rot @ local[i])
        if node.joint is not None:
            out[node.joint] = pos[-1]
    return out


def _fmt(values: Array | list[float]) -> str:
    return " ".join(f"{float(v):.6f}" for v in values)


def _hierarchy_text(nodes: list[Node]) -> list[str]:
    lines: list[str] = ["HIERARCHY"]

    def emit(index: int, depth: int) -> None:
        node, pad = nodes[index], "\t" * depth
        lines.append(f"{pad}{'ROOT' if node.parent < 0 else 'JOINT'} {node.name}")
        lines.append(pad + "{")
        lines.append(f"{pad}\tOFFSET {_fmt(node.offset)}")
        channels = "6 Xposition Yposition Zposition" if node.parent < 0 else "3"
        lines.append(f"{pad}\tCHANNELS {channels} Zrotation Xrotation Yrotation")
        for child in node.children:
            emit(child, depth + 1)
        if not node.children:
            lines.extend([f"{pad}\tEnd Site", pad + "\t{", f"{pad}\t\tOFFSET {_fmt(node.offset * END_SITE_FRACTION)}"])
            lines.append(pad + "\t}")
        lines.append(pad + "}")

    emit(0, 0)
    return lines


def export_bvh(track: TrackSequence, check: Callable[[], None] | None = None) -> BvhExport:
    """The BVH of one track (see the module docstring for axes, units and exactness); ``check()`` before each frame
    (it raises to stop)."""
    points = track.joints_3d @ CAMERA_TO_BVH.T
    nodes = build_hierarchy(median_bone_lengths(points))
    lines = _hierarchy_text(nodes)
    lines += ["MOTION", f"Frames: {len(points)}", f"Frame Time: {track.frame_time_s:.6f}"]
    max_error = 0.0
    for frame in points:
        if check is not None:
            check()
        local = solve_frame(nodes, frame)
        angles = [euler_zxy_degrees(r) for r in local]
        rounded = [[round(a, 6) for a in zxy] for zxy in angles]
        root = np.round(frame[0], 6)
        lines.append(_fmt([*root, *(a for zxy in rounded for a in zxy)]))
        rebuilt = forward_kinematics(nodes, root, [matrix_zxy_degrees(*zxy) for zxy in rounded])
        max_error = max(max_error, float(np.linalg.norm(rebuilt - frame, axis=-1).max()))
    return BvhExport(text="\n".join(lines) + "\n", track_id=track.track_id, frames=len(points), max_error_m=max_error)
