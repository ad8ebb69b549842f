"""The seed recipe's functions: options, listener, client, accept, and the client registry."""

import socket
import threading

import pytest

import sockwire as sw


@pytest.fixture
def listener_backlog():
    """The conftest `listener` with room for 3 clients: these tests fill it."""
    return 3


def connect_and_accept(listener, n=1):
    clients, accepted = [], []
    for _ in range(n):
        clients.append(sw.create_client(listener.getsockname(), timeout=5))
        accepted.append(sw.accept_client_connect(listener))
    return clients, accepted


def test_tcp_client_options_defaults():
    with sw.tcp_client_options() as s:
        assert isinstance(s, sw.Socket)
        assert s.family == socket.AF_INET and s.type == socket.SOCK_STREAM
        assert s.getsockopt(sw.IPPROTO_TCP, sw.TCP_NODELAY) == 1
        assert s.gettimeout() is None
    with sw.tcp_client_options(sw.AF_INET6, nodelay=False, rcvbuf=32768) as s:
        assert s.family == socket.AF_INET6
        assert s.getsockopt(sw.IPPROTO_TCP, sw.TCP_NODELAY) == 0
        with socket.socket(socket.AF_INET6) as ref:
            ref.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
            assert s.getsockopt(sw.SOL_SOCKET, sw.SO_RCVBUF) == ref.getsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF
            )


def test_tcp_server_options():
    with sw.tcp_server_options() as s:
        assert s.getsockopt(sw.SOL_SOCKET, sw.SO_REUSEADDR) == 1
        assert s.getblocking()
    with sw.tcp_server_options(reuse_addr=False, sndbuf=16384, blocking=False) as s:
        assert s.getsockopt(sw.SOL_SOCKET, sw.SO_REUSEADDR) == 0
        assert s.getsockopt(sw.SOL_SOCKET, sw.SO_SNDBUF) == 32768  # Linux doubles it
        assert not s.getblocking() and s.gettimeout() == 0.0
    with pytest.raises(ValueError):
        sw.tcp_server_options(sndbuf=0)


def test_server_listener_shape(listener):
    assert isinstance(listener, sw.Listener) and isinstance(listener, sw.Socket)
    assert listener.max_clients == 3
    assert isinstance(listener.clients, sw.ClientGroup)
    assert listener.clients is listener.clients
    assert listener.clients.max == 3
    host, port = listener.getsockname()
    assert host == "127.0.0.1" and port > 0
    assert listener.getsockopt(sw.SOL_SOCKET, sw.SO_REUSEADDR) == 1
    assert "sockwire.Listener" in repr(listener)


def test_server_listener_empty_host_means_all_ipv4_interfaces():
    with sw.server_listener(("", 0), 1) as lst:
        assert lst.getsockname()[0] == "0.0.0.0"
        with sw.create_client(("127.0.0.1", lst.getsockname()[1]), timeout=5):
            assert sw.accept_client_connect(lst).fileno() >= 0


def test_server_listener_ipv6():
    with sw.server_listener(("::1", 0), 2) as lst:
        assert lst.family == socket.AF_INET6
        host, port, _flow, _scope = lst.getsockname()
        with sw.create_client((host, port), timeout=5) as c:
            conn = sw.accept_client_connect(lst)
            info = lst.clients.get(conn.fileno())
            assert info.addr[:2] == c.getsockname()[:2]
            assert info.fd_port == c.getsockname()[1]


def test_server_listener_rejects_bad_arguments():
    with pytest.raises(ValueError):
        sw.server_listener(("127.0.0.1", 0), 0)
    with pytest.raises(OverflowError, match="port must be 0-65535"):
        sw.server_listener(("127.0.0.1", 70000), 1)
    with pytest.raises(TypeError):
        sw.server_listener("127.0.0.1:80", 1)


def test_server_listener_port_in_use():
    with sw.server_listener(("127.0.0.1", 0), 1) as first:
        with pytest.raises(OSError) as info:
            sw.server_listener(first.getsockname(), 1)
        assert info.value.errno == 98  # EADDRINUSE


def test_reuse_port_lets_two_listeners_share_a_port():
    with sw.server_listener(("127.0.0.1", 0), 1, reuse_port=True) as a:
        with sw.server_listener(a.getsockname(), 1, reuse_port=True) as b:
            assert a.getsockname() == b.getsockname()


