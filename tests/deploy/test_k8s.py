"""deploy/k8s: every manifest validated offline against the Kubernetes API schemas (kubernetes-validate, strict:
unknown fields are errors), then the wiring the service relies on — headless worker Service named by the gateways'
one worker address, gRPC/HTTP probes on the ports the commands open, settings that reach real fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.metrics import Metrics
from tests.deploy.support import (
    K8S,
    SETTINGS_OF_COMMAND,
    check_env_reaches_settings,
    flag_value,
    parse_pose3d_args,
)

KUBERNETES_VERSION = "1.30.0"  # the oldest release we deploy to (native gRPC probes are GA since 1.27)
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
NAMESPACE = KUSTOMIZATION["namespace"]


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in KUSTOMIZATION["resources"]:
        docs.extend(doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc is not None)
    return docs


DOCS = manifests()


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for deployment in (d for d in DOCS if d["kind"] == "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: its ConfigMaps (envFrom) overlaid by its own `env` entries."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one("ConfigMap", source["configMapRef"]["name"])["data"])
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    return env


def pose3d_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(d, c) for d, c in containers() if c["image"].split(":")[0] == "pose3d"]


def test_kustomization_lists_every_manifest_in_the_directory() -> None:
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == on_disk
    assert {image["name"] for image in KUSTOMIZATION["images"]} == {"pose3d"}


@pytest.mark.parametrize("doc", DOCS, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in DOCS])
def test_manifest_validates_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
    if doc["kind"] != "Namespace":
        assert doc["metadata"]["namespace"] == NAMESPACE


def test_worker_service_is_headless_and_the_gateway_names_it() -> None:
    worker_deployment = one("Deployment", "pose3d-worker")
    service = one("Service", "pose3d-worker-headless")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"].items() <= worker_deployment["spec"]["template"]["metadata"]["labels"].items()
    (gateway,) = one("Deployment", "pose3d-gateway")["spec"]["template"]["spec"]["containers"]
    workers = json.loads(container_env(gateway)["POSE3D_WORKERS"])
    ports = {p["port"] for p in service["spec"]["ports"]}
    assert workers == ["dns:///pose3d-worker-headless:50061"]  # one DNS name: gRPC round_robin over the pods
    assert 50061 in ports
    assert not [d for d in DOCS if d["kind"] == "Service" and "worker" in d["metadata"]["name"] and d is not service]


@pytest.mark.parametrize("name", ["pose3d-worker", "pose3d-gateway"])
def test_pods_drain_before_they_stop(name: str) -> None:
    """preStop waits while the pod leaves the endpoints/DNS; then SIGTERM's own grace; both inside the pod's."""
    pod = one("Deployment", name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]  # the image has python, not necessarily `sleep`
    (pre_stop_s,) = [float(w.strip("()")) for w in command[2].split("sleep")[1:]]
    grace_s = float(container_env(container).get("POSE3D_SHUTDOWN_GRACE_S", "5"))
    assert pre_stop_s >= 5
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + grace_s


def test_commands_parse_and_environment_reaches_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = set()
    for deployment, container in pose3d_containers():
        command = parse_pose3d_args(container["args"])
        seen.add(command)
        with monkeypatch.context() as scoped:
            settings = check_env_reaches_settings(SETTINGS_OF_COMMAND[command], container_env(container), scoped)
        assert settings.allow_random_weights is False, deployment["metadata"]["name"]
        assert settings.redis_url == f"redis://redis.{NAMESPACE}.svc.cluster.local:6379/0"
    assert seen == {"worker", "gateway"}
    one("Service", "redis")  # the Redis the URL names


def test_worker_pods_gpu_probes_metrics_and_weights() -> None:
    pod = one("Deployment", "pose3d-worker")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    grpc_port = int(flag_value(container["args"], "--port") or 50061)
    metrics_port = int(flag_value(container["args"], "--metrics-port") or 9100)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container_env(container)["POSE3D_DEVICE"] == "cuda"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, probe
    assert container["readinessProbe"]["grpc"]["service"] == "pose3d.worker.v1.Worker"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    assert {p["containerPort"] for p in container["ports"]} == {grpc_port, metrics_port}
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/weights"
    assert mount["readOnly"] is True
    (volume,) = pod["spec"]["volumes"]
    one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_gateway_probes_are_readyz_and_healthz_on_its_rest_port() -> None:
    pod = one("Deployment", "pose3d-gateway")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "http": int(flag_value(container["args"], "--port") or 8000),
        "grpc": int(flag_value(container["args"], "--grpc-port") or 50051),
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["http"])
    service = one("Service", "pose3d-gateway")
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)


def test_autoscalers_and_disruption_budgets_target_the_deployments() -> None:
    deployments = {d["metadata"]["name"]: d for d in DOCS if d["kind"] == "Deployment"}
    hpas = {d["spec"]["scaleTargetRef"]["name"]: d for d in DOCS if d["kind"] == "HorizontalPodAutoscaler"}
    assert set(hpas) == {"pose3d-gateway", "pose3d-worker"} <= set(deployments)
    (gateway_metric,) = hpas["pose3d-gateway"]["spec"]["metrics"]
    assert gateway_metric["resource"]["name"] == "cpu"
    (worker_metric,) = hpas["pose3d-worker"]["spec"]["metrics"]
    exported = {family.name for family in Metrics().registry.collect()}
    assert worker_metric["pods"]["metric"]["name"] == "pose3d_expected_wait_seconds" in exported
    adapter = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["name"]["as"] == "pose3d_expected_wait_seconds"
    for series in ("pose3d_expected_wait_seconds_sum", "<<.Series>>"):
        assert series in rule["metricsQuery"]
    assert rule["seriesQuery"].startswith("pose3d_expected_wait_seconds_count{")
    budgets = [d for d in DOCS if d["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == 2
    for budget in budgets:
        selected = [
            name
            for name, d in deployments.items()
            if budget["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [budget["metadata"]["name"]]
        assert hpas[budget["metadata"]["name"]]["spec"]["minReplicas"] >= 2  # a drain never takes the last pod
