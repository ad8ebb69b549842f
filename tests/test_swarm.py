"""sockwire.swarm against servers sockwire did not write: threaded stdlib servers and asyncio
servers on loopback, each misbehaving one way; the report's fields, the plot, Ctrl-C."""

import asyncio
import itertools
import json
import logging
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import uvloop
from _asyncio_server import AsyncioServer

import sockwire as sw
from sockwire import aio

LEN = struct.Struct("!I")
SEQ = sw.PacketFormat("!IHI", ("length", "msg_id", "seq"))
SEQ_HDR = struct.Struct("!IHI")


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class Server:
    """A threaded stdlib server: `handle(sock)` runs for each connection in its own thread."""

    def __init__(self, handle):
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    handle(self.request)
                except OSError:
                    pass

        class TCPServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 512

        self.server = TCPServer(("127.0.0.1", 0), Handler)
        self.address = self.server.server_address
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        outer.connections = 0

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def frames(sock):
    """The `!I`-framed bodies a client sends, until it closes."""
    while True:
        header = recv_exactly(sock, 4)
        if header is None:
            return
        (n,) = LEN.unpack(header)
        body = recv_exactly(sock, n)
        if body is None:
            return
        yield body


def echo(sock):
    for body in frames(sock):
        sock.sendall(LEN.pack(len(body)) + body)


def test_requests_are_counted_exactly_against_a_threaded_stdlib_server():
    with Server(echo) as server:
        report = sw.swarm(
            server.address, clients=8, requests=5000, in_flight=4, expect="echo", body=[b"a", b"bb"]
        )
    assert (report.sent, report.received, report.errors) == (5000, 5000, {})
    assert report.connected == 8 and report.failed_connects == 0 and report.pushed == 0
    assert not report.interrupted
    assert set(report.latency) == {"p50", "p90", "p99", "p999", "max", "mean"}
    assert 0 < report.latency["p50"] <= report.latency["p99"] <= report.latency["max"] < 5
    assert report.throughput == pytest.approx(report.received / report.duration)
    assert sum(s["received"] for s in report.timeline) == 5000
    assert [s["t"] for s in report.timeline] == list(range(len(report.timeline)))
    assert {"t", "sent", "received", "errors", "p99"} <= set(report.timeline[0])


def test_the_report_as_dict_json_and_text(tmp_path):
    with Server(echo) as server:
        report = sw.swarm(server.address, clients=2, requests=100)
    as_dict = report.to_dict()
    for key in ["connected", "failed_connects", "sent", "received", "pushed", "errors"]:
        assert as_dict[key] == getattr(report, key)
    for key in ["duration", "throughput", "latency", "timeline", "interrupted"]:
        assert key in as_dict
    path = tmp_path / "report.json"
    assert json.loads(report.to_json(str(path))) == json.loads(path.read_text()) == as_dict
    text = str(report)
    for word in ["duration", "connected", "sent", "received", "errors", "latency", "p99"]:
        assert word in text


def test_the_plot_is_a_png(tmp_path):
    with Server(echo) as server:
        report = sw.swarm(server.address, clients=4, duration=1.2)
    path = tmp_path / "run.png"
    report.plot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_plot_without_matplotlib_names_the_extra():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["matplotlib"] = None  # as if not installed
        import sockwire
        report = sockwire.Report({
            "connected": 0, "failed_connects": 0, "sent": 0, "received": 0, "pushed": 0,
            "errors": {}, "duration": 1.0, "throughput": 0.0, "latency": dict.fromkeys(
                ["p50", "p90", "p99", "p999", "max", "mean"], 0.0), "timeline": [],
            "interrupted": False})
        try:
            report.plot("x.png")
        except ImportError as exc:
            print(exc)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "sockwire[plot]" in done.stdout, done.stderr


def test_connect_errors():
    sock = socket.create_server(("127.0.0.1", 0))
    address = sock.getsockname()
    sock.close()  # nothing listens there now
    report = sw.swarm(address, clients=5, requests=10, connect_timeout=2)
    assert report.errors == {"connect": 5}
    assert report.failed_connects == 5 and report.connected == 0 and report.sent == 0


def test_timeouts_close_the_connection_and_the_client_reconnects():
    answered = []

    def every_other_connection_is_silent(sock):
        answered.append(None)
        if len(answered) % 2 == 1:
            for _ in frames(sock):
                pass  # reads, never answers
        else:
            echo(sock)

    with Server(every_other_connection_is_silent) as server:
        report = sw.swarm(server.address, clients=1, requests=20, timeout=0.3)
    assert report.errors == {"timeout": 1}
    assert report.connected == 2  # reconnected after the timeout
    assert report.received == 19


