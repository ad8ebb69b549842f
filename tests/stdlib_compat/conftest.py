"""Fixtures of the differential tests (see differential.py for what they are about).

`impl` runs a test once per implementation; `pool` hands out sockets of that implementation
and closes them at teardown; `make_pool` makes pools of a given class (the stdlib reference
next to the implementation under test).
"""

from __future__ import annotations

import socket

import pytest
from differential import SOCKWIRE, STDLIB, Pool


@pytest.fixture(params=[STDLIB, SOCKWIRE])
def impl(request: pytest.FixtureRequest) -> type:
    return request.param


@pytest.fixture
def make_pool():
    pools: list[Pool] = []

    def make(impl: type) -> Pool:
        pools.append(Pool(impl))
        return pools[-1]

    yield make
    for p in pools:
        p.close_all()


@pytest.fixture
def pool(impl: type, make_pool) -> Pool:
    return make_pool(impl)


@pytest.fixture
def default_timeout():
    """`socket.setdefaulttimeout`, restored afterwards."""
    old = socket.getdefaulttimeout()
    yield socket.setdefaulttimeout
    socket.setdefaulttimeout(old)
