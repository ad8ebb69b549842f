"""The Rust extension module behind sockwire. Import from ``sockwire``, not from here."""

import asyncio
import os
import socket
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Literal, Self, final

from _typeshed import ReadableBuffer, WriteableBuffer
from typing_extensions import disjoint_base

__all__ = [
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
    "ServerFull",
    "Socket",
    "TlsConfig",
    "_AsyncConn",
    "_Bell",
    "_HandlerLoop",
    "_Swarm",
    "_at_exit",
    "_load",
    "accept_client_connect",
    "connect",
    "create_client",
    "server_listener",
    "tcp_client_options",
    "tcp_server_options",
]

# An address sockwire returns: ``(host, port)`` from an IPv4 socket, ``(host, port, flowinfo,
# scope_id)`` from an IPv6 one. Which one depends on the socket's family, which the type does
# not know: as typeshed's ``_RetAddress`` for ``socket.socket`` (``Any``), the items are
# ``Any``, so that ``host, port = sock.getsockname()`` and ``create_client(sock.getsockname())``
# both type-check.
_RetAddress = tuple[Any, ...]
# An address sockwire accepts: ``(host, port)``, or for IPv6 ``(host, port[, flowinfo[,
# scope_id]])``; a host is ``str``, ``bytes`` or ``bytearray``, as in the stdlib.
_Host = str | bytes | bytearray
_AddressArg = tuple[_Host, int] | tuple[_Host, int, int] | tuple[_Host, int, int, int]
# PEM material: a path, or the PEM text itself.
_Pem = str | os.PathLike[str] | bytes | bytearray | memoryview

class Error(Exception):
    """Base class of every sockwire error."""

class ProtocolError(Error):
    """The peer sent bytes that break the packet format.

    From ``Decoder.feed``: ``packets`` holds the packets that call decoded before the bad frame,
    and ``later_errors`` the errors of any further bad frames in the same call (the packets
    between and after them come from the next ``feed``)."""

    packets: list[Packet]
    later_errors: list[ProtocolError]

class FrameTooLarge(ProtocolError):
    """A frame is larger than the format allows. Raised as soon as its length is read, before
    its body is buffered; a ``Decoder`` then skips the frame's bytes as they arrive.

    ``length`` is the announced size (the body for a struct header, the adjusted frame for
    ``length_field``), ``limit`` the limit it broke."""

    length: int
    limit: int

class IncompleteFrame(ProtocolError):
    """The stream ended inside a frame. ``partial`` holds the bytes of the unfinished frame,
    ``expected`` its full length when its header had arrived (else None)."""

    partial: bytes
    expected: int | None

class AuthenticationError(ProtocolError):
    """A packet failed authentication."""

class ConnectionClosed(Error):
    """The peer closed the connection between frames, or (as its message says) sockwire closed
    it after the peer sent a bad frame."""

class ServerFull(Error):
    """A listener or client group already holds its maximum number of clients."""

