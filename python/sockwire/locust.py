"""Locust users that speak any wire format (``pip install "sockwire[locust]"``).

``SockwireUser`` is an abstract Locust ``User`` whose ``self.client`` sends and receives
packets of the class's ``format`` (and ``tls``) to ``host = "tcp://HOST:PORT"``. Every
``request`` fires Locust's ``request`` event (request_type ``"sockwire"``), so Locust's
statistics, web UI, CSV and distributed mode (``--master`` / ``--worker``) work unchanged.

The socket, the framing and the codecs run on sockwire's runtime threads; a user waiting for a
reply parks its greenlet until the one eventfd of the process, watched by gevent's hub, says
its reply is there, so every other user, and Locust's own greenlets, keep running meanwhile.
A blocking call into compiled code would freeze the whole worker instead (gevent only switches
greenlets at its own waits).
"""

from __future__ import annotations

import itertools
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent  # type: ignore[import-untyped]
from gevent.hub import Waiter  # type: ignore[import-untyped]
from locust import User
from locust.env import Environment
from locust.exception import CatchResponseError

from sockwire._core import Packet, PacketFormat, TlsConfig, _AsyncConn, _Bell

__all__ = ["SockwireClient", "SockwireUser"]


class _Doorbell:
    """One per gevent hub: the bell every client of this process rings (an eventfd the hub
    watches with one watcher), and the users waiting for news, woken from the hub's callback
    for that watcher: one hub wake-up and one eventfd read for every reply ready by then."""

    def __init__(self) -> None:
        self.hub = gevent.get_hub()
        self.bell = _Bell()
        # token -> (the waiting greenlet's Waiter, its deadline or None)
        self.waiting: dict[int, tuple[Waiter, float | None]] = {}
        self.tokens = itertools.count(1)
        self.watcher = self.hub.loop.io(self.bell.fileno(), 1)
        self.watcher.start(self._ready)
        self.sweep: Any = None  # the timer that expires long waits, while there are any

    def _ready(self) -> None:
        """In the hub: wake the user of every token rung."""
        waiting = self.waiting
        for token in self.bell.take():
            entry = waiting.pop(token, None)
            if entry is not None:
                entry[0].switch(True)

    def wait(self, token: int, deadline: float | None) -> bool:
        """Blocks this greenlet (the others run) until `token` rings; False at the deadline."""
        waiter = Waiter(self.hub)
        self.waiting[token] = (waiter, deadline)
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left < 1.0:
            # short: a timer of its own, to the millisecond
            timer = self.hub.loop.timer(max(left, 0.0))
            timer.start(self._expire, token, waiter)
            try:
                return bool(waiter.get())
            finally:
                timer.close()
                self._forget(token, waiter)
        if deadline is not None and self.sweep is None:
            self.sweep = self.hub.loop.timer(0.1, 0.1)
            self.sweep.start(self._sweep)
        try:
            return bool(waiter.get())
        finally:
            self._forget(token, waiter)

    def _forget(self, token: int, waiter: Waiter) -> None:
        entry = self.waiting.get(token)
        if entry is not None and entry[0] is waiter:
            del self.waiting[token]

    def _expire(self, token: int, waiter: Waiter) -> None:
        entry = self.waiting.get(token)
        if entry is not None and entry[0] is waiter:
            del self.waiting[token]
            waiter.switch(False)

    def _sweep(self) -> None:
        """Every 100 ms while long waits exist: expire those past their deadline."""
        # NOTE: a gevent timer per wait (with the default 10 s timeout, every request) costs a
        # watcher start and stop per request; long deadlines need no millisecond precision.
        now = time.monotonic()
        due = [t for t, (_, d) in self.waiting.items() if d is not None and d <= now]
        for token in due:
            waiter, _ = self.waiting.pop(token)
            waiter.switch(False)
        if not any(d is not None for _, d in self.waiting.values()):
            self.sweep.stop()
            self.sweep = None


# NOTE: one bell per process, whose hub callback switches straight into each user with news,
# replaced a bell per user waited on with gevent.socket.wait_read (a watcher made per wait, an
# eventfd read per reply). Both sustained ~28k requests/s in one Locust worker (50 users, an
# echo server on the other CPU): the profile put half the process in the write of the request
# and most of the rest in Locust's own statistics. Kept for the fewer fds and syscalls.
_doorbells: dict[int, _Doorbell] = {}


