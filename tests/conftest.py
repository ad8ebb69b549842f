"""Fixtures shared by the test modules.

`listener`, `socket_pair` and `connection_pair` are plain loopback TCP; `pki` and `tls_pair`
are their TLS counterparts. A module that needs another backlog overrides `listener_backlog`.
`run` runs a coroutine on the default asyncio loop and on uvloop (the test runs twice).
"""

import threading

import pytest
import trustme

import sockwire as sw


@pytest.fixture
def listener_backlog():
    """The backlog, and so the `max_clients`, of the `listener` fixture. A module that fills
    its listener overrides this fixture with its own number."""
    return 16


@pytest.fixture
def listener(listener_backlog):
    """A sockwire listener on a free loopback port, closed at teardown."""
    with sw.server_listener(("127.0.0.1", 0), listener_backlog) as lst:
        yield lst


@pytest.fixture
def socket_pair(listener):
    """A connected (client, server) pair of plain sockwire sockets: the client from
    `create_client` with a 10 s timeout, the server end from `accept_client_connect`."""
    client = sw.create_client(listener.getsockname(), timeout=10)
    server = sw.accept_client_connect(listener)
    yield client, server
    client.close()
    server.close()


@pytest.fixture
def connection_pair(listener):
    """Makes Connection pairs over `listener`: `connection_pair(fmt)` returns (client, server),
    both Connections speaking `fmt`; with `raw=True` the server end is the accepted
    sockwire.Socket, for writing arbitrary bytes. Everything made is closed at teardown."""
    made = []

    def make(fmt=None, *, raw=False):
        client = sw.connect(listener.getsockname(), fmt, timeout=10)
        server = sw.accept_client_connect(listener)
        if not raw:
            server = sw.Connection(server, fmt)
        made.extend((client, server))
        return client, server

    yield make
    for item in reversed(made):
        item.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as files."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client@example.com")
    other_ca = trustme.CA()
    files = {
        "ca": d / "ca.pem",
        "cert": d / "cert.pem",
        "key": d / "key.pem",
        "client_cert": d / "client.pem",
        "client_key": d / "client.key",
        "other_ca": d / "other.pem",
    }
    ca.cert_pem.write_to_path(files["ca"])
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    client.cert_chain_pems[0].write_to_path(files["client_cert"])
    client.private_key_pem.write_to_path(files["client_key"])
    other_ca.cert_pem.write_to_path(files["other_ca"])
    files.update(trustme_ca=ca, trustme_server=server, trustme_client=client)
    return files


@pytest.fixture
def tls_pair(pki):
    """A connected (client, server) pair of sockwire TLS sockets, handshakes done."""
    listener = sw.server_listener(
        ("127.0.0.1", 0), 4, tls=sw.TlsConfig.server(pki["cert"], pki["key"])
    )
    accepted = []
    t = threading.Thread(target=lambda: accepted.append(sw.accept_client_connect(listener)))
    t.start()
    client = sw.create_client(
        listener.getsockname(), timeout=10, tls=sw.TlsConfig.client(ca=pki["ca"])
    )
    t.join(10)
    listener.close()
    (server,) = accepted
    yield client, server
    client.close()
    server.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """Runs a coroutine to completion (within `timeout` seconds) on a fresh loop of each kind:
    every test that takes it runs on the default asyncio loop and on uvloop."""
    import asyncio

    import uvloop

    runner = asyncio.run if request.param == "asyncio" else uvloop.run

    def run(coro, timeout=30):
        async def bounded():
            return await asyncio.wait_for(coro, timeout)

        return runner(bounded())

    return run
