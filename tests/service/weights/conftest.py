"""The weights tests' local HTTP file server and the download client, one of each per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.weights.fetch import new_client
from tests.service.weights.local_http import FileServer, file_server


@pytest.fixture
def server() -> Iterator[FileServer]:
    with file_server() as s:
        yield s


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with new_client() as c:
        yield c
