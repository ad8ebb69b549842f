"""Connection and connect(): packets over real loopback sockets."""

import socket
import struct
import threading
import time

import pytest

import sockwire as sw

GAME = sw.PacketFormat("!IHB", ("length", "msg_id", "flags"))


@pytest.fixture
def pair(connection_pair):
    """A client Connection and the server's Connection for it, both with the GAME format."""
    return connection_pair(GAME)


@pytest.fixture
def raw_pair(connection_pair):
    """A client Connection and the raw server socket (to write arbitrary bytes)."""
    return connection_pair(GAME, raw=True)


def test_send_recv_both_ways(pair):
    client, server = pair
    client.send(b"login", msg_id=1, flags=2)
    assert server.recv() == sw.Packet(b"login", msg_id=1, flags=2)
    server.send(b"ok", msg_id=1)
    assert client.recv() == sw.Packet(b"ok", msg_id=1)
    assert client.format == GAME
    assert isinstance(client.socket, sw.Socket)
    assert client.fileno() == client.socket.fileno()


def test_send_many_and_sticky_stream(pair):
    client, server = pair
    bodies = [bytes([i]) * (i * 50) for i in range(1, 11)]
    client.send_many(bodies, msg_id=7)
    client.send_many([sw.Packet(b"own", msg_id=9, flags=1)])
    got = [server.recv() for _ in range(11)]
    assert [p.body for p in got[:10]] == bodies
    assert {p.msg_id for p in got[:10]} == {7}
    assert got[10] == sw.Packet(b"own", msg_id=9, flags=1)


def test_request(pair):
    client, server = pair

    def serve():
        req = server.recv()
        server.send(req.body.upper(), msg_id=req.msg_id + 1)

    t = threading.Thread(target=serve)
    t.start()
    reply = client.request(b"ping", msg_id=10, timeout=5)
    t.join()
    assert reply == sw.Packet(b"PING", msg_id=11)


def test_send_and_request_take_arguments_as_python_methods_do(connection_pair):
    fmt = sw.PacketFormat("!IHB", ("length", "msg_id", "kind"))
    client, server = connection_pair(fmt)
    client.send(body=b"a", kind=2, msg_id=1)
    assert server.recv() == fmt.unpack(fmt.pack(b"a", 1, kind=2))
    server.send(b"b", 2)
    # timeout=None given explicitly is the socket's timeout, as when it is left out.
    assert client.request(b"x", 3, None, kind=4).body == b"b"
    assert server.recv().header == {"kind": 4}
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'body'"):
        client.send(msg_id=1)
    with pytest.raises(TypeError, match=r"takes from 1 to 3 positional arguments but 4"):
        client.request(b"x", 1, 5, 6)
    with pytest.raises(TypeError, match=r"multiple values for argument 'timeout'"):
        client.request(b"x", 1, 5, timeout=5)
    with pytest.raises(TypeError, match="no 'nope' field"):
        client.send(b"x", nope=1)
    with pytest.raises(TimeoutError):
        client.request(b"nobody answers", timeout=0.05)
    assert server.recv().body == b"nobody answers"  # nothing else was sent


def test_request_timeout_bounds_the_send_too(connection_pair):
    # A peer that never reads: 48 MiB cannot all go into the socket buffers, so the send
    # blocks; the request's timeout ends it, not the connection's own 10 s.
    fmt = sw.PacketFormat(max_body=64 << 20)
    client, _server = connection_pair(fmt)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        client.request(bytes(48 << 20), timeout=0.3)
    assert time.monotonic() - start < 5


def test_packets_already_received_come_without_waiting(pair):
    # One read takes in all three; the next calls take theirs from what was decoded, even
    # with a zero timeout, and still check their timeout argument.
    client, server = pair
    client.send_many([b"a", b"b", b"c"])
    assert server.recv(timeout=5).body == b"a"
    with pytest.raises(TypeError):
        server.recv(timeout="soon")
    assert server.recv(timeout=0).body == b"b"
    assert next(iter(server)).body == b"c"
    with pytest.raises(BlockingIOError):
        server.recv(timeout=0)


def test_iteration_until_eof(pair):
    client, server = pair
    client.send_many([b"a", b"b", b"c"])
    client.shutdown_write()  # half-close: the server sees EOF after the packets
    assert [p.body for p in server] == [b"a", b"b", b"c"]
    with pytest.raises(sw.ConnectionClosed):
        server.recv()
    server.send(b"still open the other way")
    assert client.recv().body == b"still open the other way"


def test_eof_inside_a_frame_is_incomplete_frame(raw_pair):
    client, raw = raw_pair
    frame = GAME.pack(b"truncated body", msg_id=3)
    raw.sendall(GAME.pack(b"whole") + frame[:10])
    raw.shutdown(sw.SHUT_WR)
    assert client.recv().body == b"whole"
    with pytest.raises(sw.IncompleteFrame) as info:
        client.recv()
    assert info.value.partial == frame[:10]
    assert info.value.expected == len(frame)


def test_eof_inside_a_header(raw_pair):
    client, raw = raw_pair
    raw.sendall(b"\x00\x00")
    raw.close()
    with pytest.raises(sw.IncompleteFrame) as info:
        client.recv()
    assert info.value.partial == b"\x00\x00" and info.value.expected is None


def test_recv_timeout(pair):
    client, _server = pair
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        client.recv(timeout=0.1)
    assert time.monotonic() - start < 2
    with pytest.raises(BlockingIOError):
        client.recv(timeout=0)


