"""sockwire.aio: AsyncConnection against real peers on loopback, on asyncio and on uvloop."""

import asyncio
import errno
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import sockwire as sw
from sockwire import aio

GAME = sw.PacketFormat("!IH", ("length", "msg_id"))


class Peer:
    """A stdlib server in a thread: accepts one connection and runs `script(sock)` on it."""

    def __init__(self, script):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.error = None
        self.result = None
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script):
        try:
            sock, _ = self.listener.accept()
            with sock:
                sock.settimeout(10)
                self.result = script(sock)
        except BaseException as exc:  # reported by join()
            self.error = exc
        finally:
            self.listener.close()

    def join(self):
        self.thread.join(10)
        assert not self.thread.is_alive(), "the peer did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def echo(fmt=GAME):
    """A peer script that echoes frames back until the client closes."""

    def script(sock):
        decoder = fmt.decoder()
        count = 0
        while data := sock.recv(65536):
            for packet in decoder.feed(data):
                sock.sendall(fmt.pack(packet.body, msg_id=packet.msg_id))
                count += 1
        return count

    return script


# --- the basics -------------------------------------------------------------------------------


def test_request_send_recv_and_close(run):
    peer = Peer(echo())

    async def main():
        conn = await aio.connect(peer.address, GAME, timeout=5)
        assert isinstance(conn, aio.AsyncConnection)
        assert conn.format == GAME and not conn.closed
        reply = await conn.request(b"hello", msg_id=7)
        assert reply == sw.Packet(b"hello", msg_id=7)
        await conn.send(b"one", msg_id=1)
        await conn.send_many([b"two", sw.Packet(b"three", msg_id=3)], msg_id=2)
        got = [await conn.recv() for _ in range(3)]
        assert [(p.body, p.msg_id) for p in got] == [(b"one", 1), (b"two", 2), (b"three", 3)]
        await conn.close()
        assert conn.closed
        await conn.close()  # again: nothing

    run(main())
    assert peer.join() == 4


def test_async_with_and_async_for_end_at_the_peers_close(run):
    def script(sock):
        sock.sendall(b"".join(GAME.pack(b"%d" % i) for i in range(100)))

    peer = Peer(script)

    async def main():
        async with await aio.connect(peer.address, GAME) as conn:
            bodies = [p.body async for p in conn]
            with pytest.raises(sw.ConnectionClosed):
                await conn.recv()
        assert conn.closed
        return bodies

    assert run(main()) == [b"%d" % i for i in range(100)]
    peer.join()


def test_a_closed_connection_raises_ebadf(run):
    peer = Peer(echo())

    async def main():
        conn = await aio.connect(peer.address, GAME)
        await conn.close()
        for call in (conn.recv(), conn.send(b"x"), conn.request(b"x")):
            with pytest.raises(OSError) as info:
                await call
            assert info.value.errno == errno.EBADF

    run(main())
    peer.join()


def test_close_wakes_a_receiver_waiting_in_another_task(run):
    peer = Peer(echo())

    async def main():
        conn = await aio.connect(peer.address, GAME)
        waiting = asyncio.ensure_future(conn.recv())
        await asyncio.sleep(0.05)
        await conn.close()
        with pytest.raises(OSError) as info:
            await waiting
        assert info.value.errno == errno.EBADF

    run(main())
    peer.join()


def test_the_format_compresses_and_encrypts(run):
    key = bytes(range(32))
    fmt = sw.PacketFormat(
        "!IHB",
        ("length", "msg_id", "flags"),
        compress=sw.Compression("zstd"),
        cipher=sw.Cipher("aes-256-gcm", key),
    )
    peer = Peer(echo(fmt))

    async def main():
        async with await aio.connect(peer.address, fmt) as conn:
            body = b"compress me " * 1000
            return await conn.request(body, msg_id=4)

    reply = run(main())
    assert reply.body == b"compress me " * 1000 and reply.msg_id == 4
    peer.join()


def test_many_connections_at_once_each_get_their_own_replies(run):
    gw = sw.Gateway(("127.0.0.1", 0), GAME)

    @gw.route()
    def handler(client, packet):
        return packet.body

    async def client(i):
        async with await aio.connect(gw.address, GAME, timeout=10) as conn:
            for j in range(50):
                body = b"%d:%d" % (i, j)
                assert (await conn.request(body)).body == body
        return i

    async def main():
        return await asyncio.gather(*(client(i) for i in range(100)))

    with gw:
        assert run(main(), timeout=60) == list(range(100))


