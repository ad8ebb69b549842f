"""Loopback socket benchmark: sockwire.Socket against the stdlib's socket.socket.

Two workloads, each run with both implementations in the same process run, both ends of the
connection using the implementation being measured (the peer runs in a child process):

* ping-pong: one connection, 64-byte messages, one round trip at a time;
* bulk: 256 MiB sent with ``sendall`` in 1 MiB pieces and read with ``recv(65536)``.

Figures are taken as bench/_harness.py says (interleaved rounds, median, client and peer
pinned to separate CPUs). Run: ``python bench/bench_socket.py [--rounds N] [--quick]
[--json FILE]``.
"""

from __future__ import annotations

import socket
import time

from _harness import Bench, start_peer

import sockwire

IMPLS = {"socket.socket": socket.socket, "sockwire.Socket": sockwire.Socket}
MSG = b"x" * 64
CHUNK = b"\0" * (1 << 20)


def _accept_one(impl: str, port_q):
    """Listens on a free port, reports it, and returns the one connection that comes."""
    with IMPLS[impl](socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port_q.put(srv.getsockname()[1])
        conn, _ = srv.accept()
        return conn


def _echo_peer(port_q, impl: str, count: int) -> None:
    with _accept_one(impl, port_q) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            data = conn.recv(64)
            while len(data) < 64:
                data += conn.recv(64 - len(data))
            conn.sendall(data)


def _bulk_sender(port_q, impl: str, total: int) -> None:
    with _accept_one(impl, port_q) as conn:
        for _ in range(total // len(CHUNK)):
            conn.sendall(CHUNK)


def ping_pong(impl: str, count: int) -> float:
    """Seconds for `count` round trips."""
    proc, port = start_peer(_echo_peer, impl, count)
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
    return elapsed


def bulk(impl: str, total: int) -> float:
    """Seconds to receive `total` bytes."""
    proc, port = start_peer(_bulk_sender, impl, total)
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
    return elapsed


def main() -> None:
    bench = Bench("bench_socket", __doc__.splitlines()[0])
    count, mib = (2000, 16) if bench.quick else (20_000, 256)
    bench.compare(
        f"(1) ping-pong, 64-byte messages, {count:,} round trips",
        {"sockwire.Socket": lambda: ping_pong("sockwire.Socket", count)},
        {"socket.socket": lambda: ping_pong("socket.socket", count)},
        work=count,
        unit="round trips/s",
        target=1,
    )
    bench.compare(
        f"(2) bulk, {mib} MiB, sendall 1 MiB / recv(65536)",
        {"sockwire.Socket": lambda: bulk("sockwire.Socket", mib << 20)},
        {"socket.socket": lambda: bulk("socket.socket", mib << 20)},
        work=mib,
        unit="MiB/s",
        target=1,
    )
    bench.finish()


if __name__ == "__main__":
    main()
