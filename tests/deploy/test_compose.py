"""deploy/docker-compose.yml (+ the GPU override and .env.example), checked as compose reads it — no Docker engine
runs here: interpolation with compose's rules, the Compose Specification schema, the real ``pose3d`` parser on each
command, every ``POSE3D_*`` variable through the real settings classes, and a worker started from the file's own
command and environment (it must refuse to run without weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from service.config import WorkerSettings
from tests.conftest import REPO, free_port
from tests.deploy.support import (
    COMPOSE_FILE,
    COMPOSE_GPU_FILE,
    COMPOSE_SCHEMA,
    DEPLOY,
    ENV_EXAMPLE,
    ENV_PREFIX,
    SETTINGS_OF_COMMAND,
    InterpolationError,
    check_env_reaches_settings,
    command_of,
    environment_of,
    flag_value,
    interpolate_text,
    load_compose,
    parse_pose3d_args,
    read_env_file,
    variables_used,
)

EXAMPLE_ENV = read_env_file(ENV_EXAMPLE)


def pose3d_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services running the pose3d image (their command is a pose3d subcommand)."""
    return {
        name: service
        for name, service in compose["services"].items()
        if "command" in service and command_of(service)[0] in SETTINGS_OF_COMMAND
    }


def services_running(compose: dict[str, Any], subcommand: str) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in pose3d_services(compose).items() if command_of(s)[0] == subcommand}


def test_interpolation_follows_compose_rules() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate_text("${SET:-d} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", env) == "x d d  d"
    assert interpolate_text("$SET-${SET}-$$SET-${SET:+alt}-${UNSET:+alt}", env) == "x-x-$SET-alt-"
    assert interpolate_text('{"a": "${UNSET:-/w/f.pth}"}', env) == '{"a": "/w/f.pth"}'
    with pytest.raises(InterpolationError, match="required variable UNSET"):
        interpolate_text("${UNSET:?set it}", env)
    with pytest.raises(InterpolationError):
        interpolate_text("${UNSET:-${NESTED}}", env)


