"""The suite's ``free_port``: a port nothing listens on, outside the kernel's ephemeral range (where the suite's own
outgoing connections could take it between the pick and the server's bind)."""

from __future__ import annotations

import socket

from tests.conftest import EPHEMERAL_RANGE, LOWEST_PORT, free_port


def test_free_ports_are_bindable_and_below_the_ephemeral_range() -> None:
    first_ephemeral = int(EPHEMERAL_RANGE.read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert all(LOWEST_PORT <= port < first_ephemeral for port in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_listening_port_is_never_handed_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        busy = taken.getsockname()[1]
        assert busy not in {free_port() for _ in range(200)}
