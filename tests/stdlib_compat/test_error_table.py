"""Differential: the error table, one row per call: the same exception type and errno (or the
same value) in both implementations, and the stdlib's message word for word.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from differential import HOST, HOST6, INT_MAX, Pool

import sockwire

pytestmark = pytest.mark.timeout(30)


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