def test_receivers_take_packets_in_the_order_they_asked(run):
    # Two tasks wait to receive; three packets arrive while the loop is busy (a blocking
    # sleep), so no task has run since. A third receiver asking now must wait its turn: the
    # first two asked first and get the first two packets.
    frames = b"".join(GAME.pack(b"%d" % i) for i in range(3))
    go = threading.Event()

    def script(sock):
        go.wait(10)
        sock.sendall(frames)
        time.sleep(0.5)

    peer = Peer(script)

    async def main():
        async with await aio.connect(peer.address, GAME, timeout=5) as conn:
            first = asyncio.ensure_future(conn.recv())
            second = asyncio.ensure_future(conn.recv())
            await asyncio.sleep(0.05)  # both are waiting
            go.set()
            time.sleep(0.3)  # the packets arrive; the loop runs nothing meanwhile
            third = await conn.recv()
            return [(await first).body, (await second).body, third.body]

    assert run(main()) == [b"0", b"1", b"2"]
    peer.join()


def test_requests_from_several_tasks_get_replies_in_order(run):
    peer = Peer(echo())

    async def main():
        async with await aio.connect(peer.address, GAME) as conn:
            bodies = [b"%d" % i for i in range(200)]
            replies = await asyncio.gather(*(conn.request(b) for b in bodies))
            assert [r.body for r in replies] == bodies

    run(main())
    peer.join()


# --- errors: the sync Connection's ------------------------------------------------------------


def test_connect_refused(run):
    with socket.create_server(("127.0.0.1", 0)) as s:
        address = s.getsockname()
    with pytest.raises(ConnectionRefusedError):
        run(aio.connect(address, GAME))


def test_connect_to_a_name_that_does_not_resolve(run):
    with pytest.raises(socket.gaierror):
        run(aio.connect(("no-such-host.invalid", 80), GAME))


def test_a_silent_tls_server_times_out(run, pki):
    with socket.create_server(("127.0.0.1", 0)) as silent:
        tls = sw.TlsConfig.client(ca=pki["ca"])
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            run(aio.connect(silent.getsockname(), GAME, timeout=0.3, tls=tls))
        assert time.monotonic() - start < 5


def test_bad_arguments(run):
    with pytest.raises(ValueError):
        run(aio.connect(("127.0.0.1", 1), GAME, timeout=-1))
    with pytest.raises(TypeError):
        run(aio.connect(("127.0.0.1", 1), GAME, timeout="1"))
    with pytest.raises(TypeError):
        run(aio.connect("127.0.0.1:1", GAME))
    with pytest.raises(TypeError):
        aio.AsyncConnection()


def test_recv_times_out_and_the_connection_goes_on(run):
    def script(sock):
        assert recv_exactly(sock, 6) == GAME.pack(b"")
        sock.sendall(GAME.pack(b"late"))

    peer = Peer(script)

    async def main():
        async with await aio.connect(peer.address, GAME, timeout=0.2) as conn:
            with pytest.raises(TimeoutError):
                await conn.recv()  # the connection's timeout
            with pytest.raises(TimeoutError):
                await conn.recv(timeout=0.05)
            await conn.send(b"")
            return await conn.recv(timeout=5)

    assert run(main()).body == b"late"
    peer.join()


def test_deadlines_hold_after_many_requests_share_one_timer(run):
    """One timer serves a connection's deadlines: requests that finish in time for longer than
    the timeout (the timer fires with nothing due and sets itself again), then a recv that gets
    nothing still times out on time, and different deadlines in several tasks each hold."""
    gw = sw.Gateway(("127.0.0.1", 0), GAME)

    @gw.route(1)
    def echo_(client, packet):
        return packet.body

    async def main():
        loop = asyncio.get_running_loop()
        async with await aio.connect(gw.address, GAME, timeout=0.3) as conn:
            began = loop.time()
            while loop.time() - began < 0.7:
                assert (await conn.request(b"x", msg_id=1)).body == b"x"
            began = loop.time()
            with pytest.raises(TimeoutError):
                await conn.recv()
            assert 0.25 < loop.time() - began < 2

            async def waits(timeout):
                began = loop.time()
                with pytest.raises(TimeoutError):
                    await conn.recv(timeout=timeout)
                return loop.time() - began

            # the longest first: the timer must move to the earlier deadlines that follow
            took = await asyncio.gather(waits(0.6), waits(0.1), waits(0.3))
            assert took[1] < took[2] < took[0]
            assert took[0] > 0.55 and took[1] > 0.08 and took[2] > 0.25
            assert (await conn.request(b"still", msg_id=1, timeout=5)).body == b"still"

    with gw:
        run(main())


