"""What the differential tests share: `sockwire.Socket` against the stdlib's `socket.socket`.

Every behaviour in this folder runs once with each implementation (test ids `stdlib` and
`sockwire`) on real loopback sockets, and the assertions are the same for both, so a passing
pair shows the two behave identically. Where the expected value is platform-dependent the test
computes it live with the stdlib and compares. The socket behaviours ported here follow the
intent of CPython's own `test_socket.py` and `test_timeout.py`.

Beyond exception types and errno values, error messages are compared too (the stdlib's text
is what users search for).

The fixtures (`impl`, `pool`, `make_pool`, `default_timeout`) are in this folder's conftest.py;
this module holds the constants and helpers the test modules import. The folder has no
`__init__.py`: pytest's default import mode puts it on `sys.path` and imports each module by
its file name, so every file name here must differ from those elsewhere under tests/.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

import sockwire

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
