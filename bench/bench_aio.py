"""asyncio benchmark: sockwire.aio against the asyncio streams client users write today, both
talking to one plain echo server (uvloop, raw bytes back) in another process, 64-byte bodies
behind a `!I` length; and a Gateway's async def echo handler against the same plain handler.

(1) 1 connection, one request at a time: aio.connect + request() vs asyncio streams
    (write + readexactly) on uvloop: requests/s (target >= 1.0x);
(2) 100 connections, one request in flight on each: the same clients, one task per
    connection (target >= 1.5x);
(3) Gateway echo with an `async def` handler (on start()'s handler-thread loop, the same
    awaiting once, and on uvloop under `await gw.serve()`) vs the same plain handler, 100
    connections x 1 and x 16 in flight, driven by the core load driver: the cost of async
    handlers (reported).

Each client runs with a 10 s timeout (`timeout=` for sockwire.aio; streams have none).

Figures are taken as bench/_harness.py says. Run: python bench/bench_aio.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop
from _harness import Bench, start_peer
from bench_gateway import throughput

import sockwire
from sockwire import aio

HDR = struct.Struct("!I")
FMT = sockwire.PacketFormat("!I")
BODY = bytes(range(64))
TIMEOUT = 10


# --- the servers, each run in a peer process ---------------------------------------------------


class RawEcho(asyncio.Protocol):
    """Every byte back as it came: a framed echo for any length-prefixed format."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def _echo_server(port_q) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            RawEcho, "127.0.0.1", 0, backlog=1024
        )
        port_q.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    uvloop.run(main())


def _gateway_server(port_q, mode: str) -> None:
    gw = sockwire.Gateway(("127.0.0.1", 0), FMT, max_clients=1000)
    if mode == "plain":

        @gw.route()
        def echo(client, packet):
            return packet.body

    elif mode == "async, waits once, start()":

        @gw.route()
        async def async_echo_that_waits(client, packet):
            await asyncio.sleep(0)  # a real handler awaits something: its task is made
            return packet.body

    else:

        @gw.route()
        async def async_echo(client, packet):
            return packet.body

    if mode == "async, serve() on uvloop":

        async def main() -> None:
            task = asyncio.create_task(gw.serve())
            while not gw.running:
                await asyncio.sleep(0.01)
            port_q.put(gw.address[1])
            await task

        uvloop.run(main())
    else:
        gw.start()
        port_q.put(gw.address[1])
        gw.serve_forever()


# --- the clients, in this process --------------------------------------------------------------


async def aio_client(port: int, conns: int, requests: int) -> float:
    """`requests` round trips over `conns` connections with sockwire.aio; seconds taken."""
    clients = [await aio.connect(("127.0.0.1", port), FMT, timeout=TIMEOUT) for _ in range(conns)]

    async def one(conn: aio.AsyncConnection, n: int) -> None:
        for _ in range(n):
            reply = await conn.request(BODY)
            assert len(reply.body) == len(BODY)

    start = time.perf_counter()
    await asyncio.gather(*(one(c, requests // conns) for c in clients))
    took = time.perf_counter() - start
    for conn in clients:
        await conn.close()
    return took


async def streams_client(port: int, conns: int, requests: int) -> float:
    """The same with asyncio streams, written the usual way."""
    frame = HDR.pack(len(BODY)) + BODY
    pairs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(conns)]
    for _, writer in pairs:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        for _ in range(n):
            writer.write(frame)
            (length,) = HDR.unpack(await reader.readexactly(4))
            body = await reader.readexactly(length)
            assert len(body) == len(BODY)

    start = time.perf_counter()
    await asyncio.gather(*(one(r, w, requests // conns) for r, w in pairs))
    took = time.perf_counter() - start
    for _, writer in pairs:
        writer.close()
        await writer.wait_closed()
    return took


def on_loop(
    runner: Callable[[Coroutine[Any, Any, float]], float],
    client: Callable[[int, int, int], Coroutine[Any, Any, float]],
    port: int,
    conns: int,
    requests: int,
) -> Callable[[], float]:
    """A contender: a fresh loop of `runner`'s kind for each round, the client timed in it."""
    return lambda: runner(client(port, conns, requests))


def bench_clients(bench: Bench, port: int, conns: int, requests: int, target: float) -> None:
    work = (requests // conns) * conns
    bench.compare(
        f"({1 if conns == 1 else 2}) {conns} connection{'s' if conns > 1 else ''}, "
        f"{work:,} requests, 1 in flight per connection",
        {"sockwire.aio (uvloop)": on_loop(uvloop.run, aio_client, port, conns, requests)},
        {"streams (uvloop)": on_loop(uvloop.run, streams_client, port, conns, requests)},
        work=work,
        unit="requests/s",
        target=target,
    )
    # For the record, the default loop (not a target): how each client fares without uvloop.
    bench.compare(
        "    the same on the default asyncio loop",
        {"sockwire.aio (asyncio)": on_loop(asyncio.run, aio_client, port, conns, requests)},
        {"streams (asyncio)": on_loop(asyncio.run, streams_client, port, conns, requests)},
        work=work,
        unit="requests/s",
        target=target,
    )


def bench_handlers(bench: Bench, servers: dict[str, int], in_flight: int, seconds: float):
    def contender(name: str) -> Callable[[], float]:
        def run() -> float:
            report = throughput(servers[name], 100, in_flight, seconds)
            return 1 / report["throughput"]

        return run

    async_names = [name for name in servers if name != "plain"]
    # The target is the cost asked about: async handlers at the plain handler's rate (1x).
    bench.compare(
        f"(3) Gateway echo, 100 connections x {in_flight} in flight, {seconds:g} s a round",
        {f"handler {name}": contender(name) for name in async_names},
        {"handler plain": contender("plain")},
        work=1,
        unit="packets/s" if in_flight > 1 else "requests/s",
        target=1.0,
    )


def main() -> None:
    bench = Bench("bench_aio", __doc__.splitlines()[0])
    procs = []
    try:
        proc, echo_port = start_peer(_echo_server)
        procs.append(proc)
        requests = 2_000 if bench.quick else 20_000
        bench_clients(bench, echo_port, 1, requests, 1.0)
        bench_clients(bench, echo_port, 100, requests * 2, 1.5)
        servers = {}
        modes = ["plain", "async, start()", "async, waits once, start()"]
        for mode in [*modes, "async, serve() on uvloop"]:
            proc, servers[mode] = start_peer(_gateway_server, mode)
            procs.append(proc)
        seconds = 0.5 if bench.quick else 2.0
        bench_handlers(bench, servers, 1, seconds)
        bench_handlers(bench, servers, 16, seconds)
    finally:
        for proc in procs:
            proc.kill()
    bench.finish()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
