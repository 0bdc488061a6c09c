"""The process commands of ``pose3d`` (``serve``, ``gateway``, ``worker``): the composition roots that may load the
engine (and so PyTorch), imported by :mod:`service.cli` only when their command runs.
"""
