"""The gateway: FastAPI REST app and the public gRPC servicer. Validates; never computes."""