def test_eof_inside_a_frame_is_an_incomplete_frame_then_closed(run):
    def script(sock):
        sock.sendall(GAME.pack(b"whole") + GAME.pack(b"cut short")[:7])

    peer = Peer(script)

    async def main():
        conn = await aio.connect(peer.address, GAME)
        assert (await conn.recv()).body == b"whole"
        with pytest.raises(sw.IncompleteFrame):
            await conn.recv()
        with pytest.raises(sw.ConnectionClosed):
            await conn.recv()
        await conn.close()

    run(main())
    peer.join()


def test_a_bad_frame_comes_after_the_packets_before_it_then_the_connection_is_closed(run):
    fmt = sw.PacketFormat("!IH", ("length", "msg_id"), max_body=100)

    def script(sock):
        sock.sendall(fmt.pack(b"ok") + struct.pack("!IH", 5000, 1) + b"x" * 50)
        time.sleep(0.2)

    peer = Peer(script)

    async def main():
        conn = await aio.connect(peer.address, fmt)
        assert (await conn.recv()).body == b"ok"
        with pytest.raises(sw.FrameTooLarge):
            await conn.recv()
        with pytest.raises(sw.ConnectionClosed, match="bad frame"):
            await conn.recv()
        await conn.close()

    run(main())
    peer.join()


def test_a_tampered_packet_is_an_authentication_error(run):
    fmt = sw.PacketFormat("!I", ("length",), cipher=sw.Cipher("chacha20-poly1305", bytes(32)))

    def script(sock):
        frame = bytearray(fmt.pack(b"secret"))
        frame[-1] ^= 1
        sock.sendall(bytes(frame))

    peer = Peer(script)

    async def main():
        async with await aio.connect(peer.address, fmt) as conn:
            with pytest.raises(sw.AuthenticationError):
                await conn.recv()

    run(main())
    peer.join()


def test_a_reset_is_connection_reset_error(run):
    def script(sock):
        recv_exactly(sock, 6)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    peer = Peer(script)

    async def main():
        async with await aio.connect(peer.address, GAME) as conn:
            await conn.send(b"")
            with pytest.raises(ConnectionResetError):
                await conn.recv(timeout=5)
            with pytest.raises(sw.ConnectionClosed):
                await conn.recv()

    run(main())
    peer.join()


# --- TLS --------------------------------------------------------------------------------------


