"""Jobs in the gateway: store, submission and runner (:mod:`.runner`), what a job runs (:mod:`.sources`), results
(:mod:`.results`) and the REST routes (:mod:`.routes`); gRPC serves them in :mod:`service.gateway.grpc_public`, the
store is :mod:`service.jobs`."""