def _doorbell() -> _Doorbell:
    hub = id(gevent.get_hub())
    doorbell = _doorbells.get(hub)
    if doorbell is None:
        doorbell = _doorbells[hub] = _Doorbell()
    return doorbell


def parse_host(host: str | None) -> tuple[str, int]:
    """``tcp://HOST:PORT`` (or ``HOST:PORT``) as ``(host, port)``."""
    if not host:
        raise ValueError('a SockwireUser needs host = "tcp://HOST:PORT" (or --host)')
    url = urllib.parse.urlsplit(host if "://" in host else f"tcp://{host}")
    if url.scheme != "tcp" or url.hostname is None or url.port is None:
        raise ValueError(f'host must be "tcp://HOST:PORT", not {host!r}')
    return url.hostname, url.port


class RequestContext:
    """What ``request(..., catch_response=True)`` yields: ``reply`` (the Packet, or None when
    the request failed: then ``error`` says why), and ``success()`` / ``failure(msg)`` to decide
    how the request is reported, as with Locust's HTTP client."""

    __slots__ = ("_verdict", "error", "reply")

    def __init__(self, reply: Packet | None, error: BaseException | None) -> None:
        self.reply = reply
        self.error = error
        self._verdict: BaseException | bool | None = None  # None: not decided

    def success(self) -> None:
        self._verdict = True

    def failure(self, message: str | BaseException) -> None:
        self._verdict = (
            message if isinstance(message, BaseException) else CatchResponseError(message)
        )


