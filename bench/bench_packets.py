"""Framing benchmark: sockwire against the struct-based Python everyone writes, in one run.

(a) decode: a stream of `!IH` frames with 64-byte bodies arriving in 64 KiB chunks,
    Decoder.feed vs the struct + bytearray decoder everyone writes (unpack the header slice,
    copy the body, delete the frame from the buffer), and vs a tuned one (unpack_from and a
    read position, one delete per chunk);
(b) encode: 1M packets, PacketFormat.pack_many (what send_many sends) and a pack() loop vs
    struct.pack + b"".join;
(c) request/response over loopback against the same raw echo server (a child process),
    Connection.request vs socket.sendall + struct + recv-exactly.

Targets: (a) >= 5x, (b) >= 2x, (c) >= 1.3x. Run: python bench/bench_packets.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import statistics
import struct
import threading
import time

from bench_socket import pin

import sockwire

HDR = struct.Struct("!IH")
FMT = sockwire.PacketFormat("!IH", ("length", "msg_id"))
BODY = bytes(range(64))


class RecipeDecoder:
    """The decoder everyone writes: struct on the header slice, then drop the frame."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out = []
        while len(self.buf) >= HDR.size:
            length, msg_id = HDR.unpack(self.buf[: HDR.size])
            if len(self.buf) < HDR.size + length:
                break
            out.append((msg_id, bytes(self.buf[HDR.size : HDR.size + length])))
            del self.buf[: HDR.size + length]
        return out


class TunedDecoder:
    """A tuned struct decoder: unpack_from at a read position, one delete per chunk."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf += data
        out = []
        pos, end = 0, len(buf)
        while end - pos >= HDR.size:
            length, msg_id = HDR.unpack_from(buf, pos)
            stop = pos + HDR.size + length
            if stop > end:
                break
            out.append((msg_id, bytes(buf[pos + HDR.size : stop])))
            pos = stop
        del buf[:pos]
        return out


def best(fn, rounds: int) -> float:
    """Fastest of `rounds` runs, in seconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def report(name: str, ours: float, baselines: dict[str, float], unit: str, count: int, target):
    print(f"  {name}")
    print(f"    {'sockwire':24s} {count / ours:14,.0f} {unit}")
    for label, theirs in baselines.items():
        ratio = theirs / ours
        verdict = "met" if ratio >= target else "NOT met"
        print(
            f"    {label:24s} {count / theirs:14,.0f} {unit}   sockwire is {ratio:.2f}x "
            f"(target {target}x: {verdict})"
        )


def bench_decode(frames: int, rounds: int) -> None:
    stream = b"".join(HDR.pack(len(BODY), i % 65536) + BODY for i in range(frames))
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]

    def run(make):
        def decode_all():
            dec = make()
            assert sum(len(dec.feed(c)) for c in chunks) == frames

        return best(decode_all, rounds)

    report(
        f"(a) decode {frames:,} frames in 64 KiB chunks",
        run(FMT.decoder),
        {
            "python (recipe decoder)": run(RecipeDecoder),
            "python (tuned decoder)": run(TunedDecoder),
        },
        "frames/s",
        frames,
        5,
    )


def bench_encode(packets: int, rounds: int) -> None:
    bodies = [BODY] * packets
    expected = b"".join(HDR.pack(len(b), 7) + b for b in bodies)

    def many():
        assert len(FMT.pack_many(bodies, msg_id=7)) == len(expected)

    def loop():
        pack = FMT.pack
        b"".join([pack(b, msg_id=7) for b in bodies])

    def theirs():
        pack = HDR.pack
        b"".join([pack(len(b), 7) + b for b in bodies])

    python = {"python struct.pack + join": best(theirs, rounds)}
    report(
        f"(b) encode {packets:,} packets: pack_many",
        best(many, rounds),
        python,
        "pkt/s",
        packets,
        2,
    )
    report(
        f"(b) encode {packets:,} packets: pack() loop",
        best(loop, rounds),
        python,
        "pkt/s",
        packets,
        2,
    )


def _echo(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def _echo_server(port_q) -> None:
    """Echoes raw bytes back (which echoes frames too), one thread per connection."""
    pin(1)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port_q.put(srv.getsockname()[1])
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def bench_request(count: int, rounds: int) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    server = ctx.Process(target=_echo_server, args=(q,), daemon=True)
    server.start()
    addr = ("127.0.0.1", q.get(timeout=30))
    conn = sockwire.connect(addr, FMT, timeout=10)
    sock = socket.create_connection(addr, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def ours():
        for _ in range(count):
            assert conn.request(BODY, msg_id=3).msg_id == 3

    def theirs():
        for _ in range(count):
            sock.sendall(HDR.pack(len(BODY), 3) + BODY)
            length, msg_id = HDR.unpack(recv_exactly(sock, HDR.size))
            recv_exactly(sock, length)
            assert msg_id == 3

    # Interleave the rounds so that drift on the machine hits both sides alike.
    ours_t, theirs_t = [], []
    for _ in range(rounds):
        ours_t.append(best(ours, 1))
        theirs_t.append(best(theirs, 1))
    report(
        f"(c) request/response, {count:,} round trips (median of {rounds})",
        statistics.median(ours_t),
        {"python socket + struct": statistics.median(theirs_t)},
        "req/s",
        count,
        1.3,
    )
    conn.close()
    sock.close()
    server.kill()


def main() -> None:
    pin(0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short smoke run")
    args = ap.parse_args()
    rounds = 1 if args.quick else 5
    scale = 20 if args.quick else 1
    print(f"sockwire {sockwire.__version__} bench_packets (best of {rounds} unless noted)")
    bench_decode(1_000_000 // scale, rounds)
    bench_encode(1_000_000 // scale, rounds)
    bench_request(20_000 // scale, rounds)


if __name__ == "__main__":
    main()