@disjoint_base
class Socket:
    """A TCP socket with the stdlib's ``socket.socket`` methods and semantics, on Rust.

    Blocking calls release the GIL; errors are the stdlib's ``OSError`` subclasses with
    ``errno`` set; timeouts follow ``settimeout`` exactly (``None`` blocks, ``0`` is
    non-blocking, a number of seconds raises ``TimeoutError`` on expiry). New sockets start
    with ``socket.getdefaulttimeout()``, as the stdlib's do. Only ``AF_INET`` and ``AF_INET6``
    are supported.

    ``Socket()`` opens a socket (``AF_INET``, ``SOCK_STREAM`` by default); ``Socket(fileno=fd)``
    adopts the open socket ``fd``, reading its family, type and protocol from the kernel unless
    given.
    """

    def __new__(
        cls, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None
    ) -> Self: ...
    def fileno(self) -> int:
        """The file descriptor, or -1 once closed or detached."""

    @property
    def family(self) -> socket.AddressFamily:
        """The address family, as the stdlib's ``AddressFamily`` enum."""

    @property
    def type(self) -> socket.SocketKind:
        """The socket type, as the stdlib's ``SocketKind`` enum."""

    @property
    def proto(self) -> int:
        """The protocol number given at creation (0 for the default)."""

    @property
    def timeout(self) -> float | None:
        """The timeout in seconds, ``0.0`` when non-blocking, ``None`` when blocking."""

    def gettimeout(self) -> float | None:
        """The timeout in seconds, ``0.0`` when non-blocking, ``None`` when blocking."""

    def settimeout(self, value: float | None, /) -> None:
        """``None``: block; ``0``: non-blocking; seconds: raise ``TimeoutError`` after that long.

        Raises ``TypeError`` for non-numbers and ``ValueError`` for negative values or NaN."""

    def setblocking(self, flag: int, /) -> None:
        """``setblocking(True)`` is ``settimeout(None)``; ``setblocking(False)`` is
        ``settimeout(0.0)``."""

    def getblocking(self) -> bool:
        """False only in non-blocking mode (a timeout counts as blocking, as in the stdlib)."""

    def bind(self, address: _AddressArg, /) -> None:
        """Bind to ``(host, port)`` (IPv6: ``(host, port, flowinfo, scope_id)``); ``""`` is every
        interface. Ports outside 0-65535 raise ``OverflowError``."""

    def listen(self, backlog: int | None = None, /) -> None:
        """Start listening; the default backlog is ``min(SOMAXCONN, 128)`` as in the stdlib."""

    def accept(self) -> tuple[Socket, _RetAddress]:
        """Wait for a connection and return ``(Socket, address)``. The new socket is blocking
        unless ``socket.setdefaulttimeout`` set a default."""

    def connect(self, address: _AddressArg, /) -> None:
        """Connect to ``address``, waiting at most the socket's timeout."""

    def connect_ex(self, address: _AddressArg, /) -> int:
        """Like ``connect`` but return the errno (0 on success) instead of raising; a timeout
        returns ``EWOULDBLOCK``."""

    def send(self, data: ReadableBuffer, flags: int = 0, /) -> int:
        """Send what the kernel takes now; return the number of bytes sent."""

    def sendall(self, data: ReadableBuffer, flags: int = 0, /) -> None:
        """Send all of ``data``. With a timeout, it bounds the whole call."""

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        """Receive at most ``bufsize`` bytes; ``b""`` means the peer closed its side."""

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into a writable buffer (``nbytes`` of 0 means its whole length); return the
        number of bytes received."""

    def shutdown(self, how: int, /) -> None:
        """Shut down one or both halves: ``SHUT_RD``, ``SHUT_WR`` (half-close) or ``SHUT_RDWR``."""

    def close(self) -> None:
        """Close the socket. Calling it again does nothing. A socket registered in a
        ``ClientGroup`` leaves it first. As with the stdlib, a call blocked in another thread
        is not woken (``shutdown(SHUT_RDWR)`` wakes it); unlike the stdlib, the fd number stays
        taken until that call returns, so it can never act on a connection that reused it."""

    def detach(self) -> int:
        """Give up the fd without closing it and return it (-1 if already closed)."""

    def getsockname(self) -> _RetAddress:
        """The local address."""

    def getpeername(self) -> _RetAddress:
        """The remote address; ``OSError(ENOTCONN)`` when not connected."""

    def setsockopt(
        self,
        level: int,
        optname: int,
        value: int | ReadableBuffer | None,
        optlen: int | None = None,
        /,
    ) -> None:
        """Set an option from an int, from raw bytes (e.g. ``struct.pack("ii", 1, 0)`` for
        ``SO_LINGER``), or from ``None`` with ``optlen``."""

    def getsockopt(self, level: int, optname: int, buflen: int = 0, /) -> Any:
        """Read an option as an int, or with ``buflen`` (1-1024) as at most that many raw bytes."""

    def tls_version(self) -> str | None:
        """The negotiated TLS version (``"TLSv1.3"``, ``"TLSv1.2"``), or None for a plain
        socket."""

    def to_stdlib(self) -> socket.socket:
        """A ``socket.socket`` on a duplicate of this fd, with the same timeout. Both stay open
        and share the connection (and the fd's non-blocking flag). ``ValueError`` for a TLS
        socket, whose session cannot leave sockwire."""

    @classmethod
    def from_stdlib(cls, sock: socket.socket) -> Self:
        """Adopt a ``socket.socket``: take over its fd (the stdlib object is detached) and its
        timeout. A socket sockwire cannot take (not TCP over IPv4 or IPv6) raises
        ``ValueError`` and stays the caller's, untouched."""

    def __enter__(self) -> Self: ...
    def __exit__(self, *_args: object) -> None: ...

@final
class Listener(Socket):
    """A listening ``Socket`` that registers the clients ``accept_client_connect`` accepts,
    up to ``max_clients``. Same as ``server_listener(addr, max, reuse_port=..., tls=...)``."""

    def __new__(
        cls, addr: _AddressArg, max: int, *, reuse_port: bool = False, tls: TlsConfig | None = None
    ) -> Self: ...
    @property
    def max_clients(self) -> int:
        """The most live clients this listener registers (also its listen backlog)."""

    @property
    def clients(self) -> ClientGroup:
        """The registry of accepted clients."""

@final
class ClientInfo:
    """One registered client. Read it as attributes or as the seed's dict
    (``info["client_fd"]``, ``info.as_dict()``, ``dict(info)``)."""

    @property
    def client_fd(self) -> int:
        """The connection's file descriptor: the registry key."""

    @property
    def fd_port(self) -> int:
        """The peer's port (``addr[1]``)."""

    @property
    def addr(self) -> _RetAddress:
        """The peer's address."""

    @property
    def connected_at(self) -> float:
        """When the client was registered, in seconds since the epoch (like ``time.time()``)."""

    @property
    def state(self) -> dict[Any, Any]:
        """A dict for the application, the same object for as long as this registration (the
        connection) lives: a gateway handler keeps a logged-in user there, say."""

    def __getitem__(
        self, key: Literal["client_fd", "fd_port", "addr", "connected_at"], /
    ) -> Any: ...
    def keys(self) -> list[str]:
        """The dict keys: client_fd, fd_port, addr, connected_at."""

    def as_dict(self) -> dict[str, Any]:
        """The seed's dict: ``{"client_fd": ..., "fd_port": ..., "addr": ...,
        "connected_at": ...}``."""

    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class ClientGroup:
    """A thread-safe registry of connected clients keyed by fd, holding at most ``max``.

    Sockets registered with ``add`` (or by ``accept_client_connect``) leave it when closed.
    ``fd in group`` tests an fd (a socket object is looked up by its ``fileno()``); iteration
    goes over a snapshot, in registration order, so adding or removing clients meanwhile is
    safe.
    """

    def __new__(cls, max: int | None = None) -> Self: ...
    @property
    def max(self) -> int | None:
        """The maximum number of clients, or None for no limit."""

    def add(self, sock: Socket | socket.socket) -> ClientInfo:
        """Register a connected socket; ``ServerFull`` if the group already holds ``max``.
        A ``sockwire.Socket`` leaves the group when it closes; a ``socket.socket`` must be
        removed by hand. A socket may be in several groups (the listener's and a chat room's,
        say): each counts it toward its own ``max``, and closing it leaves them all."""

    def remove(self, fd: int) -> ClientInfo:
        """Remove and return the client on ``fd``; ``KeyError`` if there is none."""

    def discard(self, fd: int) -> None:
        """Remove the client on ``fd`` if there is one."""

    def get(self, fd: int) -> ClientInfo | None:
        """The client on ``fd``, or None."""

    def by_port(self, port: int) -> ClientInfo | None:
        """The client whose peer port is ``port``, or None."""

    def len(self) -> int:
        """The number of registered clients (also ``len(group)``)."""

    def __len__(self) -> int: ...
    def __contains__(self, fd: object, /) -> bool: ...
    def __iter__(self) -> Iterator[ClientInfo]: ...

def tcp_client_options(
    family: int = ..., *, nodelay: bool = True, sndbuf: int | None = None, rcvbuf: int | None = None
) -> Socket:
    """A new TCP client socket, ``TCP_NODELAY`` on (as asyncio and Go set it), with optional
    ``SO_SNDBUF``/``SO_RCVBUF`` sizes."""

def tcp_server_options(
    family: int = ...,
    *,
    reuse_addr: bool = True,
    sndbuf: int | None = None,
    rcvbuf: int | None = None,
    blocking: bool = True,
) -> Socket:
    """A new, unbound TCP server socket with ``SO_REUSEADDR`` (by default) and optional buffer
    sizes; ``blocking=False`` makes it non-blocking."""

def server_listener(
    addr: _AddressArg, max: int, *, reuse_port: bool = False, tls: TlsConfig | None = None
) -> Listener:
    """A ``Listener`` bound to ``addr`` and listening, holding at most ``max`` live clients
    (``max`` is also its backlog). ``("", port)`` means every IPv4 interface; an IPv6 host
    (one with a colon) makes an IPv6 listener. With ``tls`` (``TlsConfig.server``) every
    accepted client does the TLS handshake before ``accept_client_connect`` returns it, within
    the listener's timeout (10 s when it has none)."""

def create_client(
    addr: _AddressArg, *, timeout: float | None = None, tls: TlsConfig | None = None
) -> Socket:
    """A connected TCP client (``TCP_NODELAY`` on). Tries every address ``addr`` resolves to,
    like ``socket.create_connection``; ``timeout`` bounds each connect and stays on the socket
    (``None``: ``socket.getdefaulttimeout()``). With ``tls`` (``TlsConfig.client``) the TLS
    handshake is done within the same timeout, verifying the certificate against the host of
    ``addr`` (or ``server_name``); failures are ``ssl.SSLCertVerificationError``,
    ``ssl.SSLError`` or ``TimeoutError``."""

def accept_client_connect(listener: Listener) -> Socket:
    """Accept one client on ``listener`` and register it in ``listener.clients``. When the
    listener already holds ``max_clients`` the new connection is closed and ``ServerFull``
    raised."""

@final
class Packet:
    """One packet: a body and the header values that came with it. Equal when body, msg_id,
    flags and header are; ``len(packet)`` is the body's length."""

    def __new__(
        cls, body: ReadableBuffer, msg_id: int = 0, flags: int = 0, **fields: int | bytes
    ) -> Self: ...
    @property
    def body(self) -> bytes:
        """The bytes after the header (after compression and encryption are undone)."""

    @property
    def msg_id(self) -> int:
        """The protocol number (the ``msg_id`` header field); 0 when the format has none."""

    @property
    def flags(self) -> int:
        """The ``flags`` header field; 0 when the format has none."""

    @property
    def header(self) -> dict[str, int | bytes]:
        """The other header fields by name (not ``length``, ``msg_id`` or ``flags``)."""

    def __len__(self) -> int: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Compression:
    """A compression algorithm for packet bodies, in its standard format: ``zlib`` and
    ``gzip`` streams, ``lz4`` (the LZ4 frame format), ``zstd`` frames, ``snappy`` (raw) and
    ``brotli``. ``level`` defaults to zlib/gzip 6, zstd 3, brotli 5 (lz4 and snappy have
    none). Bodies shorter than ``min_size`` go uncompressed (this needs a ``flags`` field).
    Decompression stops at the format's ``max_body``: a bomb raises ``FrameTooLarge``."""

    def __new__(cls, name: str, level: int | None = None, min_size: int = 0) -> Self: ...
    @property
    def name(self) -> str:
        """The algorithm's name: ``"zlib"``, ``"gzip"``, ``"lz4"``, ``"zstd"``, ``"snappy"`` or
        ``"brotli"``."""

    @property
    def level(self) -> int | None:
        """The level in use (None for lz4 and snappy, which have none)."""

    @property
    def min_size(self) -> int:
        """Bodies shorter than this go uncompressed."""

    def __eq__(self, other: object, /) -> bool: ...

@final
class Cipher:
    """An AEAD cipher for packet bodies: ``aes-128-gcm`` (16-byte key), ``aes-256-gcm`` or
    ``chacha20-poly1305`` (32-byte keys). An encrypted body is ``nonce(12) || ciphertext ||
    tag(16)`` with a random nonce per packet and the packed header as associated data. A
    wrong key size raises ``ValueError``; a body that fails authentication raises
    ``AuthenticationError``. The key never appears in ``repr``."""

    def __new__(cls, name: str, key: ReadableBuffer) -> Self: ...
    @property
    def name(self) -> str:
        """The algorithm's name: ``"aes-128-gcm"``, ``"aes-256-gcm"`` or
        ``"chacha20-poly1305"``."""

    @property
    def key_size(self) -> int:
        """The key size in bytes."""

    def __eq__(self, other: object, /) -> bool: ...

@final
class PacketFormat:
    """How packets are framed on a byte stream.

    ``PacketFormat(header, fields)`` takes a ``struct`` header format (byte order ``! > < = @``,
    codes ``B H I L Q b h i l q``, ``x`` padding, ``Ns`` fixed bytes) and one name per item
    (``fields`` defaults to ``("length",)``).
    ``length`` is required and counts the body (the whole frame with
    ``length_includes_header=True``); ``msg_id`` and ``flags`` become ``Packet.msg_id`` and
    ``Packet.flags``; other names travel in ``Packet.header``. ``expect`` fixes constant fields
    (a magic number): checked on decode (``ProtocolError``), filled in on encode. Bodies over
    ``max_body`` raise ``FrameTooLarge``.
    """

    def __new__(
        cls,
        header: str = "!I",
        fields: Iterable[str] | None = None,
        *,
        length_includes_header: bool = False,
        max_body: int = 8388608,
        expect: dict[str, int | bytes] | None = None,
        compress: Compression | str | None = None,
        cipher: Cipher | None = None,
    ) -> Self: ...
    @staticmethod
    def length_field(
        offset: int,
        length: int,
        *,
        adjustment: int = 0,
        strip: int = 0,
        max_frame: int = 8388608,
        byteorder: Literal["big", "little"] = "big",
        expect: dict[str, int | bytes] | None = None,
        compress: Compression | str | None = None,
        cipher: Cipher | None = None,
    ) -> PacketFormat:
        """Netty's ``LengthFieldBasedFrameDecoder(max_frame, offset, length, adjustment, strip)``
        with its semantics: ``length`` is 1, 2, 3, 4 or 8 bytes; a frame is
        ``length value + adjustment + offset + length`` bytes, at most ``max_frame``;
        ``Packet.body`` is the frame minus its first ``strip`` bytes. The ``offset`` bytes
        before the length field are the header field ``prefix``. ``pack(body)`` follows Netty's
        ``LengthFieldPrepender``: ``body`` is what follows the length field.

        Everything after ``offset`` and ``length`` is keyword-only: Java's constructor takes
        ``maxFrameLength`` first, and its arguments copied positionally would land in the wrong
        places. ``max_frame`` must hold at least the header (``ValueError`` otherwise, with
        Netty's message)."""

    @staticmethod
    def varint(
        max_body: int = 8388608,
        *,
        compress: Compression | str | None = None,
        cipher: Cipher | None = None,
    ) -> PacketFormat:
        """A protobuf base-128 varint length prefix, then the body (Netty's
        ``ProtobufVarint32FrameDecoder`` / ``ProtobufVarint32LengthFieldPrepender``)."""

    @property
    def fields(self) -> tuple[str, ...]:
        """The header field names, in wire order."""

    @property
    def header_size(self) -> int | None:
        """The header size in bytes; None for a varint prefix."""

    @property
    def max_body(self) -> int:
        """The largest body accepted, in bytes (before and after decompression)."""

    @property
    def compress(self) -> Compression | None:
        """The body compression, if any."""

    @property
    def cipher(self) -> Cipher | None:
        """The body cipher, if any."""

    def pack(self, body: ReadableBuffer, msg_id: int = 0, **fields: int | bytes) -> bytes:
        """One frame carrying ``body``. ``fields`` sets ``flags`` and user header fields
        (missing ones are their ``expect`` value, else zero); values out of a field's range, or
        other than an ``expect`` constant, raise ``ValueError``; a value for a field the format
        does not have (``msg_id`` and ``flags`` included) raises ``TypeError``."""

    def pack_many(
        self, items: Iterable[ReadableBuffer | Packet], msg_id: int = 0, **fields: int | bytes
    ) -> bytes:
        """Frames for many items in one ``bytes``: bodies (with this call's header values) or
        ``Packet`` objects (with their own; a ``msg_id``, ``flags`` or header field the format
        cannot carry raises ``TypeError``)."""

    def unpack(self, frame: ReadableBuffer) -> Packet:
        """Decode exactly one whole frame (``IncompleteFrame`` if short, ``ProtocolError`` if
        bytes are left over)."""

    def decoder(self) -> Decoder:
        """A new stream decoder for this format."""

    def __eq__(self, other: object, /) -> bool: ...

@final
class Decoder:
    """Splits a byte stream into packets, however it was chunked. It buffers at most one
    unfinished frame, whatever it is fed, so its memory is bounded by the header plus
    ``max_body``.

    After a bad frame it goes on: a frame over the limit is skipped (Netty's discard mode); a
    wrong magic number (an ``expect`` constant at or before the length) makes it skip to the
    next place the magic could start a frame, reporting the run of garbage once; another
    malformed header is skipped up to the end of its length field (Netty's rule)."""

    def feed(self, data: ReadableBuffer) -> list[Packet]:
        """The packets ``data`` completes, in order. All of ``data`` is decoded; at a bad frame
        it raises (``FrameTooLarge``, ``ProtocolError``) with ``packets`` set to what this call
        decoded before it and ``later_errors`` to the errors of any later bad frames in
        ``data``; the packets after the bad frame are returned by the next call
        (``feed(b"")`` returns them)."""

    @property
    def pending(self) -> int:
        """Bytes not yet returned: an unfinished frame, and the frames that followed a bad one
        (returned by the next ``feed``)."""

    @property
    def format(self) -> PacketFormat:
        """The decoder's format."""

@final
class Connection:
    """Packets over a connected socket (a ``sockwire.Socket``; a ``socket.socket`` is adopted).

    Sends from several threads never interleave frames; one thread at a time may receive.
    Blocking calls release the GIL. EOF between frames ends iteration and makes ``recv`` raise
    ``ConnectionClosed``; EOF inside a frame raises ``IncompleteFrame``. A bad frame
    (``FrameTooLarge``, ``ProtocolError``) closes the connection after the packets before it
    are delivered; later calls raise ``ConnectionClosed`` saying so.

    A send that fails after part of its frames went out (a signal handler that raises, a
    timeout) leaves the rest queued, and the next send writes it first: the peer never sees a
    cut frame. A send that fails before any of its bytes went out sent nothing. A signal
    handler may send on the connection whose send it interrupted.
    """

    def __new__(cls, sock: Socket | socket.socket, format: PacketFormat | None = None) -> Self: ...
    @property
    def socket(self) -> Socket:
        """The underlying socket."""

    @property
    def format(self) -> PacketFormat:
        """The packet format (``PacketFormat()`` unless given)."""

    def fileno(self) -> int:
        """The socket's file descriptor, or -1 once closed."""

    def send(self, body: ReadableBuffer, msg_id: int = 0, **fields: int | bytes) -> None:
        """Send one packet (the socket's timeout bounds the call)."""

    def send_many(
        self, items: Iterable[ReadableBuffer | Packet], msg_id: int = 0, **fields: int | bytes
    ) -> None:
        """Send many packets with one write: bodies (with this call's header values) or
        ``Packet`` objects."""

    def recv(self, timeout: float | None = None) -> Packet:
        """The next packet. ``timeout`` bounds this call (None: the socket's own timeout);
        ``TimeoutError`` when it expires."""

    def request(
        self,
        body: ReadableBuffer,
        msg_id: int = 0,
        timeout: float | None = None,
        **fields: int | bytes,
    ) -> Packet:
        """Send a packet and return the next one received. ``timeout`` bounds the whole call,
        sending and receiving (``None``: the socket's timeout)."""

    def shutdown_write(self) -> None:
        """Half-close: send EOF; receiving goes on until the peer closes."""

    def shutdown(self, how: int, /) -> None:
        """``socket.shutdown(how)`` on the connection: ``SHUT_WR`` half-closes, and
        ``SHUT_RDWR`` from another thread wakes a thread blocked in ``recv`` (which then sees the
        end of the stream) or in ``send`` (``BrokenPipeError``)."""

    def close(self) -> None:
        """Close the socket (sending ``close_notify`` first over TLS). Calling it again does
        nothing."""

    def __iter__(self) -> Self: ...
    def __next__(self) -> Packet: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *_args: object) -> None: ...

