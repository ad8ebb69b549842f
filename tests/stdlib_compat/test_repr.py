"""Differential: `repr` has the stdlib's shape, for every state of a socket and for subclasses."""

from __future__ import annotations

import socket

import pytest
from differential import HOST, _normalised_repr, _stdlib_repr_of_same_fd, needs_ipv6

pytestmark = pytest.mark.timeout(30)


def test_repr_has_the_stdlib_shape(pool):
    fresh = pool.new()
    bound = pool.new()
    bound.bind((HOST, 0))
    lst = pool.listener()
    cli, conn = pool.pair()
    detached = pool.new()
    detached.detach()
    closed = pool.closed()
    for s in (fresh, bound, lst, cli, conn, detached, closed):
        assert _normalised_repr(s) == _stdlib_repr_of_same_fd(s)
    assert repr(closed).split(" ")[1] == "[closed]"
    assert "raddr=" in repr(cli) and "laddr=" in repr(cli)


@needs_ipv6
def test_repr_ipv6(pool):
    cli, conn = pool.pair(socket.AF_INET6)
    for s in (cli, conn):
        assert _normalised_repr(s) == _stdlib_repr_of_same_fd(s)


def test_repr_of_a_subclass_names_the_subclass(impl):
    class Custom(impl):
        pass

    with Custom() as s:
        assert repr(s).split(" ")[0] == f"<{Custom.__module__}.{Custom.__qualname__}"
        assert _normalised_repr(s) == _stdlib_repr_of_same_fd(s)
