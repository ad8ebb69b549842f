"""Differential: blocking calls release the GIL."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from differential import Background, recv_exactly

pytestmark = pytest.mark.timeout(30)


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
