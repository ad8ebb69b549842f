"""Differential: calls under a timeout and in non-blocking mode: `TimeoutError("timed out")`
after about the timeout, `BlockingIOError` at once (test_timeout.py's TCPTimeoutTestCase,
test_socket.py's TCPTimeoutTest).
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from differential import HOST, Pool

pytestmark = pytest.mark.timeout(30)


def assert_timed_out_in(call: Callable[[], Any], timeout: float) -> None:
    """`call` raises TimeoutError after about `timeout` seconds (test_timeout's check)."""
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        call()
    delta = time.monotonic() - t0
    assert type(info.value) is TimeoutError
    assert info.value.errno is None and str(info.value) == "timed out"
    assert timeout * 0.9 <= delta < timeout + 1.0


def test_accept_timeout_raises_timeout_error(pool):
    # TCPTimeoutTest.testTCPTimeout, with 0.2 s instead of 1.0 s.
    serv = pool.listener()
    serv.settimeout(0.2)
    assert_timed_out_in(serv.accept, 0.2)


def test_accept_timeout_zero_is_blocking_io_error(pool):
    # TCPTimeoutTest.testTimeoutZero: a non-blocking accept fails with an OSError that is not
    # a timeout.
    serv = pool.listener()
    serv.settimeout(0.0)
    with pytest.raises(OSError) as info:
        serv.accept()
    assert not isinstance(info.value, TimeoutError)
    assert type(info.value) is BlockingIOError
    assert info.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)


def full_backlog_addr(p: Pool) -> tuple[str, int]:
    """The address of a listener whose accept queue is full, so that the kernel drops new
    SYNs and a connect() there hangs until its timeout: the loopback stand-in for
    test_timeout's black-hole host. With listen(0), Linux queues one connection and drops
    the SYN of the next, so the loop ends at its second connect."""
    srv = p.track(socket.socket())
    srv.bind((HOST, 0))
    srv.listen(0)
    addr = srv.getsockname()
    for _ in range(8):
        probe = p.track(socket.socket())
        probe.settimeout(0.1)
        try:
            probe.connect(addr)
        except TimeoutError:
            return addr
    pytest.skip("the kernel kept accepting handshakes on a listen(0) socket")


def test_connect_timeout(pool, make_pool):
    # testConnectTimeout, against a full backlog instead of pythontest.net's black hole.
    addr = full_backlog_addr(make_pool(socket.socket))
    s = pool.new(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.15)
    assert_timed_out_in(lambda: s.connect(addr), 0.15)
    # connect_ex reports a timeout as EWOULDBLOCK, as CPython does.
    s2 = pool.new()
    s2.settimeout(0.1)
    assert s2.connect_ex(addr) == errno.EWOULDBLOCK


def test_recv_timeout(pool):
    # testRecvTimeout
    cli, _ = pool.pair()
    cli.settimeout(0.1)
    assert_timed_out_in(lambda: cli.recv(1024), 0.1)
    assert_timed_out_in(lambda: cli.recv_into(bytearray(8)), 0.1)


def test_accept_timeout(pool):
    # testAcceptTimeout
    serv = pool.listener()
    serv.settimeout(0.1)
    assert_timed_out_in(serv.accept, 0.1)


def test_sendall_timeout(pool):
    # testSend/testSendall: the peer never reads, so sendall fills both buffers and times out.
    cli, _ = pool.pair()
    cli.settimeout(0.1)
    assert_timed_out_in(lambda: cli.sendall(b"x" * (32 << 20)), 0.1)


def test_timeout_retry_after_data(pool):
    cli, conn = pool.pair()
    cli.settimeout(0.05)
    with pytest.raises(TimeoutError):
        cli.recv(4)
    conn.sendall(b"data")
    assert cli.recv(4) == b"data"


def test_nonblocking_calls_raise_blocking_io_error(pool):
    cli, conn = pool.pair()
    conn.setblocking(False)
    for call in (lambda: conn.recv(1), lambda: conn.recv_into(bytearray(1))):
        with pytest.raises(BlockingIOError) as info:
            call()
        assert info.value.errno == errno.EAGAIN
    cli.setblocking(False)
    sent = 0
    with pytest.raises(BlockingIOError) as info:
        while True:
            sent += cli.send(b"x" * 65536)
    assert info.value.errno == errno.EAGAIN and sent > 0
    with pytest.raises(BlockingIOError):
        cli.sendall(b"y" * 65536)


def test_nonblocking_connect(pool):
    lst = pool.listener()
    s = pool.new()
    s.setblocking(False)
    with pytest.raises(BlockingIOError) as info:
        s.connect(lst.getsockname())
    assert info.value.errno == errno.EINPROGRESS
    select.select([], [s], [], 2.0)
    # The first call after completion reports the pending connect's success.
    assert s.connect_ex(lst.getsockname()) == 0
    assert s.connect_ex(lst.getsockname()) == errno.EISCONN
    s2 = pool.new()
    s2.setblocking(False)
    assert s2.connect_ex(lst.getsockname()) == errno.EINPROGRESS
