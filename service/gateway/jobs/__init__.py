"""Jobs in the gateway: store, submission and runner (:mod:`.runner`), what a job runs (:mod:`.sources`),
results (:mod:`.results`), the REST routes (:mod:`.routes`) and gRPC (:mod:`.grpc`); the store is :mod:`service.jobs`."""
