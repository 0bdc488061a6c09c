"""Renders of pose results: the 2D overlay (OpenCV) beside a 3D panel (matplotlib Agg); PNG and H.264 MP4 (PyAV)."""
