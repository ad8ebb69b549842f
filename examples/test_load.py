"""A load test as a pytest test: sockwire's pytest fixtures start a server, sockwire.swarm loads
it, and the test asserts on the report like on any other result.

Run: pytest examples/test_load.py    (or: python examples/test_load.py)
"""

import sys
from collections.abc import Callable
from typing import Any

import pytest

import sockwire

FMT = sockwire.PacketFormat("!IH", ("length", "msg_id"))


@pytest.fixture
def game_server(sockwire_gateway: Callable[..., sockwire.Gateway]) -> sockwire.Gateway:
    """Stands in for the server under test: login (msg_id 1) then echo (msg_id 2)."""

    def login(client: sockwire.ClientInfo, packet: sockwire.Packet) -> bytes:
        client.state["user"] = packet.body
        return b"welcome"

    def echo(client: sockwire.ClientInfo, packet: sockwire.Packet) -> Any:
        if "user" not in client.state:
            return b"log in first"
        return packet.body

    return sockwire_gateway(FMT, routes={1: login, 2: echo})


def test_the_server_keeps_p99_under_50_ms_at_2000_requests_per_second(
    game_server: sockwire.Gateway,
) -> None:
    report = sockwire.swarm(
        game_server.address,
        format=FMT,
        clients=50,
        rate=2000,  # open loop: a stall would show in the percentiles
        duration=3,
        hello=[(1, b"alice")],  # each client logs in once
        msg_id=2,
        expect="echo",
    )
    print(report)
    assert report.errors == {}
    assert report.throughput == pytest.approx(2000, rel=0.05)
    assert report.latency["p99"] < 0.050


def test_every_request_of_a_fixed_batch_is_answered(game_server: sockwire.Gateway) -> None:
    report = sockwire.swarm(
        game_server.address,
        format=FMT,
        clients=20,
        requests=10_000,
        in_flight=4,
        hello=[(1, b"bob")],
        msg_id=2,
        expect="echo",
    )
    assert (report.sent, report.received, report.errors) == (10_000, 10_000, {})


if __name__ == "__main__":
    # (sockwire is imported before pytest loads its plugin: nothing for pytest to rewrite)
    quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", *quiet]))
