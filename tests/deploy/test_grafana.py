"""deploy/grafana: the dashboard is valid JSON, every panel queries only metrics a real gateway exports (its own
``/metrics`` scraped after a real request), and compose provisions it next to Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from service.assembly import build_engine_client
from service.gateway.app import create_app
from tests.deploy.support import DEPLOY, load_compose
from tests.service.rest_support import tiny_settings

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "pose3d.json"
PROVISIONING = DEPLOY / "grafana" / "provisioning"
_SUFFIXES = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"]}


@pytest.fixture(scope="module")
def scrape() -> Iterator[str]:
    """The text of a real /metrics after one real estimate (tiny random-weight models, in-process engine)."""
    with TestClient(create_app(tiny_settings(), engine_factory=build_engine_client)) as http:
        body = {"keypoints_2d": [[[100.0 + j, 200.0 + 2 * j] for j in range(17)]] * 3, "image_size": [640, 480]}
        assert http.post("/v1/pose3d", json=body).status_code == 200
        yield http.get("/metrics").text


def scraped_series(text: str) -> set[str]:
    """Series names a scrape declares (``# TYPE`` families with their suffixes) or carries samples of."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            names.update(family + s for s in _SUFFIXES.get(kind, []))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def panels() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "pose3d-overview"
    found: list[dict[str, Any]] = dashboard["panels"]
    return found


def test_every_panel_queries_metrics_of_a_real_scrape(scrape: str) -> None:
    exported = scraped_series(scrape)
    assert "pose3d_stage_duration_seconds_bucket" in exported
    assert re.search(r'^pose3d_stage_duration_seconds_count\{stage="lift"\} [1-9]', scrape, re.MULTILINE), scrape
    seen: set[str] = set()
    for panel in panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\bpose3d_[a-z0-9_]+", target["expr"]))
            assert used, (panel["title"], target["expr"])
            assert used <= exported, f"{panel['title']}: {sorted(used - exported)} not in /metrics"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            seen |= used


def test_dashboard_covers_what_operators_watch() -> None:
    text = " ".join(t["expr"] for p in panels() for t in p["targets"])
    for metric in ("pose3d_request_duration_seconds_bucket", "pose3d_stage_duration_seconds_bucket",
                   "pose3d_batch_size_bucket", "pose3d_queue_depth", "pose3d_rejected_total", "pose3d_worker_up",
                   "pose3d_gpu_memory_allocated_bytes", "pose3d_frames_total", "pose3d_requests_total"):  # fmt: skip
        assert metric in text, metric
    assert "histogram_quantile(0.99" in text
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))


def test_compose_provisions_grafana_next_to_prometheus() -> None:
    services = load_compose()["services"]
    grafana = services["grafana"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    assert "prometheus" in grafana["depends_on"]
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert sources[0]["url"] == "http://prometheus:9090"
    uid = sources[0]["uid"]
    assert all(p["datasource"]["uid"] == uid for p in panels())
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "pose3d.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
