"""Differential tests: `sockwire.Socket` against the stdlib's `socket.socket`.

Every behaviour runs once with each implementation (test ids `stdlib` and `sockwire`) on real
loopback sockets, and the assertions are the same for both, so a passing pair shows the two
behave identically. Where the expected value is platform-dependent the test computes it live
with the stdlib and compares. The socket behaviours ported here follow the intent of CPython's
own `test_socket.py` and `test_timeout.py`.

Beyond exception types and errno values, error messages are compared too (the stdlib's text
is what users search for).
"""

from __future__ import annotations

import array
import errno
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import sockwire

pytestmark = pytest.mark.timeout(30)

HOST = "127.0.0.1"
HOST6 = "::1"
MSG = "Michael Gilfix was here\u1234\r\n".encode()
INT_MAX = 2**31 - 1
UINT_MAX = 2**32 - 1

STDLIB = pytest.param(socket.socket, id="stdlib")
SOCKWIRE = pytest.param(sockwire.Socket, id="sockwire")


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind((HOST6, 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")


class Pool:
    """Sockets of one implementation, all closed at teardown."""

    def __init__(self, impl: type) -> None:
        self.impl = impl
        self.items: list[Any] = []

    def track(self, sock: Any) -> Any:
        self.items.append(sock)
        return sock

    def new(self, *args: Any, **kwargs: Any) -> Any:
        return self.track(self.impl(*args, **kwargs))

    def closed(self, family: int = socket.AF_INET) -> Any:
        s = self.new(family)
        s.close()
        return s

    def listener(self, family: int = socket.AF_INET, backlog: int = 8) -> Any:
        s = self.new(family, socket.SOCK_STREAM)
        s.bind((HOST6 if family == socket.AF_INET6 else HOST, 0))
        s.listen(backlog)
        return s

    def pair(self, family: int = socket.AF_INET) -> tuple[Any, Any]:
        """A connected (client, server-side) pair, both of this implementation."""
        lst = self.listener(family)
        cli = self.new(family, socket.SOCK_STREAM)
        cli.connect(lst.getsockname())
        conn, _ = lst.accept()
        self.track(conn)
        return cli, conn

    def refused_addr(self) -> tuple[str, int]:
        """A loopback address that refuses connections: bound, not listening, kept bound so
        that nothing else can take the port while the test runs."""
        hold = self.track(socket.socket())
        hold.bind((HOST, 0))
        return hold.getsockname()

    def close_all(self) -> None:
        for s in reversed(self.items):
            s.close()


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


class Background(threading.Thread):
    """Runs `fn` on a daemon thread and hands back its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc

    def value(self, timeout: float = 5.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "background call did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def outcome(fn: Callable[[], Any]) -> tuple:
    """What a call did, comparably: ("returns", value) or ("raises", type, errno)."""
    try:
        value = fn()
    except Exception as exc:
        return ("raises", type(exc), getattr(exc, "errno", None))
    return ("returns", value)


def returns(value: Any) -> tuple:
    return ("returns", value)


def raises(exc_type: type, err: int | None = None) -> tuple:
    return ("raises", exc_type, err)


def recv_exactly(sock: Any, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def recv_until_eof(sock: Any) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def assert_timed_out_in(call: Callable[[], Any], timeout: float) -> None:
    """`call` raises TimeoutError after about `timeout` seconds (test_timeout's check)."""
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        call()
    delta = time.monotonic() - t0
    assert type(info.value) is TimeoutError
    assert info.value.errno is None and str(info.value) == "timed out"
    assert timeout * 0.9 <= delta < timeout + 1.0


# --------------------------------------------------------------------------------------------
# test_socket.py: GeneralModuleTests, SocketConnectedTest, TCPCloserTest, ...


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


def test_sendall_2048_bytes(pool):
    # testSendAll: one side sends 2048 bytes with sendall, the other reads until EOF.
    cli, conn = pool.pair()

    def sender():
        conn.sendall(b"f" * 2048)
        conn.close()

    t = Background(sender)
    assert recv_until_eof(cli) == b"f" * 2048
    t.value()


def test_sendall_large_memoryview_is_received_in_full(pool):
    cli, conn = pool.pair()
    data = bytes(range(256)) * (4 * 4096)  # 4 MiB: many partial sends
    reader = Background(lambda: recv_until_eof(conn))
    assert cli.sendall(memoryview(data)) is None
    cli.shutdown(socket.SHUT_WR)
    assert reader.value() == data


def test_shutdown_write_is_a_half_close(pool):
    # testShutdown: after shutdown(SHUT_WR) the peer reads the data, then EOF, and can still
    # send back on the other half.
    cli, conn = pool.pair()

    def peer():
        got = recv_exactly(conn, len(MSG))
        eof = conn.recv(1024)
        conn.sendall(b"reply after EOF")
        return got, eof

    t = Background(peer)
    cli.sendall(MSG)
    cli.shutdown(socket.SHUT_WR)
    assert t.value() == (MSG, b"")
    assert recv_exactly(cli, 15) == b"reply after EOF"
    with pytest.raises(BrokenPipeError) as info:
        cli.send(b"x")
    assert info.value.errno == errno.EPIPE


def test_shutdown_read_then_rdwr(pool):
    cli, conn = pool.pair()
    cli.shutdown(socket.SHUT_RD)
    assert cli.recv(5) == b""
    cli.shutdown(socket.SHUT_RDWR)
    assert conn.recv(5) == b""


def test_shutdown_overflow(pool):
    # testShutdown_overflow (issue 15989)
    cli, _ = pool.pair()
    with pytest.raises(OverflowError):
        cli.shutdown(INT_MAX + 1)
    with pytest.raises(OverflowError):
        cli.shutdown(2 + (UINT_MAX + 1))
    cli.shutdown(2)


def test_detach(pool):
    # testDetach: detach returns the fd, the object is then unusable, the fd is still open
    # and usable by a new socket.
    cli, conn = pool.pair()
    fileno = cli.fileno()
    f = cli.detach()
    assert f == fileno
    assert cli.fileno() == -1
    with pytest.raises(OSError) as info:
        cli.recv(1024)
    assert type(info.value) is OSError and info.value.errno == errno.EBADF
    cli.close()
    assert cli.detach() == -1
    sock = pool.new(socket.AF_INET, socket.SOCK_STREAM, fileno=f)
    conn.sendall(MSG)
    assert recv_exactly(sock, len(MSG)) == MSG
    assert sock.getpeername() == conn.getsockname()


def test_close_peer_sees_readable_and_eof(pool):
    # TCPCloserTest.testClose
    sd, conn = pool.pair()
    conn.close()
    read, _, _ = select.select([sd], [], [], 1.0)
    assert read == [sd]
    assert sd.recv(1) == b""
    # Calling close() many times should be safe.
    conn.close()
    conn.close()
    assert conn.fileno() == -1


def test_connect_refused(pool):
    # NetworkConnectionNoServer.test_connect
    cli = pool.new(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(OSError) as info:
        cli.connect(pool.refused_addr())
    assert info.value.errno == errno.ECONNREFUSED
    assert type(info.value) is ConnectionRefusedError
    assert info.value.strerror == os.strerror(errno.ECONNREFUSED)


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


def test_reset_by_peer_and_broken_pipe(pool):
    cli, conn = pool.pair()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # abortive close: the peer gets a RST
    select.select([cli], [], [], 1.0)
    with pytest.raises(ConnectionResetError) as info:
        cli.recv(10)
    assert info.value.errno == errno.ECONNRESET
    assert cli.recv(10) == b""
    with pytest.raises(BrokenPipeError) as info2:
        cli.send(b"x")
    assert info2.value.errno == errno.EPIPE


# --------------------------------------------------------------------------------------------
# test_timeout.py: CreationTestCase and TCPTimeoutTestCase


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


# --------------------------------------------------------------------------------------------
# Non-blocking mode, connect_ex, addresses, repr, context manager, buffers


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


def test_family_type_proto_attributes(pool):
    s = pool.new()
    assert (s.family, s.type, s.proto) == (socket.AF_INET, socket.SOCK_STREAM, 0)
    assert type(s.family) is socket.AddressFamily
    assert type(s.type) is socket.SocketKind
    s.close()
    assert s.family == socket.AF_INET  # still readable once closed


def _normalised_repr(sock: Any) -> str:
    """repr with the class name replaced, so the two implementations can be compared."""
    text = repr(sock)
    assert text.startswith("<") and text.endswith(">")
    _cls, _, rest = text[1:].partition(" ")
    return "<CLASS " + rest


def _stdlib_repr_of_same_fd(sock: Any) -> str:
    """What `socket.socket` shows for the same fd, family, type and proto."""
    if sock.fileno() < 0:
        ref = socket.socket(sock.family, sock.type, sock.proto)
        ref.close()
        return _normalised_repr(ref)
    ref = socket.socket(sock.family, sock.type, sock.proto, fileno=sock.fileno())
    try:
        return _normalised_repr(ref)
    finally:
        ref.detach()


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


def test_context_manager_closes(impl):
    with impl() as s:
        assert type(s) is impl
        assert s.fileno() >= 0
    assert s.fileno() == -1
    with pytest.raises(KeyError), impl() as s2:
        raise KeyError("propagates")
    assert s2.fileno() == -1
    assert impl().__exit__(None, None, None) is None


def test_sendall_and_recv_with_bytearray_and_memoryview(pool):
    cli, conn = pool.pair()
    cli.sendall(bytearray(b"abc"))
    cli.sendall(memoryview(b"xdefx")[1:4])
    assert cli.send(memoryview(bytearray(b"ghi"))) == 3
    cli.sendall(array.array("B", b"jk"))
    assert recv_exactly(conn, 11) == b"abcdefghijk"


def test_recv_into_with_nbytes(pool):
    cli, conn = pool.pair()
    cli.sendall(b"0123456789")
    buf = bytearray(b"." * 8)
    assert conn.recv_into(buf, 4) == 4
    assert buf == b"0123...."
    view = memoryview(buf)
    assert conn.recv_into(view[4:]) == 4
    assert buf == b"01234567"
    arr = array.array("B", bytes(4))
    assert conn.recv_into(arr, 0, 0) == 2
    assert arr.tobytes() == b"89\x00\x00"
    with pytest.raises(ValueError, match="buffer too small"):
        conn.recv_into(bytearray(2), 3)
    with pytest.raises(ValueError, match="negative buffersize"):
        conn.recv_into(bytearray(2), -1)


def test_recv_flags_peek(pool):
    cli, conn = pool.pair()
    cli.sendall(b"hello")
    select.select([conn], [], [], 1.0)
    assert conn.recv(3, socket.MSG_PEEK) == b"hel"
    assert recv_exactly(conn, 5) == b"hello"


def test_recv_returns_bytes_of_exact_length(pool):
    cli, conn = pool.pair()
    cli.sendall(b"abc")
    data = recv_exactly(conn, 3)
    assert type(data) is bytes and data == b"abc"
    cli.sendall(b"x" * 10)
    select.select([conn], [], [], 1.0)
    big = conn.recv(1 << 20)  # a large buffer shrinks to what arrived
    assert type(big) is bytes and 1 <= len(big) <= 10


# --------------------------------------------------------------------------------------------
# Accepted sockets and sockets built from an fd


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


# --------------------------------------------------------------------------------------------
# The error table: the same exception type and errno (or the same value) for each call


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable[[Pool], Any]
    expect: tuple | None  # None: whatever the stdlib does here
    # False where the message cannot match: it names the class ("socket.send() takes no
    # keyword arguments" against "Socket.send() got some positional-only arguments ...").
    same_message: bool = True


def _closed(p: Pool) -> Any:
    return p.closed()


def _after_settimeout_on_closed(p: Pool) -> Any:
    s = p.closed()
    first = outcome(lambda: s.settimeout(1))
    return first, s.gettimeout(), s.getblocking()


def _set_get(p: Pool, level: int, opt: int, value: Any, buflen: int = 0) -> Any:
    s = p.new()
    s.setsockopt(level, opt, value)
    return s.getsockopt(level, opt, buflen) if buflen else s.getsockopt(level, opt)


def _set_timeout_get(p: Pool, value: Any) -> Any:
    s = p.new()
    s.settimeout(value)
    return s.gettimeout(), s.getblocking()


def _bind_and_name(p: Pool, family: int, host: Any) -> Any:
    s = p.new(family)
    s.bind((host, 0))
    name = s.getsockname()
    return name[0], len(name)


def _listen_backlog(p: Pool, backlog: int) -> Any:
    s = p.new()
    s.bind((HOST, 0))
    return s.listen(backlog)


def _connected_twice(p: Pool) -> Any:
    lst = p.listener()
    s = p.new()
    s.connect(lst.getsockname())
    return s.connect(lst.getsockname())


def _from_pipe_fd(p: Pool) -> Any:
    r, w = os.pipe()
    try:
        return p.new(fileno=r)
    finally:
        os.close(w)  # r is closed by the socket, or below if it was refused
        try:
            os.close(r)
        except OSError:
            pass


def _bind_twice(p: Pool) -> Any:
    s = p.new()
    s.bind((HOST, 0))
    return s.bind((HOST, 0))


def _recv_zero(p: Pool, mode: str) -> Any:
    _cli, conn = p.pair()
    if mode == "timeout":
        conn.settimeout(0.1)
    elif mode == "nonblocking":
        conn.setblocking(False)
    else:
        conn.close()
    return conn.recv(0), conn.recv_into(bytearray(0))


def _send_after_close_with_timeout(p: Pool) -> Any:
    # testSendAfterClose
    with p.new() as s:
        s.settimeout(1)
    return s.send(b"spam")


def _connected(p: Pool) -> Any:
    return p.pair()[0]


def _readable(p: Pool) -> Any:
    """A connected socket with one byte waiting, so that a recv that works returns."""
    cli, conn = p.pair()
    cli.sendall(b"x")
    select.select([conn], [], [], 1.0)
    return conn


LINGER_ON = struct.pack("ii", 1, 5)

CASES = [
    # bad argument types
    Case("send_str", lambda p: p.new().send("str"), raises(TypeError)),
    Case("sendall_str", lambda p: p.new().sendall("str"), raises(TypeError)),
    Case("send_int", lambda p: p.new().send(5), raises(TypeError)),
    Case("send_flags_str", lambda p: p.new().send(b"x", "0"), raises(TypeError)),
    Case(
        "send_keyword",
        lambda p: _connected(p).send(data=b"x"),
        raises(TypeError),
        same_message=False,
    ),
    Case(
        "recv_keyword",
        lambda p: _readable(p).recv(bufsize=1),
        raises(TypeError),
        same_message=False,
    ),
    Case(
        "bind_keyword",
        lambda p: p.new().bind(address=(HOST, 0)),
        raises(TypeError),
        same_message=False,
    ),
    Case(
        "settimeout_keyword",
        lambda p: p.new().settimeout(value=1),
        raises(TypeError),
        same_message=False,
    ),
    Case("bind_str", lambda p: p.new().bind("x"), raises(TypeError)),
    Case("bind_list", lambda p: p.new().bind([HOST, 0]), raises(TypeError)),
    Case("bind_3tuple", lambda p: p.new().bind((HOST, 0, 0)), raises(TypeError)),
    Case("bind_int_host", lambda p: p.new().bind((1, 0)), raises(TypeError)),
    Case("bind_str_port", lambda p: p.new().bind((HOST, "80")), raises(TypeError)),
    Case("bind_float_port", lambda p: p.new().bind((HOST, 80.0)), raises(TypeError)),
    Case(
        "bind_v6_5tuple",
        lambda p: p.new(socket.AF_INET6).bind((HOST6, 0, 0, 0, 0)),
        raises(TypeError),
    ),
    Case("recv_str", lambda p: p.new().recv("1"), raises(TypeError)),
    Case("recv_into_bytes", lambda p: p.new().recv_into(b"immutable"), raises(TypeError)),
    Case(
        "recv_into_noncontiguous",
        lambda p: p.new().recv_into(memoryview(bytearray(8))[::2]),
        raises(TypeError),
    ),
    Case(
        "sendall_noncontiguous",
        lambda p: p.new().sendall(memoryview(b"abcdef")[::2]),
        raises(BufferError),
    ),
    Case("shutdown_str", lambda p: p.new().shutdown("x"), raises(TypeError)),
    Case(
        "setsockopt_str",
        lambda p: p.new().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, "1"),
        raises(TypeError),
    ),
    Case(
        "setsockopt_float",
        lambda p: p.new().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1.0),
        raises(TypeError),
    ),
    Case(
        "setsockopt_none",
        lambda p: p.new().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, None),
        raises(TypeError),
    ),
    Case(
        "setsockopt_int_with_optlen",
        lambda p: p.new().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1, 4),
        raises(TypeError),
    ),
    Case(
        "setsockopt_int_too_big",
        lambda p: p.new().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 2**40),
        raises(TypeError),
    ),
    Case("ctor_str_family", lambda p: p.new("x"), raises(TypeError)),
    Case("ctor_str_fileno", lambda p: p.new(fileno="3"), raises(TypeError)),
    # out-of-range values
    Case("bind_port_65536", lambda p: p.new().bind((HOST, 65536)), raises(OverflowError)),
    Case("bind_port_negative", lambda p: p.new().bind((HOST, -1)), raises(OverflowError)),
    Case("bind_port_huge", lambda p: p.new().bind((HOST, 2**70)), raises(OverflowError)),
    Case("connect_port_70000", lambda p: p.new().connect((HOST, 70000)), raises(OverflowError)),
    Case(
        "connect_ex_port_70000", lambda p: p.new().connect_ex((HOST, 70000)), raises(OverflowError)
    ),
    Case(
        "bind_v6_flowinfo",
        lambda p: p.new(socket.AF_INET6).bind((HOST6, 0, 1 << 20)),
        raises(OverflowError),
    ),
    Case("recv_negative", lambda p: p.new().recv(-1), raises(ValueError)),
    Case("recv_into_negative", lambda p: p.new().recv_into(bytearray(4), -1), raises(ValueError)),
    Case("recv_into_too_small", lambda p: p.new().recv_into(bytearray(4), 5), raises(ValueError)),
    Case("settimeout_negative", lambda p: p.new().settimeout(-1), raises(ValueError)),
    Case("settimeout_nan", lambda p: p.new().settimeout(float("nan")), raises(ValueError)),
    Case(
        "settimeout_inf",
        lambda p: p.new().settimeout(float("inf")),
        raises(OverflowError),
    ),
    Case(
        "settimeout_1e300",
        lambda p: p.new().settimeout(1e300),
        raises(OverflowError),
    ),
    Case(
        "settimeout_negative_inf",
        lambda p: p.new().settimeout(float("-inf")),
        raises(OverflowError),
    ),
    Case(
        "settimeout_negative_1e10",
        lambda p: p.new().settimeout(-1e10),
        raises(OverflowError),
    ),
    Case(
        "settimeout_negative_int_10_10",
        lambda p: p.new().settimeout(-(10**10)),
        raises(OverflowError),
    ),
    Case("settimeout_negative_2_70", lambda p: p.new().settimeout(-(2**70)), raises(OverflowError)),
    Case("settimeout_negative_tiny", lambda p: p.new().settimeout(-1e-10), raises(ValueError)),
    Case(
        "settimeout_negative_zero",
        lambda p: _set_timeout_get(p, -0.0),
        returns((0.0, False)),
    ),
    Case("settimeout_2_80", lambda p: p.new().settimeout(2**80), raises(OverflowError)),
    Case(
        "shutdown_int_max_plus_1",
        lambda p: p.new().shutdown(INT_MAX + 1),
        raises(OverflowError),
    ),
    Case("ctor_negative_fileno", lambda p: p.new(fileno=-1), raises(ValueError)),
    Case(
        "getsockopt_buflen_2000",
        lambda p: p.new().getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 2000),
        raises(OSError),
    ),
    Case(
        "getsockopt_buflen_negative",
        lambda p: p.new().getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, -1),
        raises(OSError),
    ),
    # a closed socket: EBADF
    Case("closed_send", lambda p: _closed(p).send(b"x"), raises(OSError, errno.EBADF)),
    Case("closed_sendall", lambda p: _closed(p).sendall(b"x"), raises(OSError, errno.EBADF)),
    Case(
        "closed_sendall_empty",
        lambda p: _closed(p).sendall(b""),
        raises(OSError, errno.EBADF),
    ),
    Case("closed_send_empty", lambda p: _closed(p).send(b""), raises(OSError, errno.EBADF)),
    Case("closed_recv", lambda p: _closed(p).recv(1), raises(OSError, errno.EBADF)),
    Case(
        "closed_recv_into",
        lambda p: _closed(p).recv_into(bytearray(1)),
        raises(OSError, errno.EBADF),
    ),
    Case("closed_getsockname", lambda p: _closed(p).getsockname(), raises(OSError, errno.EBADF)),
    Case("closed_getpeername", lambda p: _closed(p).getpeername(), raises(OSError, errno.EBADF)),
    Case("closed_settimeout", lambda p: _closed(p).settimeout(1), raises(OSError, errno.EBADF)),
    Case(
        "closed_setblocking", lambda p: _closed(p).setblocking(False), raises(OSError, errno.EBADF)
    ),
    Case(
        "closed_shutdown",
        lambda p: _closed(p).shutdown(socket.SHUT_RDWR),
        raises(OSError, errno.EBADF),
    ),
    Case("closed_listen", lambda p: _closed(p).listen(), raises(OSError, errno.EBADF)),
    Case("closed_accept", lambda p: _closed(p).accept(), raises(OSError, errno.EBADF)),
    Case("closed_bind", lambda p: _closed(p).bind((HOST, 0)), raises(OSError, errno.EBADF)),
    Case("closed_connect", lambda p: _closed(p).connect((HOST, 1)), raises(OSError, errno.EBADF)),
    Case(
        "closed_getsockopt",
        lambda p: _closed(p).getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR),
        raises(OSError, errno.EBADF),
    ),
    Case(
        "closed_setsockopt",
        lambda p: _closed(p).setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1),
        raises(OSError, errno.EBADF),
    ),
    Case("closed_connect_ex", lambda p: _closed(p).connect_ex((HOST, 1)), returns(errno.EBADF)),
    Case("closed_fileno", lambda p: _closed(p).fileno(), returns(-1)),
    Case("closed_detach", lambda p: _closed(p).detach(), returns(-1)),
    Case("closed_close_again", lambda p: _closed(p).close(), returns(None)),
    Case("closed_gettimeout", lambda p: _closed(p).gettimeout(), returns(None)),
    Case(
        "closed_settimeout_is_recorded",
        _after_settimeout_on_closed,
        returns((raises(OSError, errno.EBADF), 1.0, True)),
    ),
    Case("closed_send_with_timeout", _send_after_close_with_timeout, raises(OSError, errno.EBADF)),
    # kernel errors on live sockets
    Case("recv_unconnected", lambda p: p.new().recv(1), raises(OSError, errno.ENOTCONN)),
    Case("send_unconnected", lambda p: p.new().send(b"x"), raises(BrokenPipeError, errno.EPIPE)),
    Case(
        "sendall_empty_unconnected",
        lambda p: p.new().sendall(b""),
        raises(BrokenPipeError, errno.EPIPE),
    ),
    Case(
        "getpeername_unconnected", lambda p: p.new().getpeername(), raises(OSError, errno.ENOTCONN)
    ),
    Case(
        "shutdown_unconnected",
        lambda p: p.new().shutdown(socket.SHUT_RDWR),
        raises(OSError, errno.ENOTCONN),
    ),
    Case("shutdown_bad_how", lambda p: _connected(p).shutdown(7), raises(OSError, errno.EINVAL)),
    Case("bind_twice", _bind_twice, raises(OSError, errno.EINVAL)),
    Case(
        "bind_nonlocal_address",
        lambda p: p.new().bind(("192.0.2.1", 0)),
        raises(OSError, errno.EADDRNOTAVAIL),
    ),
    Case("connect_twice", _connected_twice, raises(OSError, errno.EISCONN)),
    Case(
        "getsockopt_unknown",
        lambda p: p.new().getsockopt(socket.SOL_SOCKET, 12345),
        raises(OSError, errno.ENOPROTOOPT),
    ),
    Case(
        "setsockopt_short_bytes",
        lambda p: p.new().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01"),
        raises(OSError, errno.EINVAL),
    ),
    Case(
        "setsockopt_none_with_optlen",
        lambda p: p.new().setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, None, 4),
        raises(OSError, errno.EFAULT),
    ),
    Case("ctor_closed_fileno", lambda p: p.new(fileno=2**20), raises(OSError, errno.EBADF)),
    Case("ctor_pipe_fileno", _from_pipe_fd, raises(OSError, errno.ENOTSOCK)),
    Case(
        "bind_v6_host_on_v4",
        lambda p: p.new().bind((HOST6, 0)),
        raises(socket.gaierror, socket.EAI_ADDRFAMILY),
    ),
    # values
    Case("getsockname_unbound", lambda p: p.new().getsockname(), returns(("0.0.0.0", 0))),
    Case(
        "getsockname_unbound_v6",
        lambda p: p.new(socket.AF_INET6).getsockname(),
        returns(("::", 0, 0, 0)),
    ),
    Case(
        "bind_empty_host", lambda p: _bind_and_name(p, socket.AF_INET, ""), returns(("0.0.0.0", 2))
    ),
    Case(
        "bind_bytes_host",
        lambda p: _bind_and_name(p, socket.AF_INET, b"127.0.0.1"),
        returns((HOST, 2)),
    ),
    Case(
        "bind_bytearray_host",
        lambda p: _bind_and_name(p, socket.AF_INET, bytearray(b"127.0.0.1")),
        returns((HOST, 2)),
    ),
    Case(
        "bind_localhost_name",
        lambda p: _bind_and_name(p, socket.AF_INET, "localhost"),
        returns((HOST, 2)),
    ),
    Case("listen_negative_backlog", lambda p: _listen_backlog(p, -5), returns(None)),
    Case("listen_unbound", lambda p: p.new().listen(), returns(None)),
    Case(
        "reuseaddr_2", lambda p: _set_get(p, socket.SOL_SOCKET, socket.SO_REUSEADDR, 2), returns(1)
    ),
    Case(
        "reuseaddr_true",
        lambda p: _set_get(p, socket.SOL_SOCKET, socket.SO_REUSEADDR, True),
        returns(1),
    ),
    Case("sndbuf_16k", lambda p: _set_get(p, socket.SOL_SOCKET, socket.SO_SNDBUF, 16384), None),
    Case("rcvbuf_4k", lambda p: _set_get(p, socket.SOL_SOCKET, socket.SO_RCVBUF, 4096), None),
    Case(
        "linger_bytearray",
        lambda p: _set_get(p, socket.SOL_SOCKET, socket.SO_LINGER, bytearray(LINGER_ON), 8),
        returns(LINGER_ON),
    ),
    Case(
        "getsockopt_so_type",
        lambda p: p.new().getsockopt(socket.SOL_SOCKET, socket.SO_TYPE),
        returns(socket.SOCK_STREAM),
    ),
    Case(
        "getsockopt_so_error",
        lambda p: p.new().getsockopt(socket.SOL_SOCKET, socket.SO_ERROR),
        returns(0),
    ),
    Case(
        "dgram_type",
        lambda p: p.new(socket.AF_INET, socket.SOCK_DGRAM).type,
        returns(socket.SOCK_DGRAM),
    ),
    Case(
        "keyword_family", lambda p: p.new(family=socket.AF_INET6).family, returns(socket.AF_INET6)
    ),
    Case(
        "recv_zero_with_timeout",
        lambda p: _recv_zero(p, "timeout"),
        returns((b"", 0)),
    ),
    Case(
        "recv_zero_nonblocking",
        lambda p: _recv_zero(p, "nonblocking"),
        returns((b"", 0)),
    ),
    Case("recv_zero_closed", lambda p: _recv_zero(p, "closed"), returns((b"", 0))),
]


