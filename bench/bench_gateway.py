"""Gateway benchmark: the same Python echo handler served by sockwire.Gateway, by an asyncio
Protocol server and by the same server on uvloop, each in its own process, driven by the core
load driver from this process over loopback: 64-byte bodies, a `!I` header.

(1) 100 connections x 16 requests in flight: packets/s (target >= 1.5x uvloop);
(2) 100 connections x 1 in flight: requests/s (target >= 1.2x uvloop) and p99;
(3) memory per idle connection, 10,000 connections open: RSS growth / connections (target:
    no more than uvloop's);
(4) connections per second: each new connection makes one round trip.

Figures are taken as bench/_harness.py says. Run: python bench/bench_gateway.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import statistics
import struct
import time
from typing import Any

from _harness import Bench, start_peer

import sockwire

HDR = struct.Struct("!I")
FMT = sockwire.PacketFormat("!I")
BODY_SIZE = 64


def handler(body: bytes) -> bytes:
    """The application: what every server runs for every packet."""
    return body


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- the servers, each run in a peer process ---------------------------------------------------


def _gateway_server(port_q) -> None:
    _raise_fd_limit()
    gw = sockwire.Gateway(("127.0.0.1", 0), FMT, max_clients=20000, handler_threads=1)

    @gw.route()
    def echo(client, packet):
        return handler(packet.body)

    gw.start()
    port_q.put(gw.address[1])
    gw.serve_forever()


class EchoProtocol(asyncio.Protocol):
    """The asyncio server a user writes by hand: a buffer, struct framing, one write a reply."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = bytearray()
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end, out = 0, len(buf), []
        while end - pos >= 4:
            (length,) = HDR.unpack_from(buf, pos)
            stop = pos + 4 + length
            if stop > end:
                break
            reply = handler(bytes(buf[pos + 4 : stop]))
            out.append(HDR.pack(len(reply)))
            out.append(reply)
            pos = stop
        del buf[:pos]
        if out:
            self.transport.write(b"".join(out))


def _asyncio_server(port_q, use_uvloop: bool) -> None:
    _raise_fd_limit()
    if use_uvloop:
        import uvloop

        uvloop.install()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0, backlog=4096)
        port_q.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# --- the measurements -------------------------------------------------------------------------


def throughput(port: int, clients: int, in_flight: int, seconds: float) -> dict[str, Any]:
    report = sockwire._core._load(
        ("127.0.0.1", port),
        FMT,
        clients=clients,
        in_flight=in_flight,
        duration=seconds,
        body_size=BODY_SIZE,
        expect_echo=True,
    )
    assert not report["errors"], report["errors"]
    return report


def bench_load(bench: Bench, servers: dict[str, int], in_flight: int, seconds: float) -> None:
    p99: dict[str, list[float]] = {name: [] for name in servers}

    def contender(name: str):
        def run() -> float:
            report = throughput(servers[name], 100, in_flight, seconds)
            p99[name].append(report["latency"]["p99"])
            return 1 / report["throughput"]  # seconds per packet: the harness's figure

        return run

    unit = "packets/s" if in_flight > 1 else "requests/s"
    target = 1.5 if in_flight > 1 else 1.2
    bench.compare(
        f"({1 if in_flight > 1 else 2}) 100 connections x {in_flight} in flight, "
        f"{seconds:g} s a round",
        {"sockwire.Gateway": contender("sockwire.Gateway")},
        {name: contender(name) for name in servers if name != "sockwire.Gateway"},
        work=1,
        unit=unit,
        target=target,
    )
    for name, values in p99.items():
        print(f"    p99 {name}: {statistics.median(values) * 1e3:.2f} ms")


def bench_idle_memory(bench: Bench, pids: dict[str, int], servers: dict[str, int], n: int):
    print(f"  (3) memory per idle connection, {n:,} connections open")
    per_connection = {}
    for name, port in servers.items():
        before = _rss(pids[name])
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        # one round trip on the last: the server has accepted them all by then
        socks[-1].sendall(HDR.pack(2) + b"hi")
        socks[-1].recv(6)
        time.sleep(0.5)
        after = _rss(pids[name])
        per_connection[name] = (after - before) / n
        for s in socks:
            s.close()
        time.sleep(0.5)
        print(f"    {name:18s} {per_connection[name]:8,.0f} bytes per connection")
    ours = per_connection["sockwire.Gateway"]
    for name, value in per_connection.items():
        if name != "sockwire.Gateway":
            verdict = "met" if ours <= value else "NOT met"
            print(f"    vs {name}: {ours / value:.2f}x the memory (target <= 1x: {verdict})")


def bench_accept(bench: Bench, servers: dict[str, int], n: int) -> None:
    def contender(name: str):
        def run() -> float:
            report = sockwire._core._load(
                ("127.0.0.1", servers[name]),
                FMT,
                clients=n,
                in_flight=1,
                requests=n,
                body_size=BODY_SIZE,
            )
            assert report["connected"] == n and not report["errors"], report
            return report["duration"]

        return run

    bench.compare(
        f"(4) {n:,} new connections, one round trip each",
        {"sockwire.Gateway": contender("sockwire.Gateway")},
        {name: contender(name) for name in servers if name != "sockwire.Gateway"},
        work=n,
        unit="connections/s",
        target=1,
    )


def main() -> None:
    # The load driver and the server on separate CPUs: on one CPU the figure would be how the
    # two processes share it, not what the server can serve.
    bench = Bench("bench_gateway", __doc__.splitlines()[0], pin="split")
    _raise_fd_limit()
    kinds = {
        "sockwire.Gateway": (_gateway_server, ()),
        "asyncio": (_asyncio_server, (False,)),
        "uvloop": (_asyncio_server, (True,)),
    }
    procs, servers, pids = [], {}, {}
    for name, (target, args) in kinds.items():
        proc, port = start_peer(target, *args)
        procs.append(proc)
        servers[name], pids[name] = port, proc.pid
    try:
        seconds = 0.5 if bench.quick else 3.0
        bench_load(bench, servers, 16, seconds)
        bench_load(bench, servers, 1, seconds)
        bench_idle_memory(bench, pids, servers, 500 if bench.quick else 10_000)
        bench_accept(bench, servers, 200 if bench.quick else 2_000)
    finally:
        for proc in procs:
            proc.kill()
    bench.finish()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