def test_one_reply_in_ten_corrupted_is_a_mismatch():
    replies = iter(range(10**6))  # numbered over all connections
    lock = threading.Lock()

    def corrupting(sock):
        for body in frames(sock):
            with lock:
                i = next(replies)
            if i % 10 == 9:
                body = b"!" + body[1:]
            sock.sendall(LEN.pack(len(body)) + body)

    with Server(corrupting) as server:
        report = sw.swarm(server.address, clients=4, requests=400, expect="echo")
    assert report.errors == {"mismatch": 40}
    assert report.received == 400


def test_a_server_that_closes_is_counted_as_closed():
    def closes_after_five(sock):
        for i, body in enumerate(frames(sock)):
            if i == 5:
                return
            sock.sendall(LEN.pack(len(body)) + body)

    with Server(closes_after_five) as server:
        report = sw.swarm(server.address, clients=2, duration=0.5, timeout=2)
    assert report.errors["closed"] >= 2
    assert report.connected > 2  # each client reconnected and went on
    assert set(report.errors) == {"closed"}


def test_a_garbage_reply_is_a_protocol_error():
    def garbage(sock):
        for _ in frames(sock):
            sock.sendall(b"\xff\xff\xff\xff" + b"garbage")  # a 4 GiB length

    with Server(garbage) as server:
        report = sw.swarm(server.address, clients=1, requests=3)
    assert report.errors == {"protocol error": 3}


def test_the_expect_callable_sees_every_reply_and_counts_rejections():
    seen = []

    def check(request_body, reply):
        seen.append((request_body, reply.body))
        return not reply.body.startswith(b"b")

    with Server(echo) as server:
        report = sw.swarm(
            server.address, clients=3, requests=300, body=[b"a1", b"b2", b"c3"], expect=check
        )
    assert len(seen) == 300
    assert all(request == reply for request, reply in seen)
    assert report.errors == {"mismatch": 100}


def test_an_expect_callable_that_raises_is_logged_once(caplog):
    def broken(request_body, reply):
        raise RuntimeError("my check is wrong")

    with Server(echo) as server, caplog.at_level(logging.ERROR, logger="sockwire.swarm"):
        report = sw.swarm(server.address, clients=2, requests=50, expect=broken)
    assert report.errors == {"mismatch": 50}
    [record] = [r for r in caplog.records if r.name == "sockwire.swarm"]
    assert record.exc_info[0] is RuntimeError


def test_correlated_replies_out_of_order_with_pushed_packets():
    """The server answers each pair of requests in reverse order, and pushes a packet of its
    own after every third request of a connection: the swarm matches replies by the seq field.
    (The clients share the budget, so a connection's count is not known in advance: the server
    counts its pushes, and answers a request left without a partner after 50 ms.)"""
    pushes = []

    async def handler(reader, writer):
        held = []
        count = 0
        try:
            while True:
                try:
                    header = await asyncio.wait_for(reader.readexactly(SEQ_HDR.size), 0.05)
                except TimeoutError:
                    writer.write(b"".join(held))
                    held.clear()
                    continue
                length, msg_id, seq = SEQ_HDR.unpack(header)
                body = await reader.readexactly(length)
                held.append(SEQ_HDR.pack(length, msg_id, seq) + body)
                count += 1
                if count % 3 == 0:
                    pushes.append(1)
                    writer.write(SEQ_HDR.pack(4, 99, 999_999) + b"push")
                if len(held) == 2:
                    writer.write(held[1] + held[0])
                    held.clear()
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    with AsyncioServer(handler) as server:
        report = sw.swarm(
            server.address,
            format=SEQ,
            clients=4,
            requests=400,
            in_flight=2,
            correlate="seq",
            expect="echo",
            msg_id=7,
            timeout=2,
        )
    assert report.errors == {}
    assert (report.sent, report.received) == (400, 400)
    assert report.pushed == len(pushes) >= 4 * (100 // 3) - 4


def test_a_stall_under_rate_shows_in_p99():
    """Open loop: the server stops answering for a second; requests due meanwhile count their
    latency from when they were due, so p99 shows the stall."""
    start = time.monotonic()

    def stalls_once(sock):
        stalled = False
        for body in frames(sock):
            if not stalled and time.monotonic() - start > 1.0:
                stalled = True
                time.sleep(1.0)
            sock.sendall(LEN.pack(len(body)) + body)

    with Server(stalls_once) as server:
        report = sw.swarm(server.address, clients=2, rate=200, duration=3, timeout=5)
    assert report.errors == {}
    assert report.latency["p99"] > 0.5
    assert report.latency["p50"] < 0.1
    assert max(s["p99"] for s in report.timeline) > 0.5


def test_a_rate_is_held_within_5_percent():
    with Server(echo) as server:
        report = sw.swarm(server.address, clients=10, rate=2000, duration=5)
    assert report.errors == {}
    assert report.throughput == pytest.approx(2000, rel=0.05)


def test_hello_pairs_are_sent_once_per_client_before_requests():
    logins = []

    def needs_login(sock):
        stream = frames(sock)
        first = next(stream)
        logins.append(first)
        sock.sendall(LEN.pack(2) + b"ok")
        for body in stream:
            if body == b"login:alice":
                body = b"second login!"
            sock.sendall(LEN.pack(len(body)) + body)

    fmt = sw.PacketFormat("!I")
    with Server(needs_login) as server:
        report = sw.swarm(
            server.address,
            format=fmt,
            clients=3,
            requests=30,
            hello=[(0, b"login:alice")],
            expect="echo",
        )
    assert logins == [b"login:alice"] * 3
    assert report.errors == {} and report.received == 30


def test_tls_against_pythons_ssl(pki):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])

    def tls_echo(sock):
        with context.wrap_socket(sock, server_side=True) as tls:
            echo(tls)

    with Server(tls_echo) as server:
        tls = sw.TlsConfig.client(pki["ca"], server_name="localhost")
        report = sw.swarm(server.address, clients=3, requests=300, tls=tls, expect="echo")
    assert report.errors == {} and report.received == 300