def test_create_client_connects_with_nodelay_and_timeout(listener):
    with sw.create_client(listener.getsockname(), timeout=2.5) as c:
        assert c.getpeername() == listener.getsockname()
        assert c.gettimeout() == 2.5
        assert c.getsockopt(sw.IPPROTO_TCP, sw.TCP_NODELAY) == 1
    with sw.create_client(("localhost", listener.getsockname()[1])) as c:
        assert c.gettimeout() is None


def test_create_client_refused_and_unresolvable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConnectionRefusedError) as info:
            sw.create_client(("127.0.0.1", port), timeout=5)
    assert info.value.errno == 111
    with pytest.raises(socket.gaierror):
        sw.create_client(("no-such-host.invalid", 80))


def test_create_client_honours_the_stdlib_default_timeout(listener):
    socket.setdefaulttimeout(3.0)
    try:
        with sw.create_client(listener.getsockname()) as c:
            assert c.gettimeout() == 3.0
        with sw.Socket() as s:
            assert s.gettimeout() == 3.0
    finally:
        socket.setdefaulttimeout(None)


def test_accept_registers_clients(listener):
    clients, accepted = connect_and_accept(listener, 3)
    group = listener.clients
    assert len(group) == group.len() == 3
    for client, conn in zip(clients, accepted, strict=True):
        info = group.get(conn.fileno())
        assert info.client_fd == conn.fileno()
        assert info.fd_port == client.getsockname()[1]
        assert info.addr == client.getsockname()
        assert info["client_fd"] == conn.fileno() and info["fd_port"] == info.fd_port
        assert info.as_dict() == dict(info)
        assert group.by_port(info.fd_port) == info
        assert conn.fileno() in group and conn in group
        assert conn.getsockopt(sw.IPPROTO_TCP, sw.TCP_NODELAY) == 1
    assert [i.client_fd for i in group] == [c.fileno() for c in accepted]
    for s in clients + accepted:
        s.close()
    assert len(group) == 0


def test_full_listener_closes_the_new_connection(listener):
    clients, accepted = connect_and_accept(listener, 3)
    extra = sw.create_client(listener.getsockname(), timeout=5)
    with pytest.raises(sw.ServerFull, match="3"):
        sw.accept_client_connect(listener)
    assert extra.recv(16) == b""  # closed by the server
    assert len(listener.clients) == 3
    # A place frees up: the next client is accepted.
    accepted[0].close()
    late = sw.create_client(listener.getsockname(), timeout=5)
    conn = sw.accept_client_connect(listener)
    assert listener.clients.get(conn.fileno()).fd_port == late.getsockname()[1]
    for s in [*clients, *accepted, extra, late, conn]:
        s.close()


def test_servers_full_is_a_sockwire_error():
    assert issubclass(sw.ServerFull, sw.Error)
    assert issubclass(sw.ConnectionClosed, sw.Error)
    assert issubclass(sw.FrameTooLarge, sw.ProtocolError)
    assert issubclass(sw.ProtocolError, sw.Error)


def test_closing_or_dropping_a_registered_socket_unregisters_it(listener):
    import gc

    clients, accepted = connect_and_accept(listener, 2)
    fd0, fd1 = accepted[0].fileno(), accepted[1].fileno()
    accepted[0].close()
    assert fd0 not in listener.clients
    del accepted[1]
    gc.collect()
    assert fd1 not in listener.clients
    for c in clients:
        c.close()


def test_detach_leaves_the_group(listener):
    clients, accepted = connect_and_accept(listener, 1)
    fd = accepted[0].detach()
    assert fd not in listener.clients
    socket.socket(fileno=fd).close()
    clients[0].close()


def test_accept_client_connect_times_out_like_accept(listener):
    listener.settimeout(0.05)
    with pytest.raises(TimeoutError):
        sw.accept_client_connect(listener)
    listener.settimeout(0)
    with pytest.raises(BlockingIOError):
        sw.accept_client_connect(listener)


def test_accept_client_connect_requires_a_listener():
    with sw.Socket() as s, pytest.raises(TypeError):
        sw.accept_client_connect(s)


