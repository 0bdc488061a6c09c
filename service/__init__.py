"""pose3d serving: gateway (REST, gRPC), worker, engine. Imports ``model``, never the reverse."""
