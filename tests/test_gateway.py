"""The Gateway of DESIGN section 4, against real clients on loopback (stdlib sockets)."""

import logging
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import pytest

import sockwire as sw

GAME = sw.PacketFormat("!IHB", ("length", "msg_id", "flags"))
ROOMS = sw.PacketFormat("!IHH", ("length", "msg_id", "room"))


class Client:
    """A stdlib socket speaking a format, as a test peer."""

    def __init__(self, addr, fmt=GAME, timeout=5.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.fmt = fmt
        self.decoder = fmt.decoder()
        self.ready = []

    def send(self, body=b"", msg_id=0, **fields):
        self.sock.sendall(self.fmt.pack(body, msg_id=msg_id, **fields))

    def recv(self):
        while not self.ready:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the gateway closed the connection")
            self.ready.extend(self.decoder.feed(data))
        return self.ready.pop(0)

    def request(self, body=b"", msg_id=0, **fields):
        self.send(body, msg_id, **fields)
        return self.recv()

    def closed_by_peer(self, within=5.0):
        self.sock.settimeout(within)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self):
        self.sock.close()


def wait_for(predicate, within=5.0):
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def events():
    """What on_connect / on_disconnect saw, in order."""
    return []


def echo_gateway(events, fmt=GAME, **kwargs):
    gw = sw.Gateway(("127.0.0.1", 0), fmt, **kwargs)

    @gw.on_connect
    def connected(client):
        events.append(("connect", client.client_fd))

    @gw.on_disconnect
    def disconnected(client, reason):
        events.append(("disconnect", client.client_fd, reason))

    @gw.route()
    def echo(client, packet):
        return packet.body

    return gw


# --- routes and replies -------------------------------------------------------------------


def test_routes_by_msg_id_default_route_and_replies():
    gw = sw.Gateway(("127.0.0.1", 0), ROOMS)
    seen = []

    @gw.route(1)
    def login(client, packet):
        client.state["user"] = packet.body
        return b"ok"

    @gw.route(2, 3)
    def both(client, packet):
        seen.append(packet.msg_id)
        return sw.Packet(client.state["user"], msg_id=99, room=7)

    @gw.route(4)
    def silent(client, packet):
        seen.append("silent")

    @gw.route()
    def fallback(client, packet):
        return b"default " + str(packet.msg_id).encode()

    with gw:
        c = Client(gw.address, ROOMS)
        # bytes: the request's msg_id and other header fields come back
        assert c.request(b"alice", msg_id=1, room=5) == sw.Packet(b"ok", msg_id=1, room=5)
        # a Packet goes as it is
        assert c.request(b"", msg_id=2) == sw.Packet(b"alice", msg_id=99, room=7)
        assert c.request(b"", msg_id=3).msg_id == 99
        c.send(b"", msg_id=4)  # None: no reply
        assert c.request(b"", msg_id=42) == sw.Packet(b"default 42", msg_id=42, room=0)
        assert seen == [2, 3, "silent"]
        c.close()


def test_a_bytes_reply_does_not_copy_the_request_flags():
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    gw.route(5)(lambda client, packet: b"pong")
    with gw:
        c = Client(gw.address)
        assert c.request(b"ping", msg_id=5, flags=3) == sw.Packet(b"pong", msg_id=5, flags=0)
        c.close()


def test_unrouted_packets_are_counted_and_the_client_stays():
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    gw.route(1)(lambda client, packet: b"one")
    with gw:
        c = Client(gw.address)
        c.send(b"?", msg_id=2)
        assert c.request(b"", msg_id=1).body == b"one"  # still connected
        assert gw.stats()["unrouted"] == 1
        c.close()


