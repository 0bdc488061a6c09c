"""The process commands of ``pose3d`` (``serve``, ``gateway``, ``worker``): each parses its flags into one
Settings object (:func:`service.config.build_settings`) and calls one ``run(settings)``.

These are the composition roots that may load the engine (and so PyTorch); the command table in
:mod:`service.cli` imports them only when their command runs.
"""
