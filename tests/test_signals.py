"""Blocking calls and signals: handlers run while a call waits, as with the stdlib.

A signal interrupts the system call (EINTR); sockwire then runs the Python handlers and, if
none raised, resumes the call with its original deadline (CPython's PEP 475 behaviour).
"""

import signal
import threading
import time

import pytest
from helpers import run_in_thread

import sockwire as sw


class Interrupted(Exception):
    pass


@pytest.fixture
def usr1():
    """Installs a SIGUSR1 handler; yields a function that signals the main thread after a delay."""
    calls = []
    handler = {"fn": lambda: calls.append(time.monotonic())}
    old = signal.signal(signal.SIGUSR1, lambda *_: handler["fn"]())
    main = threading.main_thread().ident
    timers = []

    def later(delay):
        t = threading.Timer(delay, signal.pthread_kill, args=(main, signal.SIGUSR1))
        timers.append(t)
        t.start()

    yield calls, handler, later
    for t in timers:
        t.cancel()
    signal.signal(signal.SIGUSR1, old)


def test_handler_runs_and_recv_resumes(socket_pair, usr1):
    client, conn = socket_pair
    calls, _handler, later = usr1
    client.settimeout(None)
    later(0.1)
    threading.Timer(0.4, conn.sendall, args=(b"late",)).start()
    assert client.recv(16) == b"late"
    assert len(calls) == 1


def test_exception_from_handler_interrupts_recv(socket_pair, usr1):
    client, _conn = socket_pair
    _calls, handler, later = usr1

    def boom():
        raise Interrupted

    handler["fn"] = boom
    client.settimeout(None)
    later(0.1)
    start = time.monotonic()
    with pytest.raises(Interrupted):
        client.recv(16)
    assert time.monotonic() - start < 5


def test_exception_from_handler_interrupts_accept(usr1):
    _calls, handler, later = usr1

    def boom():
        raise Interrupted

    handler["fn"] = boom
    with sw.server_listener(("127.0.0.1", 0), 1) as lst:
        later(0.1)
        with pytest.raises(Interrupted):
            sw.accept_client_connect(lst)


def test_timed_recv_keeps_its_deadline_across_signals(socket_pair, usr1):
    client, _conn = socket_pair
    calls, _handler, later = usr1
    client.settimeout(0.5)
    for i in range(1, 8):
        later(0.1 * i)  # a signal every 100 ms must not restart the 0.5 s timeout
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        client.recv(16)
    elapsed = time.monotonic() - start
    assert len(calls) >= 3
    assert 0.45 <= elapsed < 2.0, elapsed


# Ctrl-C (here: a handler that raises) must reach every call that can block. A blocked send is
# the hard case: a signal during a blocking send that already moved some bytes makes the send
# return their count, not EINTR, and CPython runs the handlers between sends.

BIG = b"x" * (32 << 20)
BIG_FRAMES = sw.PacketFormat("!I", max_body=len(BIG))


@pytest.fixture
def raising_usr1(usr1):
    _calls, handler, later = usr1

    def boom():
        raise Interrupted

    handler["fn"] = boom
    return later


def interrupted_within(seconds, fn, *args):
    start = time.monotonic()
    with pytest.raises(Interrupted):
        fn(*args)
    assert time.monotonic() - start < seconds


def test_exception_from_handler_interrupts_a_blocked_sendall(socket_pair, raising_usr1):
    client, _conn = socket_pair
    client.settimeout(None)
    raising_usr1(0.3)
    interrupted_within(5, client.sendall, BIG)


def test_exception_from_handler_interrupts_a_blocked_connection_send(socket_pair, raising_usr1):
    client, _conn = socket_pair
    client.settimeout(None)
    raising_usr1(0.3)
    interrupted_within(5, sw.Connection(client, BIG_FRAMES).send, BIG)


def test_exception_from_handler_interrupts_a_blocked_tls_sendall(tls_pair, raising_usr1):
    client, _server = tls_pair
    client.settimeout(None)
    raising_usr1(0.3)
    interrupted_within(5, client.sendall, BIG)


def test_exception_from_handler_interrupts_a_wait_for_the_write_lock(socket_pair, raising_usr1):
    client, _conn = socket_pair
    client.settimeout(None)
    conn = sw.Connection(client, BIG_FRAMES)
    sender, _ = run_in_thread(conn.send, BIG)  # holds the write lock; the peer does not read
    time.sleep(0.3)
    raising_usr1(0.2)
    interrupted_within(5, conn.send, b"waits for the lock")
    client.shutdown(sw.SHUT_RDWR)  # frees the sender
    sender.join(5)


def test_exception_from_handler_interrupts_a_second_tls_reader(tls_pair, raising_usr1):
    client, _server = tls_pair
    client.settimeout(None)
    reader, _ = run_in_thread(client.recv, 16)  # holds the read lock; the peer sends nothing
    time.sleep(0.3)
    raising_usr1(0.2)
    interrupted_within(5, client.recv, 16)
    client.shutdown(sw.SHUT_RDWR)
    reader.join(5)


def test_a_handler_may_send_on_the_connection_whose_send_it_interrupted(socket_pair, usr1):
    """The stdlib's socket completes both sends (interleaving their bytes); a Connection
    completes both and keeps both frames whole: the interrupted frame first."""
    client, server = socket_pair
    client.settimeout(None)
    conn = sw.Connection(client, BIG_FRAMES)
    _calls, handler, later = usr1
    handler["fn"] = lambda: conn.send(b"from the handler")
    later(0.3)
    # The peer starts reading only after the signal, so the send is blocked when it comes.
    received = []

    def read_all():
        time.sleep(0.8)
        with sw.Connection(server, BIG_FRAMES) as peer:
            server.settimeout(10)
            received.extend(p.body for p in (peer.recv(), peer.recv()))

    reader = threading.Thread(target=read_all)
    reader.start()
    conn.send(BIG)
    reader.join(20)
    assert [len(b) for b in received] == [len(BIG), len(b"from the handler")]
    assert received[1] == b"from the handler"


def test_a_request_waiting_for_its_reply_runs_handlers_and_can_be_interrupted(
    connection_pair, usr1
):
    # Connection.request sends and waits for the reply in one call: a handler runs while it
    # waits and the wait goes on, and a handler that raises ends it with its exception.
    client, server = connection_pair(sw.PacketFormat())
    calls, handler, later = usr1
    later(0.1)
    threading.Timer(0.4, lambda: server.send(server.recv().body.upper())).start()
    assert client.request(b"ping", timeout=5).body == b"PING"
    assert len(calls) == 1

    def boom():
        raise Interrupted

    handler["fn"] = boom
    later(0.1)
    start = time.monotonic()
    with pytest.raises(Interrupted):
        client.request(b"never answered", timeout=5)
    assert time.monotonic() - start < 2
