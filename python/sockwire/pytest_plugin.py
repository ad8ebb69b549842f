"""sockwire's pytest fixtures (registered through the ``pytest11`` entry point, so installing
sockwire makes them available). Each fixture ends what it starts at teardown.

- ``sockwire_gateway(format=None, *, routes=None, **gateway_kwargs) -> Gateway``: a factory;
  starts a Gateway on ``127.0.0.1:0`` with ``routes`` (msg_id, or None for the default route,
  -> handler), stopped at teardown.
- ``sockwire_connect(addr, format=None, **kwargs) -> Connection``: a factory; every connection
  it made is closed at teardown.
- ``sockwire_echo_server``: the ``(host, port)`` of a Gateway echoing every packet, with the
  default ``PacketFormat()``.
- ``sockwire_tls``: ``(server, client)`` TlsConfigs for ``localhost`` and ``127.0.0.1`` from a
  throwaway CA (trustme); the test is skipped when trustme is not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

import sockwire

Handler = Callable[..., Any]


@pytest.fixture
def sockwire_gateway() -> Iterator[Callable[..., sockwire.Gateway]]:
    """A factory: ``sockwire_gateway(format=None, *, routes=None, **gateway_kwargs)`` starts a
    Gateway on 127.0.0.1:0 with ``routes`` ({msg_id or None: handler}); stopped at teardown."""
    started: list[sockwire.Gateway] = []

    def start(
        format: sockwire.PacketFormat | None = None,
        *,
        routes: Mapping[int | None, Handler] | None = None,
        **gateway_kwargs: Any,
    ) -> sockwire.Gateway:
        gw = sockwire.Gateway(("127.0.0.1", 0), format, **gateway_kwargs)
        for msg_id, handler in (routes or {}).items():
            route = gw.route() if msg_id is None else gw.route(msg_id)
            route(handler)
        gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def sockwire_connect() -> Iterator[Callable[..., sockwire.Connection]]:
    """A factory: ``sockwire_connect(addr, format=None, **kwargs)`` is ``sockwire.connect``;
    every connection it made is closed at teardown."""
    made: list[sockwire.Connection] = []

    def connect(
        addr: tuple[str, int], format: sockwire.PacketFormat | None = None, **kwargs: Any
    ) -> sockwire.Connection:
        conn = sockwire.connect(addr, format, **kwargs)
        made.append(conn)
        return conn

    yield connect
    for conn in made:
        conn.close()


@pytest.fixture
def sockwire_echo_server(
    sockwire_gateway: Callable[..., sockwire.Gateway],
) -> tuple[str, int]:
    """``(host, port)`` of a Gateway echoing every packet (``PacketFormat()``)."""
    gw = sockwire_gateway(routes={None: lambda client, packet: packet})
    host, port = gw.address[:2]
    return host, port


@pytest.fixture
def sockwire_tls() -> tuple[sockwire.TlsConfig, sockwire.TlsConfig]:
    """``(server, client)`` TlsConfigs for localhost from a throwaway CA (needs trustme)."""
    trustme = pytest.importorskip("trustme", reason="sockwire_tls needs trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server = sockwire.TlsConfig.server(
        cert.cert_chain_pems[0].bytes() + b"".join(p.bytes() for p in cert.cert_chain_pems[1:]),
        cert.private_key_pem.bytes(),
    )
    client = sockwire.TlsConfig.client(ca.cert_pem.bytes())
    return server, client
