"""The Python client of the pose3d service (REST and gRPC, sync and async, typed results); no torch.

``from service.client import Pose3DClient, AsyncPose3DClient, EstimateArgs, PoseResult`` — see
:mod:`service.client.api`. ``pose3d estimate`` and ``pose3d stream`` are built on this package.
"""

from service.client.api import AsyncPose3DClient, FramePoses, ModelRef, Person, Pose3DClient, PoseResult
from service.client.connection import Connection
from service.client.estimate import EstimateArgs

__all__ = [
    "AsyncPose3DClient",
    "Connection",
    "EstimateArgs",
    "FramePoses",
    "ModelRef",
    "Person",
    "Pose3DClient",
    "PoseResult",
]
