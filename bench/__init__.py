"""Benchmarks: ``python -m bench`` (the network suite), ``python -m bench.engine``, ``python -m bench.clip``."""
