"""Jobs in the gateway: submission (:mod:`.submit`), the runner (:mod:`.runner`), results (:mod:`.results`),
and the REST routes (:mod:`.routes`). The store they share is :mod:`service.jobs`."""
