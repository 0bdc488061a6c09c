"""``pose3d eval``: accuracy of the served pipeline on Human3.6M, MPI-INF-3DHP and a user's own labelled clips.

The evaluator never runs a model itself: every prediction comes from an :class:`~service.engine.types.EngineClient`
(the in-process engine the composition root builds, :func:`service.assembly.in_process_engine`), through the same
``submit`` call (through :func:`service.engine.work.collect`) ``POST /v1/pose3d`` makes. See ``docs/evaluation.md``.
"""
