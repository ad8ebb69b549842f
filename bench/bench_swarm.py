"""Swarm benchmark: sockwire.swarm against the asyncio streams client users write today (on
uvloop) and against a plain Rust tokio client with no Python, all loading one fast echo server
(plain tokio, bench/rust/echo_server.rs) in another process on the other CPU; 64-byte bodies
behind a `!I` length.

(1) 1000 connections x 1 in flight, closed loop: swarm vs asyncio streams on uvloop
    (target >= 3x) and vs the tokio client (target >= 0.9x): requests/s;
(2) the most connections swarm holds open and cycling at once (aim: 10,000).

Figures are taken as bench/_harness.py says; the load and the server run on separate CPUs
(`--pin split`) so that the server is not what is measured. The Rust programs (a package of
their own, bench/rust/Cargo.toml, tokio only) are built on first use.
Run: python bench/bench_swarm.py [--quick]
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import struct
import subprocess
import sys
import time

import uvloop
from _harness import Bench, start_peer
from bench_gateway import _raise_fd_limit

import sockwire

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "rust"
EXAMPLES = PEERS / "target" / "release"
HDR = struct.Struct("!I")
BODY = b"x" * 64


def build_rust() -> None:
    if (
        not (EXAMPLES / "bench_echo_server").exists()
        or not (EXAMPLES / "bench_tokio_client").exists()
    ):
        manifest = PEERS / "Cargo.toml"
        subprocess.run(
            ["cargo", "build", "--release", "-q", "--manifest-path", manifest], check=True
        )


def _rust_echo_server(port_q) -> None:
    """In a peer process (pinned to the peer CPU, which the server inherits)."""
    _raise_fd_limit()
    proc = subprocess.Popen(
        [str(EXAMPLES / "bench_echo_server"), "0", "1"], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    port_q.put(int(line.split()[-1]))
    proc.wait()


def swarm_run(port: int, clients: int, seconds: float) -> float:
    report = sockwire.swarm(
        ("127.0.0.1", port), clients=clients, duration=seconds, body=BODY, connect_timeout=10
    )
    assert not report.errors, report.errors
    return 1 / report.throughput


async def streams_client(port: int, clients: int, seconds: float) -> float:
    frame = HDR.pack(len(BODY)) + BODY
    pairs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    for _, writer in pairs:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    done = 0
    deadline = time.perf_counter() + seconds

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            writer.write(frame)
            (length,) = HDR.unpack(await reader.readexactly(4))
            await reader.readexactly(length)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(one(r, w) for r, w in pairs))
    took = time.perf_counter() - start
    for _, writer in pairs:
        writer.close()
    return took / done


def tokio_run(port: int, clients: int, seconds: float) -> float:
    out = subprocess.run(
        [str(EXAMPLES / "bench_tokio_client"), str(port), str(clients), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    requests, took = int(out[1]), float(out[3])
    return took / requests


def bench_requests(bench: Bench, port: int, clients: int, seconds: float) -> None:
    swarm = {"sockwire.swarm": lambda: swarm_run(port, clients, seconds)}
    bench.compare(
        f"(1) {clients:,} connections x 1 in flight, {seconds:g} s a round",
        swarm,
        {"asyncio streams (uvloop)": lambda: uvloop.run(streams_client(port, clients, seconds))},
        work=1,
        unit="requests/s",
        target=3.0,
    )
    bench.compare(
        "    the same, vs the physical reference",
        swarm,
        {"tokio client (Rust)": lambda: tokio_run(port, clients, int(max(seconds, 1)))},
        work=1,
        unit="requests/s",
        target=0.9,
    )


def bench_most_connections(port: int, counts: list[int], seconds: float) -> None:
    print(f"  (2) connections held open and cycling ({seconds:g} s each, 1 in flight)")
    best = 0
    for clients in counts:
        report = sockwire.swarm(
            ("127.0.0.1", port),
            clients=clients,
            duration=seconds,
            body=BODY,
            connect_timeout=30,
            timeout=30,
            ramp_up=min(2.0, seconds / 2),
        )
        ok = not report.errors and report.connected == clients
        # every second after the first (the ramp-up) served requests
        seconds_after_ramp = report.timeline[1:] or report.timeline
        every_one = ok and min(s["received"] for s in seconds_after_ramp) > 0
        print(
            f"    {clients:6,} clients: connected {report.connected:,}, "
            f"{report.throughput:,.0f} requests/s, p99 {report.latency['p99'] * 1e3:.1f} ms, "
            f"errors {sum(report.errors.values()):,}"
        )
        if ok and every_one:
            best = clients
        else:
            break
    print(f"    most connections held and cycling: {best:,} (aim: 10,000)")


def main() -> None:
    bench = Bench("bench_swarm", __doc__.splitlines()[0], pin="split")
    _raise_fd_limit()
    build_rust()
    proc, port = start_peer(_rust_echo_server)
    try:
        seconds = 0.5 if bench.quick else 3.0
        bench_requests(bench, port, 100 if bench.quick else 1000, seconds)
        counts = [500] if bench.quick else [2_000, 5_000, 10_000, 15_000]
        bench_most_connections(port, counts, 1.0 if bench.quick else 5.0)
    finally:
        proc.kill()
        subprocess.run(["pkill", "-f", "bench_echo_server"], check=False)
    bench.finish()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