def test_client_group_with_stdlib_sockets():
    group = sw.ClientGroup(max=1)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        a = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        info = group.add(conn)
        assert info.client_fd == conn.fileno()
        assert info.fd_port == a.getsockname()[1]
        assert conn in group and conn.fileno() in group
        b = socket.create_connection(srv.getsockname())
        conn2, _ = srv.accept()
        with pytest.raises(sw.ServerFull):
            group.add(conn2)
        assert group.remove(conn.fileno()) == info
        with pytest.raises(KeyError):
            group.remove(conn.fileno())
        group.discard(conn.fileno())
        assert group.get(conn.fileno()) is None
        for s in (a, b, conn, conn2):
            s.close()


def test_client_group_rejects_unconnected_sockets():
    group = sw.ClientGroup()
    with sw.Socket() as s, pytest.raises(OSError) as info:
        group.add(s)
    assert info.value.errno == 107  # ENOTCONN
    assert len(group) == 0


def test_client_group_iterates_over_a_snapshot(listener):
    clients, accepted = connect_and_accept(listener, 3)
    seen = []
    for info in listener.clients:
        seen.append(info.client_fd)
        listener.clients.discard(info.client_fd)  # mutating while iterating is safe
    assert seen == [c.fileno() for c in accepted]
    assert len(listener.clients) == 0
    for s in clients + accepted:
        s.close()


def test_client_group_is_thread_safe():
    group = sw.ClientGroup(max=500)
    with socket.create_server(("127.0.0.1", 0), backlog=64) as srv:
        pairs = []
        for _ in range(40):
            c = socket.create_connection(srv.getsockname())
            pairs.append((c, srv.accept()[0]))
        errors = []

        def churn(conns):
            try:
                for _ in range(200):
                    for conn in conns:
                        group.add(conn)
                    for conn in conns:
                        group.remove(conn.fileno())
            except Exception as exc:
                errors.append(exc)

        servers = [p[1] for p in pairs]
        threads = [threading.Thread(target=churn, args=(servers[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(group) == 0
        for c, s in pairs:
            c.close()
            s.close()


def test_client_info_repr_and_missing_key(listener):
    clients, accepted = connect_and_accept(listener, 1)
    info = listener.clients.get(accepted[0].fileno())
    assert repr(info).startswith(f"ClientInfo(client_fd={accepted[0].fileno()}, fd_port=")
    with pytest.raises(KeyError):
        info["nope"]
    assert info.keys() == ["client_fd", "fd_port", "addr", "connected_at"]
    assert hash(info) == hash(listener.clients.get(accepted[0].fileno()))
    for s in clients + accepted:
        s.close()


def test_a_socket_in_a_second_group_still_counts_in_the_listener(listener):
    """A socket may be in several groups (the listener's and a chat room's): each counts it,
    so the listener's max still holds, and closing the socket leaves both."""
    addr = listener.getsockname()
    clients = [sw.create_client(addr, timeout=5) for _ in range(listener.max_clients)]
    accepted = [sw.accept_client_connect(listener) for _ in clients]
    room = sw.ClientGroup()
    room.add(accepted[0])
    assert len(listener.clients) == listener.max_clients
    assert accepted[0].fileno() in room and accepted[0].fileno() in listener.clients
    extra = sw.create_client(addr, timeout=5)
    with pytest.raises(sw.ServerFull):
        sw.accept_client_connect(listener)  # no surplus client gets in
    accepted[0].close()
    assert len(room) == 0
    assert len(listener.clients) == listener.max_clients - 1
    for s in (*clients, *accepted, extra):
        s.close()


@pytest.mark.parametrize("thing", ["x", 42, None])
def test_client_group_add_of_a_non_socket_is_a_type_error(thing):
    with pytest.raises(TypeError, match="connected sockets"):
        sw.ClientGroup().add(thing)


def test_adopting_a_socket_sockwire_cannot_take_leaves_it_intact():
    a, b = socket.socketpair()  # AF_UNIX
    with a, b:
        for adopt in (sw.Socket.from_stdlib, sw.Connection):
            with pytest.raises(ValueError, match="TCP sockets"):
                adopt(a)
            assert a.fileno() >= 0  # still the caller's, not detached
        a.sendall(b"still works")
        assert b.recv(16) == b"still works"
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with udp, pytest.raises(ValueError):
        sw.Socket.from_stdlib(udp)
    assert udp.fileno() == -1  # closed by the with block, not leaked by sockwire


@pytest.mark.parametrize("thing", ["x", 3, object()])
def test_connection_of_a_non_socket_is_a_type_error(thing):
    with pytest.raises(TypeError, match=r"sockwire\.Socket or a socket\.socket"):
        sw.Connection(thing)