def connect(
    addr: _AddressArg,
    format: PacketFormat | None = None,
    *,
    timeout: float | None = None,
    tls: TlsConfig | None = None,
) -> Connection:
    """Connect to ``addr`` (as ``create_client``, with TLS when ``tls`` is given) and return a
    ``Connection`` speaking ``format`` (``PacketFormat()`` by default)."""

@final
class TlsConfig:
    """TLS settings (rustls underneath), for ``connect``, ``create_client`` and listeners:
    build one with ``TlsConfig.client(...)`` or ``TlsConfig.server(...)``. Certificates and
    keys are PEM: a path (``str`` or ``os.PathLike``), or the PEM text as bytes (as ``ssl``'s
    ``cadata``; what trustme hands out). A missing file raises ``FileNotFoundError``. Errors
    are Python's: ``ssl.SSLCertVerificationError`` for an untrusted certificate or a wrong
    host name, ``ssl.SSLError`` for a peer that does not speak TLS or sends an alert,
    ``TimeoutError`` for a silent one."""

    @staticmethod
    def client(
        ca: _Pem | None = None,
        server_name: str | None = None,
        insecure: bool = False,
        cert: _Pem | None = None,
        key: _Pem | None = None,
    ) -> TlsConfig:
        """Trust the CAs in ``ca`` (None: the system's trust store) and verify the server's
        name (``server_name``, else the host connected to). ``insecure=True`` verifies
        nothing. ``cert`` and ``key`` give a client certificate for mutual TLS."""

    @staticmethod
    def server(
        cert: _Pem,
        key: _Pem,
        client_ca: _Pem | None = None,
    ) -> TlsConfig:
        """Serve with this certificate chain and key; with ``client_ca``, require client
        certificates that chain to it (mutual TLS)."""

    @property
    def side(self) -> Literal["client", "server"]:
        """``"client"`` or ``"server"``."""