def test_route_registration_errors():
    gw = sw.Gateway(("127.0.0.1", 0))
    gw.route(1)(lambda c, p: None)
    with pytest.raises(ValueError, match="msg_id 1"):
        gw.route(1, 2)(lambda c, p: None)
    gw.route()(lambda c, p: None)
    with pytest.raises(ValueError, match="default route"):
        gw.route()(lambda c, p: None)
    with gw:
        with pytest.raises(RuntimeError):
            gw.route(9)(lambda c, p: None)
        with pytest.raises(RuntimeError):
            gw.on_connect(lambda c: None)


def test_per_client_state_is_one_dict_for_the_connection():
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    dicts = []

    @gw.route()
    def count(client, packet):
        client.state["n"] = client.state.get("n", 0) + 1
        dicts.append(client.state)
        return str(client.state["n"]).encode()

    with gw:
        a, b = Client(gw.address), Client(gw.address)
        assert [a.request().body for _ in range(3)] == [b"1", b"2", b"3"]
        assert b.request().body == b"1"
        assert dicts[0] is dicts[1] is dicts[2] and dicts[3] is not dicts[0]
        fd = next(info.client_fd for info in gw.clients if info.state.get("n") == 3)
        assert gw.clients.get(fd).state is dicts[0]
        a.close()
        b.close()


def test_a_clients_packets_are_handled_in_order_one_at_a_time():
    gw = sw.Gateway(("127.0.0.1", 0), GAME, handler_threads=3)
    log = {}
    busy = set()
    lock = threading.Lock()

    @gw.route()
    def record(client, packet):
        with lock:
            assert client.client_fd not in busy  # the previous handler of this client returned
            busy.add(client.client_fd)
        log.setdefault(client.client_fd, []).append(int(packet.body))
        time.sleep(0.0005)
        with lock:
            busy.discard(client.client_fd)

    with gw:
        clients = [Client(gw.address) for _ in range(6)]
        for c in clients:
            c.sock.sendall(b"".join(GAME.pack(str(i).encode()) for i in range(200)))
        wait_for(lambda: sum(len(v) for v in log.values()) == 1200, within=20)
        assert all(v == list(range(200)) for v in log.values())
        assert gw.stats()["handler_errors"] == 0
        for c in clients:
            c.close()


# --- connections: admission, reasons, registry ----------------------------------------------


def test_surplus_connections_are_closed_at_once_and_counted(events):
    gw = echo_gateway(events, max_clients=2)
    with gw:
        a, b = Client(gw.address), Client(gw.address)
        a.request(b"x")
        b.request(b"x")
        c = Client(gw.address)
        assert c.closed_by_peer()
        assert gw.stats()["rejected"] == 1
        assert len(gw.clients) == 2
        assert [e[0] for e in events] == ["connect", "connect"]  # not for the surplus one
        a.close()
        b.close()


def test_disconnect_reasons(events):
    fmt = sw.PacketFormat("!IHB", ("length", "msg_id", "flags"), max_body=64)
    gw = echo_gateway(events, fmt, idle_timeout=0.5)

    def reasons():
        return [e[2] for e in events if e[0] == "disconnect"]

    def departed(count):
        # Different clients' handlers may run on different threads: wait for each departure
        # before the next, so that the list is in the order the clients left.
        wait_for(lambda: len(reasons()) == count)

    with gw:
        closed = Client(gw.address, fmt)
        closed.request(b"hi")
        closed.close()
        departed(1)
        reset = Client(gw.address, fmt)
        reset.request(b"hi")
        reset.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        reset.close()
        departed(2)
        kicked = Client(gw.address, fmt)
        kicked.request(b"hi")
        port = kicked.sock.getsockname()[1]
        assert gw.kick(gw.clients.by_port(port).client_fd, "enough") is True
        assert kicked.closed_by_peer()
        departed(3)
        too_large = Client(gw.address, fmt)
        too_large.request(b"hi")
        too_large.sock.sendall(struct.pack("!IHB", 1000, 1, 0))
        assert too_large.closed_by_peer()
        departed(4)
        idle = Client(gw.address, fmt)
        idle.request(b"hi")
        assert idle.closed_by_peer(within=3)
        departed(5)
    assert reasons() == ["closed", "reset", "enough", "protocol error", "idle"]
    stats = gw.stats()
    assert stats["protocol_errors"] == 1 and stats["idle_disconnects"] == 1


