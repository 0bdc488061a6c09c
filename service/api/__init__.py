"""The application layer: transport-neutral use cases (plain inputs: bytes, media kind, options, the caller's
identity) and the one schema of every public message. REST, gRPC and WebSocket handlers parse their transport into
these inputs, call here, and render the outcome through :mod:`service.api.schemas`."""
