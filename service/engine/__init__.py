"""The engine: dynamic batcher, pipeline stages, frame buffer, EngineClient.

Knows nothing of HTTP or gRPC; the batcher knows nothing of Redis either.
"""
