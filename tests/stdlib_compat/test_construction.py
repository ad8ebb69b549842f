"""Differential: construction and attributes: `family`/`type`/`proto`, accepted sockets, and
sockets built from an fd.
"""

from __future__ import annotations

import os
import select
import socket

import pytest
from differential import _ipv6_loopback, _normalised_repr, _stdlib_repr_of_same_fd

pytestmark = pytest.mark.timeout(30)


def test_family_type_proto_attributes(pool):
    s = pool.new()
    assert (s.family, s.type, s.proto) == (socket.AF_INET, socket.SOCK_STREAM, 0)
    assert type(s.family) is socket.AddressFamily
    assert type(s.type) is socket.SocketKind
    s.close()
    assert s.family == socket.AF_INET  # still readable once closed


@pytest.mark.parametrize(
    ("listener_timeout", "default"),
    [(None, None), (0.0, None), (1.0, None), (None, 2.0), (0.0, 2.0), (1.0, 2.0)],
)
def test_accepted_socket_timeout(pool, default_timeout, listener_timeout, default):
    default_timeout(default)
    lst = pool.listener()
    lst.settimeout(listener_timeout)
    cli = pool.track(socket.create_connection(lst.getsockname(), timeout=5))
    if listener_timeout == 0.0:
        select.select([lst], [], [], 2.0)
    conn, addr = lst.accept()
    pool.track(conn)
    assert addr == cli.getsockname()
    state = (conn.gettimeout(), conn.getblocking(), os.get_blocking(conn.fileno()))
    # CPython: the new socket gets the default timeout; a listener with a timeout does not
    # pass its non-blocking fd mode on.
    if default is None:
        assert state == (None, True, True)
    else:
        assert state == (default, True, False)


def test_socket_from_blocking_fd_takes_the_default_timeout(pool, default_timeout):
    default_timeout(0.5)
    with socket.socket() as src:
        src.setblocking(True)
        fd = src.detach()
    s = pool.new(fileno=fd)
    assert (s.gettimeout(), s.getblocking()) == (0.5, True)
    assert (s.family, s.type, s.proto) == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)


@pytest.mark.parametrize("default", [None, 0.3])
def test_socket_from_nonblocking_fd_takes_the_default_timeout(pool, default_timeout, default):
    default_timeout(default)
    src = socket.socket()
    src.setblocking(False)
    fd = src.detach()
    s = pool.new(fileno=fd)
    assert s.gettimeout() == default
    assert s.getblocking() is True


@pytest.mark.parametrize("flag", ["SOCK_NONBLOCK", "SOCK_CLOEXEC"])
def test_type_flags_are_not_part_of_the_type(pool, flag):
    s = pool.new(socket.AF_INET, socket.SOCK_STREAM | getattr(socket, flag))
    nonblocking = flag == "SOCK_NONBLOCK"
    assert os.get_blocking(s.fileno()) is not nonblocking
    assert (s.gettimeout(), s.getblocking()) == ((0.0, False) if nonblocking else (None, True))
    assert s.type == socket.SOCK_STREAM and type(s.type) is socket.SocketKind
    assert _normalised_repr(s) == _stdlib_repr_of_same_fd(s)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])
def test_socket_from_fd_probes_family_type_proto(pool, family):
    if family == socket.AF_INET6 and not _ipv6_loopback():
        pytest.skip("no IPv6")
    src = socket.socket(family)
    s = pool.new(fileno=src.detach())
    assert (s.family, s.type, s.proto) == (family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    assert type(s.family) is socket.AddressFamily
