"""sockwire for asyncio: packet connections that never block the event loop.

``await sockwire.aio.connect(addr, format)`` returns an :class:`AsyncConnection` with the sync
``Connection``'s methods as coroutines. The socket, the framing, the codecs and TLS run on
sockwire's runtime threads; the loop only queues frames and takes packets. When a connection
has news (a packet, the end of the stream, room to send), its runtime thread adds it to the
loop's list and, if the list was empty, writes one eventfd that the loop watches: one wake-up
of the loop delivers every result ready by then, and no runtime thread ever takes the GIL.

``await gateway.serve()`` runs a ``Gateway``'s handlers on the running loop, and ``async def``
handlers work on a gateway started with ``start()`` too (each handler thread then runs a loop):
see ``_serve`` and ``_run_handler_loop`` below.

Works on the default asyncio loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import itertools
import math
import os
import types
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from sockwire._core import (
    ConnectionClosed,
    Gateway,
    Packet,
    PacketFormat,
    TlsConfig,
    _AsyncConn,
    _Bell,
    _HandlerLoop,
)
from sockwire._swarm import Report, _Display, start_swarm

__all__ = ["AsyncConnection", "connect", "swarm"]


class _Bridge:
    """One per event loop: the bell its connections ring, and the futures waiting on them."""

    __slots__ = ("__weakref__", "bell", "waiters")
    bell: _Bell
    waiters: dict[int, list[asyncio.Future[bool | None]]]

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.bell = _Bell()
        self.waiters = {}  # token -> futures waiting for that connection's next news
        loop.add_reader(self.bell.fileno(), self.bell.wake, self.waiters)


# Keyed weakly: a loop that is closed and dropped takes its bridge (and its eventfd) with it.
_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bridge] = (
    weakref.WeakKeyDictionary()
)
_tokens = itertools.count(1)
_UNSET: Any = object()


def _bridge_of(loop: asyncio.AbstractEventLoop) -> _Bridge:
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _bridges[loop] = _Bridge(loop)
    return bridge


def _seconds(timeout: float | None) -> float | None:
    """A timeout as ``socket.settimeout`` takes it: None, or seconds >= 0."""
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"timeout must be a number or None, not {type(timeout).__name__}")
    seconds = float(timeout)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError("Timeout value out of range")
    return seconds


def _closed_error() -> OSError:
    return OSError(errno.EBADF, os.strerror(errno.EBADF))


class AsyncConnection:
    """Packets over a TCP (or TLS) connection, from asyncio: what ``sockwire.Connection`` does,
    as coroutines. Made by :func:`connect`.

    ``recv`` can be cancelled (directly, by ``asyncio.wait_for`` or ``asyncio.timeout``) without
    losing a packet: the next ``recv`` returns it. A ``send`` writes its frames whole or, when
    cancelled while it waits for room, not at all: the peer never sees half a frame. Several
    tasks may send at once; several may receive, each taking the next packet in turn.
    """

    __slots__ = (
        "__weakref__",
        "_bridge",
        "_closed",
        "_core",
        "_loop",
        "_receivers",
        "_timed",
        "_timeout",
        "_timer",
        "_timer_at",
        "_token",
    )
    _core: _AsyncConn
    _bridge: _Bridge
    _loop: asyncio.AbstractEventLoop
    _token: int
    _timeout: float | None
    _closed: bool
    # Tasks waiting to receive, in the order they asked: the first takes the next packet.
    _receivers: collections.deque[object]
    # The waits with a deadline, and one loop timer at the earliest (see _expire_at).
    _timed: list[tuple[float, asyncio.Future[bool | None]]]
    _timer: asyncio.TimerHandle | None
    _timer_at: float

    def __init__(self) -> None:
        raise TypeError("use 'await sockwire.aio.connect(...)' to make an AsyncConnection")

    @classmethod
    def _new(
        cls,
        core: _AsyncConn,
        bridge: _Bridge,
        loop: asyncio.AbstractEventLoop,
        token: int,
        timeout: float | None,
    ) -> AsyncConnection:
        self = object.__new__(cls)
        self._core = core
        self._bridge = bridge
        self._loop = loop
        self._token = token
        self._timeout = timeout
        self._closed = False
        self._receivers = collections.deque()
        self._timed = []
        self._timer = None
        self._timer_at = math.inf
        return self

    @property
    def format(self) -> PacketFormat:
        """The packet format."""
        return self._core.format

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def _waiter(self) -> asyncio.Future[bool | None]:
        """A future the bell resolves (with None) at this connection's next news."""
        future: asyncio.Future[bool | None] = self._loop.create_future()
        waiters = self._bridge.waiters
        listed = waiters.get(self._token)
        if listed is None:
            waiters[self._token] = [future]
        else:
            listed.append(future)
        return future

    def _unwait(self, future: asyncio.Future[bool | None]) -> None:
        """``future`` (expired or cancelled) no longer waits (a list the bell took is gone)."""
        listed = self._bridge.waiters.get(self._token)
        if listed is not None and future in listed:
            listed.remove(future)

    def _expire_at(self, entry: tuple[float, asyncio.Future[bool | None]]) -> None:
        """Resolves the future of ``entry`` with False at its deadline (loop time), unless it is
        done by then or taken off ``_timed`` first."""
        # NOTE: one loop timer per wait (call_at, then cancel) cost 2 us of the client's CPU per
        # request (7.4-7.9 us against 5.4, 100 connections on uvloop): a TimerHandle, two heap
        # operations and a cancelled handle for the loop to drop. Deadlines of one connection
        # mostly move forward (request after request, each `timeout` from its start), so one
        # timer set at the earliest deadline serves them all: when it fires, it expires what is
        # due and sets itself for the next deadline.
        self._timed.append(entry)
        deadline = entry[0]
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now = self._loop.time()
        waiting = []
        for entry in self._timed:
            deadline, future = entry
            if future.done():
                continue
            if deadline <= now:
                future.set_result(False)
            else:
                waiting.append(entry)
        self._timed = waiting
        if waiting:
            deadline = min(deadline for deadline, _ in waiting)
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_at = deadline

    async def _wait(self, deadline: float | None) -> bool:
        """Waits for this connection's next news; False if ``deadline`` (loop time) came
        first."""
        future = self._waiter()
        if deadline is None:
            try:
                await future
            except BaseException:
                self._unwait(future)
                raise
            return True
        entry = (deadline, future)
        self._expire_at(entry)
        try:
            woken = await future
        except BaseException:
            self._unwait(future)
            raise
        finally:
            try:
                self._timed.remove(entry)
            except ValueError:
                pass  # the timer took it
        if woken is False:
            self._unwait(future)
            return False
        return True

    def _take(self) -> Packet | None:
        """A packet for a receiver that found nobody waiting before it, if one is there."""
        return None if self._receivers else self._core.try_recv()

    async def _next_packet(self, deadline: float | None) -> Packet:
        """The next packet, once ``_take`` found none: receivers wait in line, and only the
        first takes a packet. (Each taking whatever was there when it woke gave a request
        sent later the reply to an earlier one: news wakes every waiting task, and one that
        had to wait again went to the back.)"""
        core = self._core
        line = self._receivers
        turn = object()
        line.append(turn)
        try:
            while True:
                woken = await self._wait(deadline)
                if self._closed:
                    raise _closed_error()
                if line[0] is turn:
                    packet = core.try_recv()
                    if packet is not None:
                        return packet
                if not woken:
                    raise TimeoutError("timed out")
        finally:
            first = line[0] is turn
            line.remove(turn)
            if first and line:
                # The next in line may find its packet already there: no news would wake it.
                self._wake_waiters()

    def _wake_waiters(self) -> None:
        """Wakes every task waiting on this connection, as its bell does."""
        for future in self._bridge.waiters.pop(self._token, ()):
            if not future.done():
                future.set_result(None)

    def _deadline(self, timeout: float | None) -> float | None:
        seconds = self._timeout if timeout is _UNSET else _seconds(timeout)
        return None if seconds is None else self._loop.time() + seconds

    async def send(
        self, body: bytes | bytearray | memoryview, msg_id: int = 0, **fields: Any
    ) -> None:
        """Send one packet. Returns once it is queued for the runtime to write; waits first
        (at most the connection's timeout) while a megabyte is queued and not yet written."""
        if self._closed:
            raise _closed_error()
        core = self._core
        if not core.has_room():
            await self._wait_for_room()
        core.send(body, msg_id, **fields)

    async def send_many(
        self,
        items: Iterable[bytes | bytearray | memoryview | Packet],
        msg_id: int = 0,
        **fields: Any,
    ) -> None:
        """Send many packets with one write: bodies (with this call's header values) or
        ``Packet`` objects."""
        if self._closed:
            raise _closed_error()
        core = self._core
        if not core.has_room():
            await self._wait_for_room()
        core.send_many(items, msg_id, **fields)

    async def _wait_for_room(self) -> None:
        deadline = self._deadline(_UNSET)
        core = self._core
        while not core.has_room():
            if self._closed:
                raise _closed_error()
            if not await self._wait(deadline):
                if core.has_room():
                    return
                raise TimeoutError("timed out")

    async def recv(self, timeout: float | None = _UNSET) -> Packet:
        """The next packet. ``timeout`` bounds this call (default: the connection's timeout);
        ``TimeoutError`` when it expires. ``ConnectionClosed`` at the end of the stream between
        frames, ``IncompleteFrame`` inside one; a bad frame raises its error once the packets
        before it were received."""
        if self._closed:
            raise _closed_error()
        packet = self._take()
        if packet is not None:
            return packet
        return await self._next_packet(self._deadline(timeout))

    async def request(
        self,
        body: bytes | bytearray | memoryview,
        msg_id: int = 0,
        timeout: float | None = _UNSET,
        **fields: Any,
    ) -> Packet:
        """Send a packet and return the next one received (``timeout`` as for ``recv``).
        Requests from several tasks get their replies in the order they were sent, from a
        server that answers in order."""
        # send() and recv() written out: one coroutine fewer per request.
        if self._closed:
            raise _closed_error()
        core = self._core
        if not core.has_room():
            await self._wait_for_room()
        core.send(body, msg_id, **fields)
        packet = self._take()
        if packet is not None:
            return packet
        return await self._next_packet(self._deadline(timeout))

    async def close(self) -> None:
        """Write what is queued (for at most 5 seconds to a peer that does not read), close the
        connection (``close_notify`` first over TLS) and return once it is closed. Calling it
        again does nothing."""
        self._closed = True
        core = self._core
        core.close()
        while not core.finished():
            await self._wait(None)

    def __aiter__(self) -> AsyncConnection:
        return self

    async def __anext__(self) -> Packet:
        try:
            return await self.recv(None)
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *_args: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncConnection {state} {self._core.format!r}>"