def test_bad_frame_decryption_and_bomb_each_cut_only_that_client(events):
    key = os.urandom(32)
    fmt = sw.PacketFormat(
        "!IHB",
        ("length", "msg_id", "flags"),
        max_body=1 << 16,
        compress="zlib",
        cipher=sw.Cipher("aes-256-gcm", key),
    )
    gw = echo_gateway(events, fmt)
    with gw:
        good = Client(gw.address, fmt)
        assert good.request(b"hello" * 100).body == b"hello" * 100
        # garbage header: a negative... no, a length shorter than nothing: wrong flags work too
        forged = Client(gw.address, fmt)
        forged.sock.sendall(GAME.pack(b"plaintext", msg_id=1))  # not encrypted
        assert forged.closed_by_peer()
        tampered = Client(gw.address, fmt)
        frame = bytearray(fmt.pack(b"x" * 50, msg_id=1))
        frame[-1] ^= 1
        tampered.sock.sendall(bytes(frame))
        assert tampered.closed_by_peer()
        bomb = Client(gw.address, fmt)
        big = sw.PacketFormat(
            "!IHB",
            ("length", "msg_id", "flags"),
            max_body=1 << 24,
            compress="zlib",
            cipher=sw.Cipher("aes-256-gcm", key),
        )
        bomb.sock.sendall(big.pack(bytes(1 << 22), msg_id=1))  # 4 MiB of zeros, tiny on the wire
        assert bomb.closed_by_peer()
        assert good.request(b"still here").body == b"still here"
        good.close()
        wait_for(lambda: len([e for e in events if e[0] == "disconnect"]) == 4)
    reasons = sorted(e[2] for e in events if e[0] == "disconnect")
    assert reasons == ["authentication failed", "authentication failed", "closed", "protocol error"]


def test_a_raising_handler_is_logged_counted_and_the_client_stays(caplog):
    gw = sw.Gateway(("127.0.0.1", 0), GAME)

    @gw.route(1)
    def broken(client, packet):
        raise ValueError("handler bug")

    @gw.route(2)
    def fine(client, packet):
        return b"fine"

    @gw.route(3)
    def wrong_type(client, packet):
        return 42

    with caplog.at_level(logging.ERROR, logger="sockwire.gateway"), gw:
        c = Client(gw.address)
        c.send(b"", msg_id=1)
        c.send(b"", msg_id=3)
        assert c.request(b"", msg_id=2).body == b"fine"
        c.close()
    records = [r for r in caplog.records if r.name == "sockwire.gateway"]
    assert len(records) == 2
    assert "msg_id 1" in records[0].getMessage()
    assert records[0].exc_info and records[0].exc_info[0] is ValueError
    assert "handler bug" in caplog.text and "Traceback" in caplog.text
    assert records[1].exc_info[0] is TypeError
    assert gw.stats()["handler_errors"] == 2


def test_on_connect_that_raises_keeps_the_client(caplog):
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    gw.on_connect(lambda client: 1 / 0)
    gw.route()(lambda client, packet: b"here")
    with caplog.at_level(logging.ERROR, logger="sockwire.gateway"), gw:
        c = Client(gw.address)
        assert c.request().body == b"here"
        c.close()
    assert "ZeroDivisionError" in caplog.text
    assert gw.stats()["handler_errors"] == 1


def test_a_client_killed_mid_frame_leaves_no_trace(events):
    gw = echo_gateway(events)
    with gw:
        c = Client(gw.address)
        c.request(b"x")
        c.sock.sendall(GAME.pack(b"y" * 100)[:20])
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        wait_for(lambda: len(gw.clients) == 0)
        wait_for(lambda: len(events) == 2)
        assert [e[0] for e in events] == ["connect", "disconnect"]


