"""Differential: addresses, `connect` and `connect_ex`: `getsockname`/`getpeername` shapes for
IPv4 and IPv6, a refused connection (test_socket.py's NetworkConnectionNoServer).
"""

from __future__ import annotations

import errno
import os
import socket

import pytest
from differential import HOST, HOST6, needs_ipv6

pytestmark = pytest.mark.timeout(30)


def test_connect_refused(pool):
    # NetworkConnectionNoServer.test_connect
    cli = pool.new(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError) as info:
        cli.connect(pool.refused_addr())
    assert info.value.errno == errno.ECONNREFUSED
    assert type(info.value) is ConnectionRefusedError
    assert info.value.strerror == os.strerror(errno.ECONNREFUSED)


def test_connect_ex_returns_errno_ints(pool):
    lst = pool.listener()
    s = pool.new()
    result = s.connect_ex(lst.getsockname())
    assert result == 0 and type(result) is int
    refused = pool.new().connect_ex(pool.refused_addr())
    assert refused == errno.ECONNREFUSED and type(refused) is int
    assert s.connect_ex(lst.getsockname()) == errno.EISCONN
    closed = pool.closed()
    assert closed.connect_ex(lst.getsockname()) == errno.EBADF


def test_addresses_ipv4(pool):
    lst = pool.listener()
    name = lst.getsockname()
    assert type(name) is tuple and len(name) == 2
    assert name[0] == HOST and type(name[0]) is str and type(name[1]) is int and name[1] > 0
    cli = pool.new()
    cli.connect(name)
    conn, addr = lst.accept()
    pool.track(conn)
    assert type(conn) is pool.impl
    assert type(addr) is tuple and addr == cli.getsockname()
    assert cli.getpeername() == name
    assert conn.getpeername() == cli.getsockname()
    assert conn.getsockname() == name
    unbound = pool.new()
    assert unbound.getsockname() == ("0.0.0.0", 0)
    with pytest.raises(OSError) as info:
        unbound.getpeername()
    assert info.value.errno == errno.ENOTCONN


@needs_ipv6
def test_addresses_ipv6(pool):
    lst = pool.listener(socket.AF_INET6)
    name = lst.getsockname()
    assert type(name) is tuple and len(name) == 4
    assert name[0] == HOST6 and name[2:] == (0, 0)
    assert all(type(x) is int for x in name[1:])
    cli = pool.new(socket.AF_INET6)
    cli.connect((HOST6, name[1]))
    conn, addr = lst.accept()
    pool.track(conn)
    assert len(addr) == 4 and addr == cli.getsockname()
    assert cli.getpeername() == name
    assert conn.family == socket.AF_INET6
    assert pool.new(socket.AF_INET6).getsockname() == ("::", 0, 0, 0)