@final
class Gateway:
    """Many clients on tokio, their packets handled by Python on a few work threads, one
    ``ClientGroup``.

    ``Gateway(addr, format=None, *, max_clients=5000, handler_threads=1, io_threads=None,
    idle_timeout=None, send_queue=1024, tls=None, reuse_port=False)``. Register handlers with
    ``@gw.route(msg_id, ...)`` (no id: the default route), ``@gw.on_connect`` and
    ``@gw.on_disconnect``, then ``start()`` or ``serve_forever()``. I/O, framing and the codecs
    run on tokio threads without the GIL; handlers run on ``handler_threads`` threads, which
    take the GIL once per batch of packets; a client's packets always go to the same thread,
    in order, each handler returning before the next packet of that client is handed out.

    A handler is ``handler(client: ClientInfo, packet: Packet)`` and returns None (no reply),
    bytes (a reply with the request's msg_id and other header fields, not its flags) or a
    ``Packet`` (sent as it is). One that raises is logged with its traceback on the logger
    ``sockwire.gateway`` and counted in ``handler_errors``; the client stays. A packet with no
    route and no default route is counted in ``unrouted`` and dropped.

    ``on_disconnect(client, reason)`` gets one of ``"closed"`` (the peer closed),
    ``"reset"`` (a connection error), ``"kicked"`` (or the reason given to ``kick``),
    ``"idle"``, ``"slow consumer"``, ``"protocol error"`` (a bad frame, one too large, a body
    that does not decompress), ``"authentication failed"`` (decryption failed) or
    ``"stopped"``. Past ``max_clients`` a new connection is closed at once (counted in
    ``rejected``; ``on_connect`` is not called). Each client has a queue of ``send_queue``
    outgoing packets; a client that stops reading is cut as a slow consumer when it is full,
    and no other client slows down. When handlers fall behind, the gateway stops reading
    sockets instead of buffering without end.

    Any handler may be ``async def``. Under ``await gw.serve()`` every handler runs on the
    running event loop; under ``start()``/``serve_forever()`` a gateway with an ``async def``
    handler runs an event loop on each handler thread (the asyncio policy's: uvloop's when
    installed). Order per client holds: a client's next packet waits until its previous
    handler, plain or async, has finished; other clients' handlers run meanwhile."""

    def __new__(
        cls,
        addr: _AddressArg,
        format: PacketFormat | None = None,
        *,
        max_clients: int = 5000,
        handler_threads: int = 1,
        io_threads: int | None = None,
        idle_timeout: float | None = None,
        send_queue: int = 1024,
        tls: TlsConfig | None = None,
        reuse_port: bool = False,
    ) -> Self: ...
    def route(
        self, *msg_ids: int
    ) -> Callable[[Callable[[ClientInfo, Packet], Any]], Callable[[ClientInfo, Packet], Any]]:
        """A decorator registering the handler of these msg_ids (none: the default route, for
        packets no other route takes). A msg_id registered twice is ``ValueError``; changing
        routes after ``start()`` is ``RuntimeError``."""

    def on_connect(self, handler: Callable[[ClientInfo], Any], /) -> Callable[[ClientInfo], Any]:
        """A decorator: ``handler(client)`` runs when a client connects, before any of its
        packets is handled."""

    def on_disconnect(
        self, handler: Callable[[ClientInfo, str], Any], /
    ) -> Callable[[ClientInfo, str], Any]:
        """A decorator: ``handler(client, reason)`` runs once a client has left (see the class
        docstring for the reasons); the client is no longer in ``clients``."""

    def start(self) -> Self:
        """Bind and start serving without blocking; return the gateway. A failed bind raises
        ``OSError``. Starting a running gateway does nothing."""

    def serve_forever(self) -> None:
        """Start if needed, then block until ``stop()``. Ctrl-C stops the gateway gracefully,
        then raises ``KeyboardInterrupt``."""

    def serve(self) -> Coroutine[Any, Any, None]:
        """``await gw.serve()``: start the gateway and run every handler on the running event
        loop (plain handlers are called there too) until ``stop()``; cancelling it stops the
        gateway gracefully (as ``stop()`` does; ``async def`` handlers still running 5 seconds
        later are cancelled) before the cancellation goes on. From the loop's
        thread, ``stop()`` returns at once and the stop finishes as the loop runs the clients'
        ``on_disconnect``: await ``serve()`` to know it finished. ``handler_threads`` is not used;
        ``RuntimeError`` if the gateway is running already."""

    def _start_on_loop(self) -> _HandlerLoop: ...
    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop accepting and reading, let the handlers finish what was queued, send the
        replies already queued (for at most ``timeout`` seconds), close every connection, run
        every ``on_disconnect(..., "stopped")``, then return. Calling it again does nothing;
        called from a handler, it returns without waiting for the thread it runs on."""

    def __enter__(self) -> Self: ...
    def __exit__(self, *_args: object) -> None: ...
    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""

    @property
    def address(self) -> _RetAddress:
        """The address the gateway listens on (with the port it got, for port 0);
        ``RuntimeError`` while it is not running."""

    @property
    def clients(self) -> ClientGroup:
        """The live group of connected clients, of at most ``max_clients``."""

    @property
    def max_clients(self) -> int:
        """The most clients connected at once."""

    @property
    def format(self) -> PacketFormat:
        """The packet format (``PacketFormat()`` unless given)."""

    def send(
        self, client: int | ClientInfo, body: ReadableBuffer, msg_id: int = 0, **fields: int | bytes
    ) -> None:
        """Queue a packet to one client: an fd (whoever is connected on it now) or a
        ``ClientInfo`` (that connection only: once it has ended, its fd's next owner is never
        reached). ``KeyError`` if the client is gone (or was just cut as a slow consumer)."""

    def broadcast(
        self,
        body: ReadableBuffer,
        msg_id: int = 0,
        *,
        exclude: Iterable[int | ClientInfo] | None = None,
        **fields: int | bytes,
    ) -> int:
        """Queue one packet to every client but those in ``exclude`` (fds or ``ClientInfo``);
        it is encoded once. Return how many clients it was queued to."""

    def kick(self, client: int | ClientInfo, reason: str = "kicked") -> bool:
        """Disconnect a client; ``on_disconnect`` gets ``reason``. False if it is not
        connected."""

    def stats(self) -> dict[str, int]:
        """Counters: ``accepted rejected active packets_in packets_out bytes_in bytes_out
        protocol_errors handler_errors unrouted slow_consumers idle_disconnects``."""

def _at_exit() -> None:
    """Stop every gateway still running and shut the runtime down. ``sockwire`` registers it
    with ``atexit``, so that no thread runs Python once the interpreter finalizes."""

def _load(
    addr: _AddressArg,
    format: PacketFormat | None = None,
    *,
    clients: int = 100,
    in_flight: int = 1,
    requests: int | None = None,
    duration: float | None = None,
    body_size: int = 64,
    msg_id: int = 0,
    expect_echo: bool = False,
    timeout: float = 5.0,
    connect_timeout: float = 5.0,
) -> dict[str, Any]:
    """The core load driver, for the benchmarks: ``clients`` connections each keeping
    ``in_flight`` requests of ``body_size`` bytes outstanding, for ``requests`` in all or
    ``duration`` seconds. Returns what ``_Swarm.finish`` returns: ``connected failed_connects
    sent received pushed errors duration throughput latency`` (``p50 p90 p99 p999 max mean``,
    seconds) ``timeline interrupted histogram``. Private: ``sockwire.swarm`` is its public
    face."""

@final
class _Swarm:
    """A run of the load driver (the private half of ``sockwire.swarm``): starts at once on a
    runtime of its own; ``wait`` for its end, ``stop`` it, ``finish`` for the report's dict."""

    def __new__(
        cls,
        addr: _AddressArg,
        format: PacketFormat | None,
        *,
        clients: int,
        in_flight: int,
        requests: int | None,
        duration: float | None,
        rate: float | None,
        ramp_up: float,
        msg_id: int,
        bodies: list[bytes],
        fields: dict[str, Any] | None,
        hello: list[tuple[int, bytes]],
        expect: str | Callable[[bytes, Packet], object],
        correlate: str | None,
        timeout: float,
        connect_timeout: float,
        tls: TlsConfig | None,
        threads: int | None,
    ) -> Self: ...
    def wait(self, timeout: float) -> bool:
        """Wait (without the GIL) up to ``timeout`` seconds for the run to end; True once it
        has."""

    def stop(self) -> None:
        """End the run: clients stop sending and close their connections."""

    def snapshot(self) -> dict[str, Any]:
        """How the run is doing: ``elapsed connected sent received errors`` and the last whole
        second's ``rate`` (replies) and ``p99`` (seconds)."""

    def finish(self) -> dict[str, Any]:
        """Stop the run if it still goes on and return the report as a dict (the fields of
        ``sockwire.Report``, plus ``histogram``: (latency upper bound, count) pairs)."""

