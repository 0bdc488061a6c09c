"""``pose3d eval``: accuracy of the served pipeline on Human3.6M, MPI-INF-3DHP and a user's own labelled clips.

Every prediction comes from an :class:`~service.engine.types.EngineClient` through the same ``submit`` call
``POST /v1/pose3d`` makes; the evaluator never runs a model itself. See ``docs/evaluation.md``.
"""