def _case_params(with_impl: bool) -> list:
    params = []
    for case in CASES:
        if not with_impl:
            if case.expect is None or case.expect[0] != "raises" or not case.same_message:
                continue
            params.append(pytest.param(case, id=case.name))
            continue
        params.append(pytest.param(socket.socket, case, id=f"{case.name}-stdlib"))
        params.append(pytest.param(sockwire.Socket, case, id=f"{case.name}-sockwire"))
    return params


@pytest.mark.parametrize(("impl", "case"), _case_params(with_impl=True))
def test_same_outcome(impl, case, make_pool):
    """The call returns the same value, or raises the same exception type with the same
    errno, in both implementations; and that is what the table says the stdlib does."""
    reference = outcome(lambda: case.fn(make_pool(socket.socket)))
    if case.expect is not None:
        assert reference == case.expect, "the stdlib does not behave as the table says"
    assert outcome(lambda: case.fn(make_pool(impl))) == reference


def _message(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except Exception as exc:
        return str(exc)
    raise AssertionError("no exception")


@pytest.mark.parametrize("case", _case_params(with_impl=False))
def test_same_error_message(case, make_pool):
    """sockwire's exception message is the stdlib's, word for word."""
    expected = _message(lambda: case.fn(make_pool(socket.socket)))
    assert _message(lambda: case.fn(make_pool(sockwire.Socket))) == expected


def test_port_overflow_message_names_the_method(pool):
    s = pool.new()
    for method in ("bind", "connect", "connect_ex"):
        with pytest.raises(OverflowError) as info:
            getattr(s, method)((HOST, 65536))
        assert str(info.value) == f"{method}(): port must be 0-65535."


def test_os_error_attributes(pool):
    s = pool.closed()
    with pytest.raises(OSError) as info:
        s.recv(1)
    exc = info.value
    assert exc.args == (errno.EBADF, os.strerror(errno.EBADF))
    assert exc.strerror == os.strerror(errno.EBADF)
    assert str(exc) == f"[Errno {errno.EBADF}] {os.strerror(errno.EBADF)}"


def test_recv_zero_does_not_wait_for_data(pool):
    cli, conn = pool.pair()

    def late_send():
        time.sleep(0.3)
        cli.sendall(b"late")

    sender = Background(late_send)
    t0 = time.monotonic()
    data = conn.recv(0)  # blocking mode: sockwire waits here until the late send
    elapsed = time.monotonic() - t0
    sender.value()
    assert data == b""
    assert elapsed < 0.2


# --------------------------------------------------------------------------------------------
# Blocking calls release the GIL


PEER_SCRIPT = """
import socket, sys, time
port, delay, mode = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if mode == "connect-late":
    time.sleep(delay)
s = socket.create_connection(("127.0.0.1", port), timeout=10)
if mode == "send-late":
    time.sleep(delay)
    s.sendall(b"wake")
s.close()
"""


def _peer_process(port: int, delay: float, mode: str) -> subprocess.Popen:
    """A peer in another process, so that it acts even if this process never releases the
    GIL (the test then fails instead of deadlocking)."""
    return subprocess.Popen([sys.executable, "-c", PEER_SCRIPT, str(port), str(delay), mode])


def _count_while(blocked: Background, start: float, window: float) -> int:
    """Runs Python code on this thread until `start + window` and returns how many loops
    ran. If the blocked call held the GIL, this thread would only get here after the call
    returned, past the window, with a count near zero."""
    time.sleep(0.05)
    count = 0
    while time.monotonic() < start + window:
        count += 1
    assert blocked.is_alive(), "the blocked call returned before its peer acted"
    return count


@pytest.mark.parametrize("timeout", [None, 5.0], ids=["blocking", "timed"])
def test_recv_releases_the_gil(pool, timeout):
    lst = pool.listener()
    lst.settimeout(10)
    peer = _peer_process(lst.getsockname()[1], 0.6, "send-late")
    try:
        conn, _ = lst.accept()
        pool.track(conn)
        conn.settimeout(timeout)
        start = time.monotonic()
        reader = Background(lambda: conn.recv(16))
        count = _count_while(reader, start, 0.3)
        assert reader.value(timeout=5) == b"wake"
        assert count > 10_000, f"the main thread ran only {count} loops"
    finally:
        peer.wait(10)
    assert peer.returncode == 0


def test_accept_releases_the_gil(pool):
    lst = pool.listener()
    peer = _peer_process(lst.getsockname()[1], 0.6, "connect-late")
    try:
        start = time.monotonic()
        acceptor = Background(lst.accept)
        count = _count_while(acceptor, start, 0.3)
        conn, addr = acceptor.value(timeout=5)
        pool.track(conn)
        assert type(conn) is pool.impl and addr == conn.getpeername()
        assert count > 10_000, f"the main thread ran only {count} loops"
    finally:
        peer.wait(10)
    assert peer.returncode == 0


def test_blocked_recv_in_thread_while_main_sends(pool):
    cli, conn = pool.pair()
    reader = Background(lambda: recv_exactly(conn, 6))
    time.sleep(0.05)
    assert reader.is_alive()
    cli.sendall(b"abc")
    cli.sendall(b"def")
    assert reader.value() == b"abcdef"


# --------------------------------------------------------------------------------------------
# Socket.to_stdlib() and Socket.from_stdlib() (sockwire only)


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
