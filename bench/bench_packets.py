"""Framing benchmark: sockwire against the struct-based Python everyone writes, in one run.

(a) decode: a stream of `!IH` frames with 64-byte bodies arriving in 64 KiB chunks,
    Decoder.feed vs the struct + bytearray decoder everyone writes (unpack the header slice,
    copy the body, delete the frame from the buffer), and vs a tuned one (unpack_from and a
    read position, one delete per chunk);
(b) encode: 1M packets into one buffer, PacketFormat.pack_many (what send_many sends) vs
    struct.pack + b"".join; (b2) one pack() call per packet vs struct.pack + concatenation;
(c) request/response over loopback against the same raw echo server (a child process),
    Connection.request vs socket.sendall + struct + recv-exactly.

Targets: (a) >= 5x, (b) >= 2x, (b2) >= 1.5x, (c) >= 1.3x. Figures are taken as
bench/_harness.py says (interleaved rounds, median; echo server and measuring process pinned).
Run:
python bench/bench_packets.py [--rounds N] [--quick] [--json FILE]
"""

from __future__ import annotations

import socket
import struct
import threading

from _harness import Bench, start_peer, timed

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


def bench_decode(bench: Bench, frames: int) -> None:
    stream = b"".join(HDR.pack(len(BODY), i % 65536) + BODY for i in range(frames))
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]

    def run(make):
        def decode_all():
            dec = make()
            assert sum(len(dec.feed(c)) for c in chunks) == frames

        return timed(decode_all)

    bench.compare(
        f"(a) decode {frames:,} frames in 64 KiB chunks",
        {"sockwire": run(FMT.decoder)},
        {
            "python (recipe decoder)": run(RecipeDecoder),
            "python (tuned decoder)": run(TunedDecoder),
        },
        work=frames,
        unit="frames/s",
        target=5,
    )


def bench_encode(bench: Bench, packets: int) -> None:
    bodies = [BODY] * packets
    expected = b"".join(HDR.pack(len(b), 7) + b for b in bodies)

    def many():
        assert len(FMT.pack_many(bodies, msg_id=7)) == len(expected)

    def theirs():
        pack = HDR.pack
        b"".join([pack(len(b), 7) + b for b in bodies])

    bench.compare(
        f"(b) encode {packets:,} packets in one buffer",
        {"sockwire pack_many": timed(many)},
        {"python struct.pack + join": timed(theirs)},
        work=packets,
        unit="pkt/s",
        target=2,
    )


def bench_pack_calls(bench: Bench, packets: int) -> None:
    """One call per packet, its frame used and dropped before the next, as a script that
    sends packets one at a time does."""
    bodies = [BODY] * packets
    assert FMT.pack(BODY, msg_id=7) == HDR.pack(len(BODY), 7) + BODY

    def ours():
        pack = FMT.pack
        for b in bodies:
            frame = pack(b, msg_id=7)
        return frame

    def theirs():
        pack = HDR.pack
        for b in bodies:
            frame = pack(len(b), 7) + b
        return frame

    bench.compare(
        f"(b2) one pack() per packet, {packets:,} packets",
        {"sockwire pack(body, msg_id=7)": timed(ours)},
        {"python struct.pack + concatenation": timed(theirs)},
        work=packets,
        unit="pkt/s",
        target=1.5,
    )


def _echo(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def _echo_server(port_q) -> None:
    """Echoes raw bytes back (which echoes frames too), one thread per connection."""
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


def bench_request(bench: Bench, count: int) -> None:
    server, port = start_peer(_echo_server)
    addr = ("127.0.0.1", port)
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

    bench.compare(
        f"(c) request/response, {count:,} round trips",
        {"sockwire": timed(ours)},
        {"python socket + struct": timed(theirs)},
        work=count,
        unit="req/s",
        target=1.3,
    )
    conn.close()
    sock.close()
    server.kill()


def main() -> None:
    bench = Bench("bench_packets", __doc__.splitlines()[0])
    scale = 20 if bench.quick else 1
    bench_decode(bench, 1_000_000 // scale)
    bench_encode(bench, 1_000_000 // scale)
    bench_pack_calls(bench, 1_000_000 // scale)
    bench_request(bench, 20_000 // scale)
    bench.finish()


if __name__ == "__main__":
    main()