def test_send_broadcast_kick_and_stale_client_info(events):
    gw = echo_gateway(events)
    with gw:
        a, b, c = (Client(gw.address) for _ in range(3))
        for x in (a, b, c):
            x.request(b"hi")
        infos = {i.fd_port: i for i in gw.clients}
        info_a = infos[a.sock.getsockname()[1]]
        info_b = infos[b.sock.getsockname()[1]]
        gw.send(info_a, b"to a", msg_id=7)
        assert a.recv() == sw.Packet(b"to a", msg_id=7)
        gw.send(info_b.client_fd, b"to b by fd")
        assert b.recv().body == b"to b by fd"
        assert gw.broadcast(b"all but b", msg_id=8, exclude=[info_b]) == 2
        assert a.recv().body == b"all but b" and c.recv().body == b"all but b"
        assert gw.kick(info_a) is True
        assert a.closed_by_peer()
        wait_for(lambda: info_a.client_fd not in gw.clients or len(gw.clients) == 2)
        with pytest.raises(KeyError):
            gw.send(info_a, b"gone")
        assert gw.kick(info_a) is False
        # The fd number comes back for a new connection: the old ClientInfo never reaches it.
        d = Client(gw.address)
        d.request(b"hi")
        with pytest.raises(KeyError):
            gw.send(info_a, b"not for d")
        assert gw.kick(info_a) is False
        assert d.request(b"d still fine").body == b"d still fine"
        for x in (b, c, d):
            x.close()


def test_stats_keys_are_exactly_designs():
    with sw.Gateway(("127.0.0.1", 0)) as gw:
        assert list(gw.stats()) == [
            "accepted",
            "rejected",
            "active",
            "packets_in",
            "packets_out",
            "bytes_in",
            "bytes_out",
            "protocol_errors",
            "handler_errors",
            "unrouted",
            "slow_consumers",
            "idle_disconnects",
        ]


# --- flow control ------------------------------------------------------------------------------