@final
class _Bell:
    """An eventfd that runtime threads ring with a connection's token (the private half of
    ``sockwire.aio``): the loop watches ``fileno()`` and calls ``wake(waiters)``."""

    def __new__(cls) -> Self: ...
    def fileno(self) -> int:
        """The eventfd the loop watches for reading."""

    def take(self) -> list[int]:
        """The tokens rung since the last call."""

    def wake(self, waiters: dict[int, list[asyncio.Future[bool | None]]], /) -> None:
        """For every token rung: pops its futures from ``waiters`` and resolves those not done
        yet with None."""

@final
class _HandlerLoop:
    """A gateway's handler queue, handled on an asyncio loop (the private half of
    ``Gateway.serve`` and of ``async def`` handlers): the loop watches ``fileno()`` and calls
    ``drain()``."""

    def fileno(self) -> int:
        """The eventfd the loop watches for reading."""

    def attach(self, finished: asyncio.Future[None]) -> None:
        """Bind to the loop of ``finished``, which is resolved once the gateway has stopped; until
        ``detach()``, ``stop()`` on this thread returns at once."""

    def detach(self) -> None:
        """Unbind from the loop (on the thread that attached)."""

    def cancel(self) -> None:
        """Cancel every handler task still running."""

    def flush(self) -> None:
        """Write the replies queued by handlers that finished in this loop turn."""

    def drain(self) -> None:
        """Handle the events queued (the eventfd's reader)."""

