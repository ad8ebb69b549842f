"""`Socket.to_stdlib()` and `Socket.from_stdlib()` (sockwire only)."""

from __future__ import annotations

import errno
import socket

import pytest
from differential import Pool, _normalised_repr, recv_exactly

import sockwire

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def sw_pool(make_pool) -> Pool:
    return make_pool(sockwire.Socket)


@pytest.mark.parametrize("timeout", [None, 0.0, 2.5])
def test_to_stdlib_duplicates_the_fd(sw_pool, timeout):
    cli, conn = sw_pool.pair()
    cli.settimeout(timeout)
    std = sw_pool.track(cli.to_stdlib())
    assert type(std) is socket.socket
    assert std.fileno() != cli.fileno() and std.fileno() >= 0
    assert (std.family, std.type, std.proto) == (cli.family, cli.type, cli.proto)
    assert std.gettimeout() == timeout
    assert std.getsockname() == cli.getsockname()
    assert std.getpeername() == cli.getpeername()
    std.sendall(b"from stdlib")
    assert recv_exactly(conn, 11) == b"from stdlib"
    std.close()  # the original keeps its own fd
    cli.sendall(b"still open")
    assert recv_exactly(conn, 10) == b"still open"


def test_to_stdlib_of_a_closed_socket_is_ebadf(sw_pool):
    s = sw_pool.closed()
    with pytest.raises(OSError) as info:
        s.to_stdlib()
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("timeout", [None, 0.0, 1.5])
def test_from_stdlib_adopts_the_fd(sw_pool, timeout):
    lst = sw_pool.listener()
    std = sw_pool.track(socket.create_connection(lst.getsockname(), timeout=5))
    std.settimeout(timeout)
    fd = std.fileno()
    peer = std.getpeername()
    conn, _ = lst.accept()
    sw_pool.track(conn)
    s = sw_pool.track(sockwire.Socket.from_stdlib(std))
    assert type(s) is sockwire.Socket
    assert std.fileno() == -1  # detached, not closed
    assert s.fileno() == fd and s.getpeername() == peer
    assert s.gettimeout() == timeout
    assert s.getblocking() is (timeout != 0.0)
    s.sendall(b"adopted")
    assert recv_exactly(conn, 7) == b"adopted"


def test_from_stdlib_on_a_subclass_and_ipv6(sw_pool):
    class Custom(sockwire.Socket):
        pass

    s = sw_pool.track(Custom.from_stdlib(socket.socket(socket.AF_INET6)))
    assert type(s) is Custom
    assert s.family == socket.AF_INET6 and s.type == socket.SOCK_STREAM


def test_stdlib_round_trip(sw_pool):
    cli, conn = sw_pool.pair()
    cli.settimeout(3.0)
    back = sw_pool.track(sockwire.Socket.from_stdlib(cli.to_stdlib()))
    assert back.fileno() != cli.fileno()
    assert back.gettimeout() == 3.0
    assert back.getpeername() == cli.getpeername()
    back.sendall(b"round")
    cli.sendall(b"trip")
    assert recv_exactly(conn, 9) == b"roundtrip"
    assert _normalised_repr(back).replace(f"fd={back.fileno()}", "fd=N") == _normalised_repr(
        cli
    ).replace(f"fd={cli.fileno()}", "fd=N")
