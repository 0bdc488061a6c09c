"""The Python client of the pose3d service (REST and gRPC), used by ``pose3d estimate`` and ``pose3d stream``."""
