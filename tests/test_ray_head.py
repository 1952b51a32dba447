"""The test Ray head's ports (tests/ray_head.py): outside the range every other Ray on the
machine draws from, and never one that a socket holds on a single address."""

from __future__ import annotations

import random
import socket

import pytest
import ray_head

# a kernel whose ephemeral range starts low leaves no room below it: free_port() then takes what
# the kernel gives (a bind to port 0), as before
pytestmark = pytest.mark.skipif(
    ray_head.ephemeral_low() < ray_head.PORTS_FROM + 2000,
    reason=f"the ephemeral range starts at {ray_head.ephemeral_low()}: no room below it",
)


def test_ports_come_from_below_the_ephemeral_range_that_other_rays_draw_from() -> None:
    ports = [ray_head.free_port() for _ in range(20)]
    assert all(ray_head.PORTS_FROM <= p < ray_head.ephemeral_low() for p in ports), ports


def test_each_test_process_draws_from_a_slice_of_its_own(monkeypatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        slices.append(ray_head.port_range())
        first, end = slices[-1]
        assert all(first <= ray_head.free_port() < end for _ in range(10))
    (a0, a1), (b0, b1) = slices
    assert ray_head.PORTS_FROM == a0 < a1 <= b0 < b1 <= ray_head.ephemeral_low()


def test_a_port_held_on_the_node_ip_alone_is_not_handed_out(monkeypatch) -> None:
    node_ip = socket.gethostbyname(socket.gethostname())
    with socket.socket() as held:  # as a Ray agent binds: the node's IP only, port reusable
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind((node_ip, ray_head.free_port()))
        held.listen()
        taken = held.getsockname()[1]
        draws = iter(
            [taken, taken, taken + 1 if taken + 1 < ray_head.ephemeral_low() else taken - 1]
        )
        monkeypatch.setattr(random, "randrange", lambda *_: next(draws))
        assert ray_head.free_port() != taken