@final
class _AsyncConn:
    """A connection driven by the runtime (the private half of ``sockwire.aio``): every method
    returns at once, and the bell rings with ``token`` when a call that found nothing could
    find something."""

    def __new__(
        cls,
        addr: _AddressArg,
        format: PacketFormat | None,
        timeout: float | None,
        tls: TlsConfig | None,
        bell: _Bell,
        token: int,
    ) -> Self: ...
    @property
    def format(self) -> PacketFormat:
        """The packet format."""

    def connected(self) -> bool | None:
        """None while connecting, True once connected; raises why connecting failed."""

    def try_recv(self) -> Packet | None:
        """The next packet, None if none has arrived, or raises what ended the stream."""

    def send(self, body: ReadableBuffer, msg_id: int = 0, **fields: int | bytes) -> None:
        """Queue one packet (written at once when nothing is queued)."""

    def send_many(
        self, items: Iterable[ReadableBuffer | Packet], msg_id: int = 0, **fields: int | bytes
    ) -> None:
        """Queue many packets as one write."""

    def has_room(self) -> bool:
        """Whether less than a megabyte waits to be written."""

    def close(self) -> None:
        """Ask the runtime to write what is queued, then close."""

    def finished(self) -> bool:
        """True once the runtime has closed the socket."""
