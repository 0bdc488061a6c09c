"""Exports of pose results (torch-free: the client uses them too): JSON, JSON lines, CSV and BVH."""