async def connect(
    addr: tuple[str, int] | tuple[str, int, int, int],
    format: PacketFormat | None = None,
    *,
    timeout: float | None = None,
    tls: TlsConfig | None = None,
) -> AsyncConnection:
    """Connect to ``addr`` (each address the host resolves to in turn, then the TLS handshake
    when ``tls`` is given) and return an :class:`AsyncConnection` speaking ``format``
    (``PacketFormat()`` by default). ``timeout`` bounds the connect and handshake, and is the
    default for ``recv``, ``request`` and a ``send`` that waits for room; None waits without
    end. Errors are the sync ``connect``'s: ``ConnectionRefusedError``, ``TimeoutError``,
    ``socket.gaierror``, ``ssl.SSLCertVerificationError``..."""
    seconds = _seconds(timeout)
    loop = asyncio.get_running_loop()
    bridge = _bridge_of(loop)
    token = next(_tokens)
    core = _AsyncConn(addr, format, seconds, tls, bridge.bell, token)
    conn = AsyncConnection._new(core, bridge, loop, token, seconds)
    try:
        while core.connected() is None:
            await conn._wait(None)  # the runtime bounds the connect by the timeout
    except BaseException:
        core.close()
        raise
    return conn


async def swarm(addr: tuple[str, int], *, progress: Any = False, **kwargs: Any) -> Report:
    """``sockwire.swarm`` without blocking the loop: the same arguments, the same
    :class:`~sockwire.Report`. The clients run on the swarm's own threads; the loop only waits.
    Cancelled, the run is stopped (every connection closed) and the cancellation goes on."""
    core = start_swarm(addr, **kwargs)
    display = _Display(progress) if progress else None
    loop = asyncio.get_running_loop()
    started = loop.time()
    next_show = 1.0
    try:
        while not await asyncio.to_thread(core.wait, 0.25):
            if display is not None and loop.time() - started >= next_show:
                display.show(core.snapshot())
                next_show += 1.0
    except BaseException:
        core.stop()
        await asyncio.shield(asyncio.to_thread(core.finish))
        raise
    finally:
        if display is not None:
            display.close()
    return Report(await asyncio.to_thread(core.finish))


