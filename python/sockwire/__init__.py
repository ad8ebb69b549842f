"""sockwire: TCP network programming for Python with a Rust core."""

import atexit as _atexit
from importlib.metadata import version as _version
from socket import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SO_KEEPALIVE,
    SO_LINGER,
    SO_RCVBUF,
    SO_REUSEADDR,
    SO_REUSEPORT,
    SO_SNDBUF,
    SOCK_STREAM,
    SOL_SOCKET,
    TCP_NODELAY,
)

from sockwire import _core
from sockwire._core import (
    AuthenticationError,
    Cipher,
    ClientGroup,
    ClientInfo,
    Compression,
    Connection,
    ConnectionClosed,
    Decoder,
    Error,
    FrameTooLarge,
    Gateway,
    IncompleteFrame,
    Listener,
    Packet,
    PacketFormat,
    ProtocolError,
    ServerFull,
    Socket,
    TlsConfig,
    accept_client_connect,
    connect,
    create_client,
    server_listener,
    tcp_client_options,
    tcp_server_options,
)
from sockwire._swarm import Report, swarm

__all__ = [
    "AF_INET",
    "AF_INET6",
    "IPPROTO_TCP",
    "SHUT_RD",
    "SHUT_RDWR",
    "SHUT_WR",
    "SOCK_STREAM",
    "SOL_SOCKET",
    "SO_KEEPALIVE",
    "SO_LINGER",
    "SO_RCVBUF",
    "SO_REUSEADDR",
    "SO_REUSEPORT",
    "SO_SNDBUF",
    "TCP_NODELAY",
    "AuthenticationError",
    "Cipher",
    "ClientGroup",
    "ClientInfo",
    "Compression",
    "Connection",
    "ConnectionClosed",
    "Decoder",
    "Error",
    "FrameTooLarge",
    "Gateway",
    "IncompleteFrame",
    "Listener",
    "Packet",
    "PacketFormat",
    "ProtocolError",
    "Report",
    "ServerFull",
    "Socket",
    "TlsConfig",
    "accept_client_connect",
    "connect",
    "create_client",
    "server_listener",
    "swarm",
    "tcp_client_options",
    "tcp_server_options",
]

__version__ = _version("sockwire")

# Gateways still running when the interpreter exits are stopped, and the runtime shut down,
# before finalization: threads that run Python must not outlive it.
_atexit.register(_core._at_exit)


def __getattr__(name: str) -> object:
    # `sockwire.aio` is imported on first use: a script that never uses asyncio does not pay
    # for importing it.
    if name == "aio":
        import sockwire.aio

        return sockwire.aio
    raise AttributeError(f"module 'sockwire' has no attribute {name!r}")
