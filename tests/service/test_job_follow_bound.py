"""A job's NDJSON results follow the job for as long as it runs, waiting, not working: they have their own bound
(``limits.max_job_follows``) beside the in-flight bound. Before, each held an in-flight slot for the job's whole run,
so 256 idle follows (one key could open them) answered every other REST ``/v1/`` request and gRPC ``Estimate`` 429."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.config import GatewaySettings, LimitSettings
from service.gateway.app import create_app
from service.metrics import Metrics
from tests.service.grpc_toy_engine import ToyEngine

PERSON = [[100.0 + j, 200.0 + j] for j in range(17)]
FOLLOW = {"Accept": "application/x-ndjson"}


@pytest.mark.timeout(120)
def test_open_job_follows_leave_the_in_flight_bound_to_requests() -> None:
    limits = LimitSettings(max_inflight_requests=1, max_job_follows=1, retry_after_s=2.0)
    settings = GatewaySettings(default_image_model="toy", default_clip_model="toy", grpc_port=0, limits=limits)
    engine = ToyEngine(delay_s=3600.0)  # the job runs until the test ends: only its follow is open
    with TestClient(create_app(settings, engine=engine, metrics=Metrics())) as client:
        job = client.post("/v1/jobs/keypoints", json={"keypoints_2d": [PERSON] * 4, "image_size": [640, 480]})
        assert job.status_code == 202, job.text
        results = f"/v1/jobs/{job.json()['job_id']}/results"
        with client.stream("GET", results, headers=FOLLOW) as follow:
            assert follow.status_code == 200
            assert client.get("/v1/models").status_code == 200  # the in-flight slot is free
            assert client.get(results).status_code == 409  # the document is a request: counted, answered
            again = client.get(results, headers=FOLLOW)  # past max_job_follows
            assert again.status_code == 429, again.text
            assert again.headers["retry-after"] == "2"