def test_recv_timeout_on_a_blocking_socket():
    with sw.server_listener(("127.0.0.1", 0), 1) as lst:
        conn = sw.connect(lst.getsockname(), GAME)  # no timeout: a blocking socket
        assert conn.socket.gettimeout() is None
        with pytest.raises(TimeoutError):
            conn.recv(timeout=0.05)
        assert conn.socket.gettimeout() is None
        conn.close()


def test_too_large_frame_closes_the_connection(raw_pair):
    client, raw = raw_pair
    small = sw.PacketFormat("!IHB", ("length", "msg_id", "flags"), max_body=100)
    conn = sw.Connection(client.socket, small)
    raw.sendall(small.pack(b"fine") + struct.pack("!IHB", 5000, 0, 0) + bytes(50))
    assert conn.recv().body == b"fine"  # packets before the bad frame are delivered first
    with pytest.raises(sw.FrameTooLarge) as info:
        conn.recv()
    assert info.value.length == 5000 and info.value.limit == 100
    assert conn.socket.fileno() == -1


def test_calls_after_a_bad_frame_say_the_connection_was_closed_because_of_it(raw_pair):
    client, raw = raw_pair
    fmt = sw.PacketFormat("!2sI", ("magic", "length"), expect={"magic": b"\xca\xfe"})
    conn = sw.Connection(client.socket, fmt)
    raw.sendall(b"\xde\xad" + bytes(10))
    with pytest.raises(sw.ProtocolError):
        conn.recv()
    for call in (conn.recv, lambda: conn.send(b"x"), conn.shutdown_write):
        with pytest.raises(sw.ConnectionClosed, match="closed after the peer sent a bad frame"):
            call()
    with pytest.raises(sw.ConnectionClosed, match="magic"):  # and which frame
        conn.recv()
    conn.close()  # closing again is fine


def test_garbage_header_closes_the_connection(raw_pair):
    client, raw = raw_pair
    fmt = sw.PacketFormat("!2sIH", ("magic", "length", "msg_id"), expect={"magic": b"\xca\xfe"})
    conn = sw.Connection(client.socket, fmt)
    raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(sw.ProtocolError, match="magic"):
        conn.recv()
    assert conn.socket.fileno() == -1


def test_peer_vanishing_mid_frame_with_reset(raw_pair):
    client, raw = raw_pair
    raw.sendall(GAME.pack(b"x" * 100)[:20])
    raw.setsockopt(sw.SOL_SOCKET, sw.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()  # RST
    with pytest.raises((ConnectionResetError, sw.IncompleteFrame)):
        client.recv()


def test_recv_releases_the_gil(pair):
    client, server = pair
    result = []
    t = threading.Thread(target=lambda: result.append(client.recv(timeout=5)))
    t.start()
    count, deadline = 0, time.monotonic() + 0.3
    while time.monotonic() < deadline:
        count += 1
    assert count > 10_000 and t.is_alive()
    server.send(b"late")
    t.join(5)
    assert result == [sw.Packet(b"late")]


def test_full_duplex_from_two_threads(pair):
    client, server = pair
    n = 2000

    def pump():
        for i in range(n):
            client.send(i.to_bytes(4, "big"), msg_id=1)

    def echo():
        for _ in range(n):
            p = server.recv()
            server.send(p.body, msg_id=2)

    threads = [threading.Thread(target=pump), threading.Thread(target=echo)]
    for t in threads:
        t.start()
    got = [int.from_bytes(client.recv().body, "big") for _ in range(n)]
    for t in threads:
        t.join()
    assert got == list(range(n))


def test_concurrent_senders_never_interleave_frames(pair):
    client, server = pair
    big = [bytes([k]) * 200_000 for k in range(4)]

    def send(body):
        for _ in range(5):
            client.send(body, msg_id=body[0])

    threads = [threading.Thread(target=send, args=(b,)) for b in big]
    for t in threads:
        t.start()
    got = [server.recv() for _ in range(20)]
    for t in threads:
        t.join()
    for p in got:
        assert p.body == big[p.msg_id]


def test_two_receivers_on_one_connection_is_an_error(pair):
    client, _server = pair
    outcome = []

    def first_receiver():
        try:
            client.recv(timeout=1)
        except TimeoutError as exc:
            outcome.append(exc)

    t = threading.Thread(target=first_receiver)
    t.start()
    time.sleep(0.2)
    with pytest.raises(RuntimeError, match="already receiving"):
        client.recv(timeout=0.1)
    t.join()
    assert len(outcome) == 1


def test_connection_adopts_a_stdlib_socket():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        raw = socket.create_connection(srv.getsockname())
        peer, _ = srv.accept()
        conn = sw.Connection(raw, GAME)
        assert raw.fileno() == -1  # sockwire owns the fd now
        peer.sendall(GAME.pack(b"hi", msg_id=4))
        assert conn.recv() == sw.Packet(b"hi", msg_id=4)
        conn.close()
        peer.close()


def test_connect_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(ConnectionRefusedError):
            sw.connect(s.getsockname())


def test_default_format_and_context_manager():
    with sw.server_listener(("127.0.0.1", 0), 1) as lst:
        with sw.connect(lst.getsockname()) as conn:
            assert conn.format == sw.PacketFormat()
            server = sw.Connection(sw.accept_client_connect(lst))
            conn.send(b"plain")
            assert server.recv() == sw.Packet(b"plain")
            server.close()
        assert conn.socket.fileno() == -1
