"""One thread closes or shuts down what another thread is blocked on.

The stdlib is the reference: `close()` returns at once (it does not wake a blocked call, on
Linux), `shutdown(SHUT_RDWR)` wakes a blocked `recv` (end of stream), `send` (`BrokenPipeError`)
and `accept` (`EINVAL`). sockwire does the same for plain and TLS sockets and for
`Connection`, and does better on one point: a closed socket is never written through again,
even when its fd number already belongs to a new connection.
"""

import errno
import socket
import time

import pytest
from helpers import run_in_thread

import sockwire as sw

BIG = b"x" * (32 << 20)  # far more than loopback socket buffers hold
BIG_FRAMES = sw.PacketFormat("!I", max_body=len(BIG))


def wait_blocked(thread, seconds=0.3):
    """Gives `thread` time to block in its call (a blocked call shows no other sign)."""
    time.sleep(seconds)
    assert thread.is_alive(), "the call was expected to block"


def connect_pair(listener, timeout=None):
    client = sw.create_client(listener.getsockname(), timeout=10)
    client.settimeout(timeout)
    server = sw.accept_client_connect(listener)
    return client, server


def test_a_closed_socket_is_never_written_through_again(listener):
    """A timed sendall blocked on a full buffer, its socket closed by another thread, the fd
    number then free for the next accept: the rest of the data must not go to the new
    connection (CPython re-reads the fd between polls; sockwire keeps the number until the
    call returns, and the call fails with EBADF)."""
    for _ in range(5):
        old_client, old_server = connect_pair(listener, timeout=5)
        t, outcome = run_in_thread(old_client.sendall, BIG)
        wait_blocked(t)
        old_client.close()
        new_client, new_server = connect_pair(listener)
        # The old peer starts reading: the old socket becomes writable, the sendall wakes.
        old_server.settimeout(0.2)
        try:
            while old_server.recv(1 << 20):
                pass
        except TimeoutError:
            pass
        t.join(10)
        assert not t.is_alive()
        assert isinstance(outcome.get("error"), OSError)
        assert outcome["error"].errno == errno.EBADF
        new_server.settimeout(0.3)
        with pytest.raises(TimeoutError):
            new_server.recv(1)  # nothing of the old data reached the new connection
        for s in (old_server, new_client, new_server):
            s.close()


def test_close_from_another_thread_returns_at_once_and_a_timed_call_fails_with_ebadf(listener):
    client, server = connect_pair(listener, timeout=1.0)
    t, outcome = run_in_thread(client.recv, 16)
    wait_blocked(t, 0.2)
    start = time.monotonic()
    client.close()
    assert time.monotonic() - start < 0.5
    assert client.fileno() == -1
    t.join(5)
    assert outcome["error"].errno == errno.EBADF  # as CPython: EBADF once the wait ends
    server.close()


def test_shutdown_from_another_thread_wakes_a_blocked_sendall(listener):
    client, server = connect_pair(listener)
    t, outcome = run_in_thread(client.sendall, BIG)
    wait_blocked(t)
    client.shutdown(sw.SHUT_RDWR)
    t.join(5)
    assert isinstance(outcome["error"], BrokenPipeError)
    client.close()
    server.close()


def test_shutdown_from_another_thread_wakes_a_blocked_tls_sendall(tls_pair):
    client, _server = tls_pair
    client.settimeout(None)
    t, outcome = run_in_thread(client.sendall, BIG)
    wait_blocked(t)
    start = time.monotonic()
    client.shutdown(sw.SHUT_RDWR)
    assert time.monotonic() - start < 1.0
    t.join(5)
    assert isinstance(outcome["error"], (BrokenPipeError, ConnectionResetError))


def test_close_from_another_thread_does_not_wait_for_a_blocked_tls_sendall(tls_pair):
    client, _server = tls_pair
    client.settimeout(3.0)
    t, outcome = run_in_thread(client.sendall, BIG)
    wait_blocked(t)
    start = time.monotonic()
    client.close()
    assert time.monotonic() - start < 1.0
    t.join(10)
    assert isinstance(outcome["error"], OSError)  # EBADF when its wait ends, as a plain socket


@pytest.mark.parametrize("how", ["close", "shutdown_write", "shutdown"])
def test_connection_close_and_shutdown_do_not_wait_for_a_blocked_tls_send(tls_pair, how):
    client, _server = tls_pair
    client.settimeout(3.0)
    conn = sw.Connection(client, BIG_FRAMES)
    t, outcome = run_in_thread(conn.send, BIG)
    wait_blocked(t)
    start = time.monotonic()
    if how == "shutdown":
        conn.shutdown(sw.SHUT_RDWR)
    else:
        getattr(conn, how)()
    assert time.monotonic() - start < 1.0
    t.join(10)
    assert not t.is_alive()
    assert isinstance(outcome["error"], OSError)


def test_connection_shutdown_wakes_a_blocked_recv(listener):
    client, server = connect_pair(listener)
    conn = sw.Connection(client)
    t, outcome = run_in_thread(conn.recv)
    wait_blocked(t, 0.2)
    conn.shutdown(sw.SHUT_RDWR)
    t.join(5)
    assert isinstance(outcome["error"], sw.ConnectionClosed)
    conn.close()
    server.close()


def test_listener_shutdown_wakes_a_blocked_accept(listener):
    t, outcome = run_in_thread(sw.accept_client_connect, listener)
    wait_blocked(t, 0.2)
    listener.shutdown(sw.SHUT_RDWR)
    t.join(5)
    assert isinstance(outcome["error"], OSError)
    assert outcome["error"].errno == errno.EINVAL


def test_stdlib_listener_behaves_the_same():
    """The reference for the test above."""
    srv = socket.create_server(("127.0.0.1", 0))
    t, outcome = run_in_thread(srv.accept)
    wait_blocked(t, 0.2)
    srv.shutdown(socket.SHUT_RDWR)
    t.join(5)
    assert outcome["error"].errno == errno.EINVAL
    srv.close()
