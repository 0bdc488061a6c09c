"""deploy/prometheus.yml and its rules: targets are the compose services' metrics ports, every metric the rules
read is one the service exports, and promtool (Debian package `prometheus`; `make test` installs it) accepts both."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from service.metrics import Metrics
from tests.deploy.support import DEPLOY, command_of, flag_value, load_compose

CONFIG = DEPLOY / "prometheus.yml"
RULES = DEPLOY / "prometheus-rules.yml"


def exported_series() -> set[str]:
    """Every series name the service's registry can expose (counters' _total, histograms' _bucket/_sum/_count)."""
    suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"]}
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, []))
    return names


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed (make test installs the Debian package `prometheus` with apt-get)")
    return exe


def test_scrape_targets_are_the_compose_services_metrics_ports() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {name: sorted(t for sc in job["static_configs"] for t in sc["targets"]) for name, job in jobs.items()}
    services = load_compose()["services"]
    expected: dict[str, list[str]] = {"pose3d-gateway": [], "pose3d-worker": []}
    for name, service in services.items():
        argv = command_of(service) if "command" in service else []
        if argv[:1] == ["worker"]:
            expected["pose3d-worker"].append(f"{name}:{flag_value(argv, '--metrics-port') or '9100'}")
        elif argv[:1] == ["gateway"]:
            expected["pose3d-gateway"].append(f"{name}:{flag_value(argv, '--port') or '8000'}")
    assert targets == {job: sorted(t) for job, t in expected.items()}
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs.values())
    mounts = services["prometheus"]["volumes"]
    for file in (CONFIG, RULES):
        assert f"./{file.name}:/etc/prometheus/{file.name}:ro" in mounts
    assert config["rule_files"] == [RULES.name]


def test_rules_read_only_metrics_the_service_exports() -> None:
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert {"Pose3dWorkerDown", "Pose3dQueueBacklog"} <= {rule["alert"] for rule in rules}
    exported = exported_series()
    for rule in rules:
        used = set(re.findall(r"\bpose3d_[a-z0-9_]+", rule["expr"]))
        assert used <= exported, f"{rule['alert']}: {sorted(used - exported)} not exported by service/metrics.py"


def test_promtool_accepts_config_and_rules() -> None:
    for args in (["check", "config", str(CONFIG)], ["check", "rules", str(RULES)]):
        done = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
