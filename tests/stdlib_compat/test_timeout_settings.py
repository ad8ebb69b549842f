"""Differential: `settimeout`/`gettimeout`/`setblocking`/`getblocking` and the default timeout
(test_timeout.py's CreationTestCase).
"""

from __future__ import annotations

import os
import socket

import pytest
from differential import SOCKWIRE, STDLIB
from hypothesis import example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.timeout(30)


def test_timeout_object_creation(pool):
    # testObjectCreation, testFloatReturnValue, testReturnType
    s = pool.new(socket.AF_INET, socket.SOCK_STREAM)
    assert s.gettimeout() is None and s.timeout is None and s.getblocking() is True
    s.settimeout(7.345)
    assert s.gettimeout() == 7.345
    s.settimeout(3)
    assert s.gettimeout() == 3 and type(s.gettimeout()) is float
    s.settimeout(None)
    assert s.gettimeout() is None
    s.settimeout(3.9)
    assert type(s.gettimeout()) is float and s.timeout == 3.9


@pytest.mark.parametrize("bad", ["", (), [], {}, 0j], ids=repr)
def test_settimeout_type_check(pool, bad):
    # testTypeCheck
    s = pool.new()
    s.settimeout(0)
    s.settimeout(0.0)
    s.settimeout(None)
    with pytest.raises(TypeError):
        s.settimeout(bad)
    assert s.gettimeout() is None


@pytest.mark.parametrize("bad", [-1, -1.0, -1e-10], ids=repr)
def test_settimeout_range_check(pool, bad):
    # testRangeCheck
    s = pool.new()
    with pytest.raises(ValueError, match="Timeout value out of range"):
        s.settimeout(bad)
    assert s.gettimeout() is None


def test_settimeout_special_values(pool):
    s = pool.new()
    with pytest.raises(ValueError, match="NaN"):
        s.settimeout(float("nan"))
    with pytest.raises(OverflowError):
        s.settimeout(float("inf"))
    with pytest.raises(OverflowError):
        s.settimeout(2**80)
    s.settimeout(True)
    assert s.gettimeout() == 1.0
    s.settimeout(1e-10)  # rounded up to 1 ns: still a timeout, not non-blocking
    assert s.gettimeout() == 1e-09 and s.getblocking() is True


def test_timeout_then_blocking_and_back(pool):
    # testTimeoutThenBlocking, testBlockingThenTimeout, plus the fd's O_NONBLOCK flag
    s = pool.new()
    seen = []

    def state():
        seen.append((s.gettimeout(), s.timeout, s.getblocking(), os.get_blocking(s.fileno())))

    state()
    s.settimeout(10)
    state()
    s.setblocking(True)
    state()
    s.setblocking(False)
    state()
    s.settimeout(10)
    s.setblocking(False)
    state()
    s.setblocking(True)
    state()
    s.setblocking(False)
    s.settimeout(1)
    state()
    s.setblocking(True)
    s.settimeout(1)
    state()
    s.setblocking(0)
    state()
    s.setblocking(1)
    state()
    s.settimeout(0)
    state()
    assert seen == [
        (None, None, True, True),
        (10.0, 10.0, True, False),
        (None, None, True, True),
        (0.0, 0.0, False, False),
        (0.0, 0.0, False, False),
        (None, None, True, True),
        (1.0, 1.0, True, False),
        (1.0, 1.0, True, False),
        (0.0, 0.0, False, False),
        (None, None, True, True),
        (0.0, 0.0, False, False),
    ]


@pytest.mark.parametrize("bad", [None, "x", 0.0], ids=repr)
def test_setblocking_requires_an_int(impl, pool, bad):
    s = pool.new()
    with pytest.raises(TypeError):
        s.setblocking(bad)
    assert s.gettimeout() is None


@pytest.mark.parametrize("impl", [STDLIB, SOCKWIRE])
@settings(max_examples=300, deadline=None, database=None)
@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
@example(1.14)
@example(1.118)
def test_gettimeout_returns_what_the_stdlib_returns(impl, value):
    with socket.socket() as ref, impl() as s:
        ref.settimeout(value)
        s.settimeout(value)
        assert s.gettimeout() == ref.gettimeout()


def test_default_timeout_applies_to_new_sockets(pool, default_timeout):
    default_timeout(2.5)
    s = pool.new()
    assert s.gettimeout() == 2.5 and not os.get_blocking(s.fileno())
    default_timeout(0.0)
    assert pool.new().getblocking() is False
    default_timeout(None)
    assert pool.new().gettimeout() is None