def tls_echo_server(pki):
    """Python's ssl serving framed echo in a thread: the interop peer."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["cert"], pki["key"])

    def script(sock):
        with ctx.wrap_socket(sock, server_side=True) as tls:
            return echo()(tls)

    return Peer(script)


def test_tls_against_pythons_ssl(run, pki):
    peer = tls_echo_server(pki)

    async def main():
        tls = sw.TlsConfig.client(ca=pki["ca"])
        async with await aio.connect(peer.address, GAME, tls=tls, timeout=5) as conn:
            big = bytes(range(256)) * 1000
            assert (await conn.request(b"over tls")).body == b"over tls"
            assert (await conn.request(big)).body == big

    run(main())
    assert peer.join() == 2


def test_tls_with_an_untrusted_certificate_fails_like_ssl(run, pki):
    peer = tls_echo_server(pki)
    tls = sw.TlsConfig.client(ca=pki["other_ca"])
    with pytest.raises(ssl.SSLCertVerificationError):
        run(aio.connect(peer.address, GAME, tls=tls, timeout=5))
    with pytest.raises(ssl.SSLError):
        peer.join()


# --- cancellation -----------------------------------------------------------------------------


def test_a_cancelled_recv_loses_no_packet(run):
    count = 300

    def script(sock):
        # Packets arrive at uneven moments while the client keeps cancelling its receives.
        for i in range(count):
            sock.sendall(GAME.pack(b"%d" % i))
            if i % 7 == 0:
                time.sleep(0.002)

    peer = Peer(script)

    async def main():
        got = []
        cancelled = 0
        async with await aio.connect(peer.address, GAME) as conn:
            while len(got) < count:
                try:
                    packet = await asyncio.wait_for(conn.recv(), 0.0005)
                except TimeoutError:
                    cancelled += 1
                    continue
                got.append(packet.body)
        return got, cancelled

    got, cancelled = run(main(), timeout=60)
    assert got == [b"%d" % i for i in range(count)]
    assert cancelled > 0  # the race was run
    peer.join()


def test_a_recv_cancelled_directly_leaves_the_packet_for_the_next(run):
    gate = threading.Event()

    def script(sock):
        gate.wait(10)
        sock.sendall(GAME.pack(b"first"))
        recv_exactly(sock, 6)
        sock.sendall(GAME.pack(b"second"))

    peer = Peer(script)

    async def main():
        async with await aio.connect(peer.address, GAME) as conn:
            # Cancelled while nothing has arrived.
            task = asyncio.ensure_future(conn.recv())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Cancelled after the packet arrived and its wake-up was rung, before the task
            # could run: the loop is held (a blocking sleep) across the arrival.
            task = asyncio.ensure_future(conn.recv())
            await asyncio.sleep(0.05)
            gate.set()
            time.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            first = await conn.recv(timeout=5)
            second = await conn.request(b"", timeout=5)
            return first.body, second.body

    assert run(main()) == (b"first", b"second")
    peer.join()


def test_a_cancelled_send_leaves_no_half_frame(run):
    body = b"b" * 60_000
    reading = threading.Event()

    def script(sock):
        reading.wait(10)
        decoder = GAME.decoder()
        packets = []
        sock.settimeout(2)
        try:
            while data := sock.recv(65536):
                packets.extend(decoder.feed(data))
        except TimeoutError:
            pass
        assert decoder.pending == 0  # nothing cut
        return packets

    peer = Peer(script)

    async def main():
        conn = await aio.connect(peer.address, GAME, timeout=0.2)
        sent = 0
        # The peer does not read: sends queue until one has to wait for room, and times out.
        with pytest.raises(TimeoutError):
            while True:
                await conn.send(body, msg_id=sent % 60000)
                sent += 1
        # A send cancelled while it waits for room sends nothing.
        task = asyncio.ensure_future(conn.send(b"never", msg_id=9999))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        reading.set()
        await conn.close()  # writes what was queued
        return sent

    sent = run(main(), timeout=60)
    packets = peer.join()
    assert len(packets) == sent
    assert all(p.body == body for p in packets)
    assert 9999 not in [p.msg_id for p in packets]


# --- the loop is never blocked ----------------------------------------------------------------


def test_the_loop_keeps_running_while_connections_wait(run):
    gate = threading.Event()

    def script(sock):
        recv_exactly(sock, 6)
        gate.wait(10)
        sock.sendall(GAME.pack(b"slow reply"))

    peer = Peer(script)

    async def main():
        async with await aio.connect(peer.address, GAME) as conn:
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            t = asyncio.ensure_future(ticker())
            request = asyncio.ensure_future(conn.request(b""))
            await asyncio.sleep(0.3)
            gate.set()
            reply = await request
            t.cancel()
            return reply, ticks

    reply, ticks = run(main())
    assert reply.body == b"slow reply"
    assert ticks >= 10
    peer.join()


# --- exit ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_process_that_exits_with_requests_in_flight_exits_cleanly(loop):
    gw = sw.Gateway(("127.0.0.1", 0), GAME)

    @gw.route()
    def echo_but_y(client, packet):
        # "y" gets no reply: those requests are still waiting when the process exits.
        return None if packet.body == b"y" else packet.body

    new_loop = "uvloop.new_event_loop()" if loop == "uvloop" else "asyncio.new_event_loop()"
    script = """
        import asyncio, uvloop, sockwire
        from sockwire import aio
        fmt = sockwire.PacketFormat("!IH", ("length", "msg_id"))
        async def main():
            conns = [await aio.connect(ADDRESS, fmt) for _ in range(20)]
            for c in conns:
                for _ in range(50):
                    await c.send(b"x" * 100)
            for c in conns:
                asyncio.ensure_future(c.request(b"y"))
            await asyncio.sleep(0.05)
            print("exiting", flush=True)
            asyncio.get_running_loop().stop()  # nothing closed, requests in flight
        loop = NEW_LOOP
        try:
            loop.run_until_complete(main())
        except RuntimeError:
            pass  # the loop stopped before main() finished: now the interpreter exits
        """
    with gw:
        code = textwrap.dedent(script)
        code = code.replace("ADDRESS", repr(gw.address)).replace("NEW_LOOP", new_loop)
        for _ in range(3):
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stderr
            assert "exiting" in done.stdout