@contextlib.contextmanager
def _watching(handler_loop: _HandlerLoop) -> Iterator[asyncio.Future[None]]:
    """The running loop handles ``handler_loop``'s events (its eventfd's reader) while in the
    block; yields the future resolved once the gateway has stopped."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    fd = handler_loop.fileno()
    handler_loop.attach(finished)
    loop.add_reader(fd, handler_loop.drain)
    try:
        handler_loop.drain()  # what was queued before the reader was added
        yield finished
    finally:
        loop.remove_reader(fd)
        handler_loop.detach()


async def _serve(gateway: Gateway) -> None:
    """``await gateway.serve()``: the gateway's events handled on the running loop until it
    stops; cancelled, it stops the gateway gracefully, then goes on with the cancellation."""
    loop = asyncio.get_running_loop()
    handler_loop = gateway._start_on_loop()
    with _watching(handler_loop) as finished:
        try:
            await asyncio.shield(finished)
        except GeneratorExit:
            raise  # the coroutine is being closed: nothing can be awaited any more
        except BaseException:
            # From this thread, stop() returns at once: the stop finishes as this loop runs
            # the clients' on_disconnect, and resolves `finished`. Cancelled again meanwhile
            # (asyncio.run cancels every task as it ends), the stop still finishes first.
            # Handlers still running when stop()'s 5 seconds are over are cancelled.
            gateway.stop()
            deadline: float | None = loop.time() + 5.0
            while not finished.done():
                left = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    await asyncio.wait_for(asyncio.shield(finished), left)
                except asyncio.CancelledError:
                    continue
                except TimeoutError:
                    handler_loop.cancel()
                    deadline = None
            raise


async def _handle_until_stopped(handler_loop: _HandlerLoop) -> None:
    with _watching(handler_loop) as finished:
        await finished


def _run_handler_loop(handler_loop: _HandlerLoop) -> None:
    """A handler thread of a gateway with ``async def`` handlers: an event loop (the policy's:
    uvloop's when installed) handling the thread's events until the gateway stops."""
    asyncio.run(_handle_until_stopped(handler_loop))


async def _go_on(
    coroutine: Any, waiting_on: Any, done: Callable[[Any, BaseException | None], None]
) -> None:
    """The task of an ``async def`` handler whose first step (taken by the gateway, as an
    eager task would) stopped to wait on ``waiting_on``: goes on with it, then tells ``done``
    what it returned or raised."""
    try:
        result = await _resumed(coroutine, waiting_on)
    except BaseException as exc:
        done(None, exc)  # logged there, with its traceback
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
    else:
        done(result, None)


@types.coroutine
def _resumed(coroutine: Any, waiting_on: Any) -> Generator[Any, Any, Any]:
    """``await`` on a coroutine that already ran up to ``yield waiting_on``: what ``yield
    from`` does, starting at that suspension instead of the beginning."""
    to_yield = waiting_on
    while True:
        try:
            sent = yield to_yield
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:  # thrown in by the task: a cancellation
            try:
                to_yield = coroutine.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                to_yield = coroutine.send(sent)
            except StopIteration as stop:
                return stop.value
