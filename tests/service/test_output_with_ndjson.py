"""``?format=`` / ``?render=`` asked together with ``Accept: application/x-ndjson``: the query is checked and a
conflict refused (400), as without NDJSON. Before, the NDJSON branch never read the query: ``?format=xml`` was a 200,
and ``?render=mp4`` or ``?format=csv`` answered NDJSON lines to a client that had asked for a video or a CSV file."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.service.rest_support import LiveServer, assert_problem, live_server, tiny_settings
from tests.service.test_rest_outputs import keypoints_body

pytestmark = pytest.mark.slow

NDJSON = {"Accept": "application/x-ndjson"}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    server: LiveServer
    with live_server(tiny_settings()) as server, server.client() as http:
        yield http


@pytest.mark.parametrize("query", ["format=xml", "render=gif", "format=csv", "format=bvh", "render=mp4", "render=png"])
def test_an_output_query_with_ndjson_is_400(client: httpx.Client, query: str) -> None:
    answer = client.post(f"/v1/pose3d?{query}", json=keypoints_body(12), headers=NDJSON)
    assert_problem(answer, 400, "bad-request")


@pytest.mark.parametrize("query", ["", "format=json"])
def test_ndjson_without_another_output_still_streams(client: httpx.Client, query: str) -> None:
    answer = client.post(f"/v1/pose3d?{query}", json=keypoints_body(12), headers=NDJSON)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-ndjson")
