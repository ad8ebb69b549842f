"""Differential: `shutdown`, `close`, `detach` and the context manager, and what the peer sees:
EOF, a reset, a broken pipe (test_socket.py's testShutdown, testDetach, TCPCloserTest).
"""

from __future__ import annotations

import errno
import select
import socket
import struct

import pytest
from differential import INT_MAX, MSG, UINT_MAX, Background, recv_exactly

pytestmark = pytest.mark.timeout(30)


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


def test_context_manager_closes(impl):
    with impl() as s:
        assert type(s) is impl
        assert s.fileno() >= 0
    assert s.fileno() == -1
    with pytest.raises(KeyError), impl() as s2:
        raise KeyError("propagates")
    assert s2.fileno() == -1
    assert impl().__exit__(None, None, None) is None