def test_bad_arguments():
    addr = ("127.0.0.1", 9)
    with pytest.raises(ValueError, match="exactly one of duration"):
        sw.swarm(addr)
    with pytest.raises(ValueError, match="exactly one of duration"):
        sw.swarm(addr, duration=1, requests=10)
    with pytest.raises(ValueError, match="expect"):
        sw.swarm(addr, requests=1, expect="same")
    with pytest.raises(TypeError, match="no 'seq' field"):
        sw.swarm(addr, requests=1, correlate="seq")
    with pytest.raises(ValueError, match="clients"):
        sw.swarm(addr, requests=1, clients=0)
    with pytest.raises(ValueError, match="body"):
        sw.swarm(addr, requests=1, body=[])
    with pytest.raises(sw.FrameTooLarge):
        sw.swarm(addr, requests=1, format=sw.PacketFormat("!I", max_body=8), body=b"x" * 9)


def test_progress_snapshots_each_second(capsys):
    snapshots = []
    with Server(echo) as server:
        sw.swarm(server.address, clients=2, duration=2.5, progress=snapshots.append)
        assert len(snapshots) == 2
        assert {"elapsed", "connected", "sent", "received", "errors", "rate", "p99"} <= set(
            snapshots[0]
        )
        assert snapshots[0]["connected"] == 2 and snapshots[1]["rate"] > 0
        sw.swarm(server.address, clients=2, duration=2.5, progress=True)
    lines = capsys.readouterr().err.splitlines()  # not a terminal: a line per second
    assert len(lines) == 2 and "req/s" in lines[0] and "p99" in lines[0]


@pytest.mark.parametrize("runner", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_aio_swarm_does_not_block_the_loop(runner):
    async def main(address):
        ticks = []

        async def ticker():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        report = await aio.swarm(address, clients=4, duration=1, expect="echo")
        task.cancel()
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        return report, max(gaps)

    with Server(echo) as server:
        report, gap = runner(main(server.address))
    assert report.errors == {} and report.received > 0
    assert gap < 0.3


def test_ctrl_c_returns_the_partial_report():
    code = textwrap.dedent(
        """
        import sockwire, time
        fmt = sockwire.PacketFormat()
        gw = sockwire.Gateway(("127.0.0.1", 0), fmt)
        gw.route()(lambda client, packet: packet)
        with gw:
            print("running", flush=True)
            began = time.monotonic()
            report = sockwire.swarm(gw.address, clients=20, duration=60)
            print("interrupted", report.interrupted, "after", round(time.monotonic() - began, 1))
            print("received", report.received, "errors", report.errors, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "running\n"
    time.sleep(1.5)
    interrupted_at = time.monotonic()
    proc.send_signal(2)  # SIGINT, as Ctrl-C
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert time.monotonic() - interrupted_at < 5
    assert "interrupted True" in out
    received = int(out.split("received ")[1].split()[0])
    assert received > 0 and "errors {}" in out
