"""Jobs: long work (a clip or keypoint sequence of any length) whose state and results outlive any process.

:mod:`service.jobs.store` is the interface and the job record; :mod:`~service.jobs.memory` (embedded) and
:mod:`~service.jobs.redis` (deployment, the frame buffer's Redis) implement it. The runner and the routes
that use it live in :mod:`service.gateway.jobs`.
"""