class SockwireClient:
    """One connection of a Locust user, opened on first use and again after an error (a timed
    out request, a server that closed): ``request``, ``send``, ``recv``, ``close``.

    With ``correlate`` (the name of a header field), ``request`` numbers each request in that
    field and takes as its reply the packet that carries the same number; packets that come
    first (a server's pushes) are kept, in order, for ``recv``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        format: PacketFormat | None,
        tls: TlsConfig | None,
        timeout: float | None,
        environment: Environment,
        correlate: str | None = None,
    ) -> None:
        self.address = (host, port)
        self.correlate = correlate
        self._number = 0
        self._kept: deque[Packet] = deque()
        self.format = format if format is not None else PacketFormat()
        self.tls = tls
        self.timeout = timeout
        self._events = environment.events
        self._doorbell = _doorbell()
        self._token = next(self._doorbell.tokens)
        self._core: _AsyncConn | None = None

    # -- waiting, the gevent way ------------------------------------------------------------

    def _wait(self, deadline: float | None) -> bool:
        """Waits (yielding to other greenlets) for news from the connection; False once the
        deadline has passed."""
        if deadline is not None and deadline <= time.monotonic():
            return False
        return self._doorbell.wait(self._token, deadline)

    def _deadline(self, timeout: float | None) -> float | None:
        seconds = self.timeout if timeout is None else timeout
        return None if seconds is None else time.monotonic() + seconds

    def _connection(self) -> _AsyncConn:
        if self._core is not None:
            return self._core
        bell = self._doorbell.bell
        core = _AsyncConn(self.address, self.format, self.timeout, self.tls, bell, self._token)
        while core.connected() is None:  # raises the connect's error
            self._wait(None)  # the runtime bounds the connect by the timeout
        self._core = core
        return core

    def _drop(self) -> None:
        if self._core is not None:
            self._core.close()
            self._core = None

    # -- the calls ----------------------------------------------------------------------------

    def send(self, body: bytes, msg_id: int = 0, **fields: Any) -> None:
        """Queue one packet for sending (it is written by the runtime)."""
        core = self._connection()
        deadline = self._deadline(None)
        while not core.has_room():
            if not self._wait(deadline) and not core.has_room():
                self._drop()
                raise TimeoutError("timed out")
        core.send(body, msg_id, **fields)

    def recv(self, timeout: float | None = None) -> Packet:
        """The next packet (``timeout``: the client's by default). ``TimeoutError`` when it
        expires (the connection is then dropped: a late reply could not be matched);
        ``ConnectionClosed`` at the peer's close."""
        if self._kept:
            return self._kept.popleft()
        return self._next(timeout)

    def _next(self, timeout: float | None) -> Packet:
        core = self._connection()
        deadline = self._deadline(timeout)
        try:
            while True:
                packet = core.try_recv()
                if packet is not None:
                    return packet
                if not self._wait(deadline):
                    packet = core.try_recv()
                    if packet is not None:
                        return packet
                    raise TimeoutError("timed out")
        except Exception:
            self._drop()  # the next call reconnects
            raise

    def request(
        self,
        body: bytes,
        msg_id: int = 0,
        *,
        name: str | None = None,
        timeout: float | None = None,
        catch_response: bool = False,
        **fields: Any,
    ) -> Any:
        """Send a packet and return the reply, reporting the round trip to Locust (request_type
        ``"sockwire"``, name ``name`` or ``"msg <msg_id>"``, response time in ms, the reply's
        body length). A failed request is reported with its exception, which is then raised
        (Locust counts the failure and logs the exception; the next request reconnects).
        With ``catch_response=True`` it returns a context manager yielding a
        :class:`RequestContext`: the block decides with ``success()`` / ``failure(msg)``."""
        started = time.perf_counter()
        reply: Packet | None = None
        error: BaseException | None = None
        try:
            if self.correlate is None:
                self.send(body, msg_id, **fields)
                reply = self.recv(timeout)
            else:
                reply = self._correlated(body, msg_id, timeout, fields)
        except Exception as exc:
            error = exc
        elapsed_ms = (time.perf_counter() - started) * 1000
        name = name if name is not None else f"msg {msg_id}"
        if catch_response:
            return self._caught(name, elapsed_ms, reply, error)
        self._fire(name, elapsed_ms, reply, error)
        if error is not None:
            raise error
        return reply

    def _correlated(
        self, body: bytes, msg_id: int, timeout: float | None, fields: dict[str, Any]
    ) -> Packet:
        field = self.correlate
        assert field is not None
        self._number = number = (self._number + 1) % 65536  # fits any integer field
        self.send(body, msg_id, **{**fields, field: number})
        deadline = self._deadline(timeout)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            packet = self._next(left)
            if packet.header.get(field) == number:
                return packet
            self._kept.append(packet)  # not the reply: kept for recv()

    @contextmanager
    def _caught(
        self, name: str, elapsed_ms: float, reply: Packet | None, error: BaseException | None
    ) -> Iterator[RequestContext]:
        context = RequestContext(reply, error)
        try:
            yield context
        except Exception as exc:  # the block raised: a failure, and the exception goes on
            self._fire(name, elapsed_ms, reply, exc)
            raise
        verdict = context._verdict
        if verdict is True:
            self._fire(name, elapsed_ms, reply, None)
        elif isinstance(verdict, BaseException):
            self._fire(name, elapsed_ms, reply, verdict)
        else:
            self._fire(name, elapsed_ms, reply, error)

    def _fire(
        self, name: str, elapsed_ms: float, reply: Packet | None, error: BaseException | None
    ) -> None:
        fire: Any = self._events.request.fire  # (untyped in Locust)
        fire(
            request_type="sockwire",
            name=name,
            response_time=elapsed_ms,
            response_length=0 if reply is None else len(reply.body),
            exception=error,
            context={},
        )

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        self._drop()
        self._kept.clear()


class SockwireUser(User):
    """A Locust user speaking ``format`` (a ``PacketFormat``; the default ``PacketFormat()``)
    over TCP, or TLS with ``tls`` (a ``TlsConfig.client``), to ``host = "tcp://HOST:PORT"``
    (or Locust's ``--host``). ``timeout`` bounds the connect and each reply (seconds; None:
    no bound). ``correlate`` names a header field that matches replies to requests (see
    :class:`SockwireClient`). ``self.client`` is a :class:`SockwireClient`."""

    abstract = True
    format: PacketFormat | None = None
    tls: TlsConfig | None = None
    timeout: float | None = 10.0
    correlate: str | None = None

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        host, port = parse_host(self.host)
        self.client = SockwireClient(
            host,
            port,
            format=self.format,
            tls=self.tls,
            timeout=self.timeout,
            environment=environment,
            correlate=self.correlate,
        )

    def on_stop(self) -> None:
        self.client.close()
