"""One way to open Redis for the frame buffer, the job store and the quotas: ``redis://host:port/db`` (``rediss://``
for TLS) is one server, ``redis+cluster://host:port`` (``rediss+cluster://``) a Redis Cluster reached through any one
of its nodes. The same code runs on both because every script and transaction touches one hash slot only
(docs/deployment.md, "Redis Cluster").
"""

from __future__ import annotations

from typing import Final, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

RedisClient: TypeAlias = aioredis.Redis | RedisCluster

CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return url.split("://", 1)[0] in CLUSTER_SCHEMES


def connect(url: str) -> RedisClient:
    """A client for ``url`` (bytes in, bytes out); nothing is sent until the first command."""
    scheme, sep, rest = url.partition("://")
    if scheme in CLUSTER_SCHEMES:
        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}{sep}{rest}", decode_responses=False)
    return aioredis.Redis.from_url(url, decode_responses=False)
