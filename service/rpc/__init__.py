"""gRPC plumbing shared by the public servicer, the worker server and the remote engine client."""
