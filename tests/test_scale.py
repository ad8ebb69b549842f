"""Scale: one listener holding 5000 live, registered clients."""

import resource

import pytest

import sockwire as sw

CLIENTS = 5000


@pytest.fixture
def many_fds():
    """Raise the soft fd limit for 2 x CLIENTS sockets (both ends live in this process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * CLIENTS + 256
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"hard fd limit {hard} < {need}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(300)
def test_5000_live_clients_then_server_full(many_fds):
    listener = sw.server_listener(("127.0.0.1", 0), CLIENTS)
    addr = listener.getsockname()
    clients, accepted = [], []
    try:
        # Accept as we go: the kernel caps the backlog at net.core.somaxconn (often 4096).
        for _ in range(CLIENTS):
            clients.append(sw.create_client(addr, timeout=10))
            accepted.append(sw.accept_client_connect(listener))
        group = listener.clients
        assert len(group) == CLIENTS
        ports = {info.fd_port for info in group}
        assert ports == {c.getsockname()[1] for c in clients}
        assert all(conn.fileno() in group for conn in accepted)

        # The 5001st is accepted by the kernel, then closed by the full listener.
        extra = sw.create_client(addr, timeout=10)
        clients.append(extra)
        with pytest.raises(sw.ServerFull):
            sw.accept_client_connect(listener)
        assert extra.recv(1) == b""
        assert len(group) == CLIENTS

        # Every registered connection is live: a byte goes through each one.
        for client in clients[:CLIENTS]:
            client.sendall(b"?")
        for conn in accepted:
            assert conn.recv(1) == b"?"
    finally:
        for s in accepted:
            s.close()
        assert len(listener.clients) == 0
        for s in clients:
            s.close()
        listener.close()
