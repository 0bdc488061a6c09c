"""pose3d models: PyTorch only, nothing of serving.

Modules: ``skeleton`` (joint sets and 2D normalisation), ``pstmo`` (P-STMO lifter),
``hrnet`` (frozen HRNet detector network), ``capf`` (Context-Aware PoseFormer),
``checkpoints`` (loading released checkpoint files), ``conformance`` (the
``python -m model.conformance`` command).
"""
