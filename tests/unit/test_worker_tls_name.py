"""A list of TLS workers is checked against the host the operator wrote, not against the ``ipv4:`` target."""

from __future__ import annotations

from service.rpc.remote_engine import worker_target, worker_tls_name


def test_a_worker_list_keeps_the_first_host_as_its_tls_name() -> None:
    addresses = ["localhost:50061", "127.0.0.1:50062"]
    assert worker_target(addresses).startswith("ipv4:")
    assert worker_tls_name(addresses) == "localhost"
    assert worker_tls_name(["[::1]:50061", "[::1]:50062"]) == "::1"


def test_a_single_target_names_itself() -> None:
    assert worker_tls_name(["dns:///pose3d-worker-headless:50061"]) is None
    assert worker_tls_name(["127.0.0.1:50061"]) is None
