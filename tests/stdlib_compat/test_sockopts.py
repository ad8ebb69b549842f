"""Differential: socket options, `setsockopt`/`getsockopt` with ints and bytes (test_socket.py's
testGetSockOpt, testSetSockOpt and more).
"""

from __future__ import annotations

import socket
import struct
import sys

import pytest

pytestmark = pytest.mark.timeout(30)


def test_getsockopt_initial_reuseaddr_is_off(pool):
    # testGetSockOpt
    s = pool.new(socket.AF_INET, socket.SOCK_STREAM)
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0


def test_setsockopt_reuseaddr(pool):
    # testSetSockOpt
    s = pool.new(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0


def test_reuseaddr_set_to_2_reads_back_1(pool):
    s = pool.new()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 2)
    value = s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert value == 1 and type(value) is int


@pytest.mark.parametrize("option", ["SO_SNDBUF", "SO_RCVBUF"])
def test_buffer_size_reads_back_what_the_kernel_reports_for_the_stdlib(pool, option):
    opt = getattr(socket, option)
    with socket.socket() as ref:
        ref.setsockopt(socket.SOL_SOCKET, opt, 16384)
        expected = ref.getsockopt(socket.SOL_SOCKET, opt)
    s = pool.new()
    s.setsockopt(socket.SOL_SOCKET, opt, 16384)
    assert s.getsockopt(socket.SOL_SOCKET, opt) == expected
    if sys.platform == "linux":
        assert expected == 2 * 16384  # Linux doubles the request for its bookkeeping


def test_tcp_nodelay_and_keepalive(pool):
    s = pool.new()
    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
    assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda w: w.__name__)
def test_setsockopt_and_getsockopt_with_bytes(pool, wrap):
    s = pool.new()
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8) == struct.pack("ii", 0, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, wrap(struct.pack("ii", 1, 0)))
    value = s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
    assert type(value) is bytes and value == struct.pack("ii", 1, 0)
    # A buffer longer than the option is cut to what the kernel wrote.
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 64) == struct.pack("ii", 1, 0)
    # An int option read as bytes is its native-endian encoding.
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE, 4) == struct.pack("i", 1)
