"""Differential: sending and receiving data, `send`/`sendall`/`recv`/`recv_into` with the buffer
types, sizes and flags they take (test_socket.py's testSendAll and more).
"""

from __future__ import annotations

import array
import select
import socket
import time

import pytest
from differential import Background, recv_exactly, recv_until_eof

pytestmark = pytest.mark.timeout(30)


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