@pytest.mark.parametrize(
    ("path", "env"),
    [(COMPOSE_FILE, {}), (COMPOSE_FILE, EXAMPLE_ENV), (COMPOSE_GPU_FILE, {})],
    ids=["defaults", "env-example", "gpu-override"],
)
def test_compose_file_matches_the_compose_specification(path: Any, env: dict[str, str]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(load_compose(path, env)), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_topology_redis_two_workers_gateway_prometheus() -> None:
    compose = load_compose()
    services = compose["services"]
    assert set(services) == {"redis", "worker-1", "worker-2", "gateway", "prometheus", "grafana"}
    assert sorted(services_running(compose, "worker")) == ["worker-1", "worker-2"]
    assert list(services_running(compose, "gateway")) == ["gateway"]
    assert "redis-cli" in services["redis"]["healthcheck"]["test"]
    for name, service in pose3d_services(compose).items():
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file(), name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
    for name in services_running(compose, "worker"):  # the gateway starts without waiting for healthy workers
        assert services["gateway"]["depends_on"][name]["condition"] == "service_started"


@pytest.mark.parametrize("env", [{}, EXAMPLE_ENV], ids=["defaults", "env-example"])
def test_every_command_is_accepted_by_the_pose3d_parser(env: dict[str, str]) -> None:
    for name, service in pose3d_services(load_compose(env=env)).items():
        argv = command_of(service)
        assert parse_pose3d_args(argv) == argv[0], name


@pytest.mark.parametrize("env", [{}, EXAMPLE_ENV], ids=["defaults", "env-example"])
def test_every_pose3d_variable_reaches_its_settings_field(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for service in pose3d_services(load_compose(env=env)).values():
        cls = SETTINGS_OF_COMMAND[command_of(service)[0]]
        with monkeypatch.context() as scoped:
            check_env_reaches_settings(cls, environment_of(service), scoped)


def test_interpolated_pose3d_variables_set_the_container_variable_of_the_same_name() -> None:
    """A POSE3D_* name in the .env file means the same thing inside the containers (no look-alike knobs)."""
    raw = load_compose(env={name: f"<{name}>" for name in variables_used()})
    for name in sorted(v for v in variables_used() if v.startswith(ENV_PREFIX)):
        holders = [s for s in pose3d_services(raw).values() if environment_of(s).get(name) == f"<{name}>"]
        assert holders, f"${{{name}}} is interpolated but sets no container variable {name}"


def test_env_example_only_names_variables_the_file_uses() -> None:
    unused = set(EXAMPLE_ENV) - variables_used()
    assert not unused, f".env.example sets variables docker-compose.yml never reads: {sorted(unused)}"
    # (each POSE3D_* one then reaches its field: the two tests above)


def test_real_weights_are_required_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    for env, allowed in [({}, False), (EXAMPLE_ENV, False), ({"POSE3D_ALLOW_RANDOM_WEIGHTS": "true"}, True)]:
        for service in services_running(load_compose(env=env), "worker").values():
            with monkeypatch.context() as scoped:
                settings = check_env_reaches_settings(WorkerSettings, environment_of(service), scoped)
            assert settings.allow_random_weights is allowed
            checkpoints = [settings.detector.checkpoint, *(spec.checkpoint for spec in settings.models.values())]
            assert checkpoints
            assert all(c is not None and c.parts[:2] == ("/", "weights") for c in checkpoints)
            assert any(v.endswith(":/weights:ro") for v in service["volumes"]), service["volumes"]


def test_gateway_workers_prometheus_and_healthchecks_name_the_ports_the_commands_open() -> None:
    compose = load_compose()
    workers = services_running(compose, "worker")
    grpc_ports = {name: flag_value(command_of(s), "--port") or "50061" for name, s in workers.items()}
    metrics_ports = {name: flag_value(command_of(s), "--metrics-port") or "9100" for name, s in workers.items()}
    gateway = compose["services"]["gateway"]
    addresses = (flag_value(command_of(gateway), "--workers") or "").split(",")
    assert sorted(addresses) == sorted(f"{name}:{port}" for name, port in grpc_ports.items())
    for name, service in workers.items():
        assert {grpc_ports[name], metrics_ports[name]} <= set(service["expose"]), name
        assert service["healthcheck"]["test"][-3:] == ["worker", "--port", grpc_ports[name]], name
    http_port = flag_value(command_of(gateway), "--port") or "8000"
    assert gateway["healthcheck"]["test"][-3:] == ["gateway", "--port", http_port]
    published = {p.split(":")[-1] for p in gateway["ports"]}
    assert published == {http_port, flag_value(command_of(gateway), "--grpc-port") or "50051"}
    assert environment_of(gateway)["POSE3D_REDIS_URL"].startswith("redis://redis:6379/")


def test_gpu_override_reserves_one_nvidia_gpu_per_worker_and_runs_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    base_workers = services_running(load_compose(), "worker")
    override = load_compose(COMPOSE_GPU_FILE)["services"]
    assert set(override) == set(base_workers)
    for name, service in override.items():
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia"
        assert device["capabilities"] == ["gpu"]
        merged_env = {**environment_of(base_workers[name]), **environment_of(service)}
        with monkeypatch.context() as scoped:
            settings = check_env_reaches_settings(WorkerSettings, merged_env, scoped)
        assert settings.device.value == "cuda"


def test_a_worker_started_from_the_compose_file_refuses_to_run_without_weights() -> None:
    """The worker's own command and environment from the file, ports moved to free local ones: no checkpoint at
    /weights and random weights not allowed, so it must exit with an error naming the missing file."""
    service = load_compose()["services"]["worker-1"]
    argv = command_of(service)
    for flag in ("--port", "--metrics-port"):
        argv[argv.index(flag) + 1] = str(free_port())
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", **environment_of(service)}
    env["POSE3D_REDIS_URL"] = ""  # not reached: the models fail to load first
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", *argv, "--host", "127.0.0.1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-2000:]
    for expected in ("/weights/", "not found", "POSE3D_ALLOW_RANDOM_WEIGHTS"):
        assert expected in output, output[-2000:]
