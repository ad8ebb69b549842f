"""Loopback socket benchmark: sockwire.Socket against the stdlib's socket.socket.

Two workloads, each run with both implementations in the same process run, both ends of the
connection using the implementation being measured (the peer runs in a child process):

* ping-pong: one connection, 64-byte messages, one round trip at a time;
* bulk: 256 MiB sent with ``sendall`` in 1 MiB pieces and read with ``recv(65536)``.

Rounds alternate between the implementations so that drift on the machine affects both; the
median of the rounds is reported. Run: ``python bench/bench_socket.py`` (``--quick`` for a
short smoke run).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import time

import sockwire

IMPLS = {"socket.socket": socket.socket, "sockwire.Socket": sockwire.Socket}
MSG = b"x" * 64
CHUNK = b"\0" * (1 << 20)


def pin(cpu: int) -> None:
    """Pins this process to one CPU (when there are two), so that every round puts client and
    peer on the same cores: without it, rounds varied between 0.2x and 3.4x of each other."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def _accept_one(impl: str, port_q):
    """Listens on a free port, reports it, and returns the one connection that comes."""
    pin(1)
    with IMPLS[impl](socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port_q.put(srv.getsockname()[1])
        conn, _ = srv.accept()
        return conn


def _echo_peer(impl: str, port_q, count: int) -> None:
    with _accept_one(impl, port_q) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            data = conn.recv(64)
            while len(data) < 64:
                data += conn.recv(64 - len(data))
            conn.sendall(data)


def _bulk_sender(impl: str, port_q, total: int) -> None:
    with _accept_one(impl, port_q) as conn:
        for _ in range(total // len(CHUNK)):
            conn.sendall(CHUNK)


def _start(target, impl: str, arg: int):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=target, args=(impl, q, arg), daemon=True)
    proc.start()
    return proc, q.get(timeout=30)


def ping_pong(impl: str, count: int) -> float:
    """Round trips per second."""
    proc, port = _start(_echo_peer, impl, count)
    cls = IMPLS[impl]
    with cls(socket.AF_INET, socket.SOCK_STREAM) as c:
        c.connect(("127.0.0.1", port))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        for _ in range(count):
            c.sendall(MSG)
            got = c.recv(1024)
            while len(got) < 64:
                got += c.recv(1024)
        elapsed = time.perf_counter() - start
    proc.join(10)
    return count / elapsed


def bulk(impl: str, total: int) -> float:
    """MiB per second received."""
    proc, port = _start(_bulk_sender, impl, total)
    cls = IMPLS[impl]
    with cls(socket.AF_INET, socket.SOCK_STREAM) as c:
        c.connect(("127.0.0.1", port))
        received = 0
        start = time.perf_counter()
        while True:
            data = c.recv(65536)
            if not data:
                break
            received += len(data)
        elapsed = time.perf_counter() - start
    proc.join(10)
    assert received == total, (received, total)
    return total / elapsed / (1 << 20)


def run(name: str, fn, arg: int, rounds: int, unit: str) -> float:
    results: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for _ in range(rounds):
        for impl in IMPLS:
            results[impl].append(fn(impl, arg))
    med = {impl: statistics.median(v) for impl, v in results.items()}
    for impl, value in med.items():
        print(f"  {name:10s} {impl:16s} {value:12,.0f} {unit}")
    ratio = med["sockwire.Socket"] / med["socket.socket"]
    print(f"  {name:10s} ratio sockwire/stdlib: {ratio:.2f}x")
    return ratio


def main() -> None:
    pin(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--count", type=int, default=20000, help="ping-pong round trips per round")
    ap.add_argument("--mib", type=int, default=256, help="bulk transfer size in MiB")
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.count, args.mib = 1, 2000, 16
    print(f"sockwire {sockwire.__version__} bench_socket: median of {args.rounds} rounds")
    run("ping-pong", ping_pong, args.count, args.rounds, "round trips/s")
    run("bulk", bulk, args.mib << 20, args.rounds, "MiB/s")


if __name__ == "__main__":
    main()