def test_a_slow_consumer_is_cut_and_others_stay_fast(events):
    gw = sw.Gateway(("127.0.0.1", 0), GAME, send_queue=64)

    @gw.on_disconnect
    def gone(client, reason):
        events.append(reason)

    @gw.route(1)
    def flood(client, packet):
        for _ in range(200):
            try:
                gw.send(client, b"z" * 65536)
            except KeyError:
                return  # cut as a slow consumer

    @gw.route(2)
    def ping(client, packet):
        return b"pong"

    with gw:
        slow = Client(gw.address)  # never reads
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        fast = Client(gw.address)
        slow.send(b"", msg_id=1)  # one request: the client is cut while it sends nothing
        latencies = []
        for _ in range(200):
            start = time.perf_counter()
            assert fast.request(b"", msg_id=2).body == b"pong"
            latencies.append(time.perf_counter() - start)
        wait_for(lambda: "slow consumer" in events, within=10)
        assert gw.stats()["slow_consumers"] == 1
        assert sorted(latencies)[len(latencies) // 2] < 0.05
        fast.close()
        slow.close()


def test_when_handlers_fall_behind_the_gateway_stops_reading():
    gate = threading.Event()
    gw = sw.Gateway(("127.0.0.1", 0), GAME)

    @gw.route()
    def blocked(client, packet):
        gate.wait(20)

    with gw:
        c = Client(gw.address)
        c.sock.settimeout(3)
        chunk = b"".join(GAME.pack(b"x" * 1000) for _ in range(1000))  # ~1 MB
        sent = 0
        with pytest.raises(TimeoutError):
            for _ in range(500):  # ~500 MB: the gateway would have to buffer it all
                c.sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 200 << 20  # it stopped reading long before
        gate.set()
        c.close()


# --- lifecycle ----------------------------------------------------------------------------------


def test_start_stop_context_manager_and_address():
    gw = sw.Gateway(("127.0.0.1", 0))
    assert not gw.running
    with pytest.raises(RuntimeError):
        gw.address  # noqa: B018
    assert gw.start() is gw
    host, port = gw.address
    assert host == "127.0.0.1" and port > 0
    assert gw.running
    gw.stop()
    gw.stop()  # idempotent
    assert not gw.running


def test_a_failed_bind_raises_oserror():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        gw = sw.Gateway(taken.getsockname())
        with pytest.raises(OSError):
            gw.start()
        assert not gw.running


def test_stop_delivers_queued_replies_then_closes(events):
    gw = sw.Gateway(("127.0.0.1", 0), GAME)
    started = threading.Event()

    @gw.on_disconnect
    def gone(client, reason):
        events.append(reason)

    @gw.route()
    def slow_echo(client, packet):
        started.set()
        time.sleep(0.2)
        return packet.body

    gw.start()
    c = Client(gw.address)
    c.sock.sendall(GAME.pack(b"one") + GAME.pack(b"two"))
    started.wait(5)
    gw.stop()
    assert [c.recv().body, c.recv().body] == [b"one", b"two"]
    assert c.closed_by_peer()
    assert events == ["stopped"]
    assert len(gw.clients) == 0


def test_serve_forever_returns_when_stopped_from_a_handler():
    gw = sw.Gateway(("127.0.0.1", 0), GAME)

    @gw.route(9)
    def shutdown(client, packet):
        gw.stop()
        return b"bye"

    gw.start()
    addr = gw.address
    t = threading.Thread(target=lambda: Client(addr).request(b"", msg_id=9))
    t.start()
    gw.serve_forever()
    t.join(5)
    assert not gw.running


def test_a_process_that_exits_with_a_running_gateway_exits_cleanly():
    code = """
import socket, struct, sys, sockwire as sw
gw = sw.Gateway(("127.0.0.1", 0), handler_threads=2)
gw.route()(lambda client, packet: packet.body)
gw.on_disconnect(lambda client, reason: sys.stdout.write(reason + "\\n"))
gw.start()
clients = [socket.create_connection(gw.address) for _ in range(20)]
for c in clients:
    c.sendall(struct.pack("!I", 2) + b"hi")
    c.recv(6)
"""
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["stopped"] * 20


# --- formats and TLS ---------------------------------------------------------------------------


def test_compression_and_encryption_of_the_format():
    fmt = sw.PacketFormat(
        "!IHB",
        ("length", "msg_id", "flags"),
        compress=sw.Compression("zstd", min_size=64),
        cipher=sw.Cipher("chacha20-poly1305", os.urandom(32)),
    )
    gw = sw.Gateway(("127.0.0.1", 0), fmt)
    gw.route()(lambda client, packet: packet.body[::-1])
    with gw:
        c = Client(gw.address, fmt)
        for body in (b"short", b"long body " * 100):
            assert c.request(body, msg_id=3) == sw.Packet(body[::-1], msg_id=3)
        c.close()


def test_tls_gateway_with_a_python_ssl_client(pki):
    gw = sw.Gateway(("127.0.0.1", 0), GAME, tls=sw.TlsConfig.server(pki["cert"], pki["key"]))
    events = []
    gw.on_connect(lambda client: events.append("connect"))
    gw.route()(lambda client, packet: packet.body.upper())
    with gw:
        ctx = ssl.create_default_context()
        pki["trustme_ca"].configure_trust(ctx)
        raw = socket.create_connection(gw.address, timeout=5)
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(GAME.pack(b"secret", msg_id=4))
            decoder = GAME.decoder()
            got = []
            while not got:
                got = decoder.feed(s.recv(1024))
            assert got == [sw.Packet(b"SECRET", msg_id=4)]
        assert events == ["connect"]
        # a plaintext client on the TLS port is cut
        plain = Client(gw.address)
        plain.send(b"hello")
        assert plain.closed_by_peer()
