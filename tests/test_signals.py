"""Blocking calls and signals: handlers run while a call waits, as with the stdlib.

A signal interrupts the system call (EINTR); sockwire then runs the Python handlers and, if
none raised, resumes the call with its original deadline (CPython's PEP 475 behaviour).
"""

import signal
import threading
import time

import pytest

import sockwire as sw


class Interrupted(Exception):
    pass


@pytest.fixture
def pair():
    with sw.server_listener(("127.0.0.1", 0), 1) as lst:
        client = sw.create_client(lst.getsockname(), timeout=10)
        conn = sw.accept_client_connect(lst)
        yield client, conn
        client.close()
        conn.close()


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


def test_handler_runs_and_recv_resumes(pair, usr1):
    client, conn = pair
    calls, _handler, later = usr1
    client.settimeout(None)
    later(0.1)
    threading.Timer(0.4, conn.sendall, args=(b"late",)).start()
    assert client.recv(16) == b"late"
    assert len(calls) == 1


def test_exception_from_handler_interrupts_recv(pair, usr1):
    client, _conn = pair
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


def test_timed_recv_keeps_its_deadline_across_signals(pair, usr1):
    client, _conn = pair
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
