"""``sockwire demo`` (or ``python -m sockwire demo``): the seed recipe on loopback, narrated.

Each step prints what it does and what it saw, so a new user can read the output next to
the README's quick tour.
"""

from __future__ import annotations

import threading

import sockwire as sw


def _step(n: int, title: str) -> None:
    print(f"\n[{n}] {title}")


def _buffer_note(got: int, asked: int | None, default: int) -> str:
    """What a buffer size read back means, given what the socket's side asked for."""
    if asked is None:
        return "not asked for: the system default" if got == default else "not asked for"
    if got == 2 * asked:
        return f"asked for {asked}: Linux doubles the request (room for its bookkeeping)"
    return f"asked for {asked}" + ("" if got == asked else ": the kernel adjusted it")


def socket_options() -> None:
    _step(1, "Socket options: what each side asked for, and what the kernel set")
    with sw.Socket() as bare:  # a socket with no options: the system's default buffer sizes
        default_snd = bare.getsockopt(sw.SOL_SOCKET, sw.SO_SNDBUF)
        default_rcv = bare.getsockopt(sw.SOL_SOCKET, sw.SO_RCVBUF)
    client = sw.tcp_client_options()
    server = sw.tcp_server_options(sndbuf=16384)
    with client, server:
        for side, s, func, sndbuf, recipe_sets in (
            ("client", client, "tcp_client_options", None, "TCP_NODELAY"),
            ("server", server, "tcp_server_options", 16384, "SO_REUSEADDR"),
        ):
            print(f"    {side} = {func}({'' if sndbuf is None else f'sndbuf={sndbuf}'})")
            snd = s.getsockopt(sw.SOL_SOCKET, sw.SO_SNDBUF)
            rcv = s.getsockopt(sw.SOL_SOCKET, sw.SO_RCVBUF)
            print(f"      SO_SNDBUF    {snd:>6}  {_buffer_note(snd, sndbuf, default_snd)}")
            print(f"      SO_RCVBUF    {rcv:>6}  {_buffer_note(rcv, None, default_rcv)}")
            for name, level, opt in (
                ("TCP_NODELAY", sw.IPPROTO_TCP, sw.TCP_NODELAY),
                ("SO_REUSEADDR", sw.SOL_SOCKET, sw.SO_REUSEADDR),
            ):
                value = s.getsockopt(level, opt)
                note = "on" if value else "off"
                if name == recipe_sets:
                    note += f": set by {func}()"
                print(f"      {name:<12} {value:>6}  {note}")


def registry_walkthrough() -> None:
    _step(2, "server_listener(('127.0.0.1', 0), max=3)")
    with sw.server_listener(("127.0.0.1", 0), 3) as listener:
        addr = listener.getsockname()
        print(f"    listening on {addr}, max_clients={listener.max_clients}")

        _step(3, "create_client() x3, accept_client_connect() x3: the client registry")
        clients = [sw.create_client(addr, timeout=5) for _ in range(3)]
        accepted = [sw.accept_client_connect(listener) for _ in clients]
        for info in listener.clients:
            print(f"    client_fd={info.client_fd} fd_port={info.fd_port} addr={info.addr}")

        _step(4, "a 4th client while the listener is full")
        extra = sw.create_client(addr, timeout=5)
        try:
            sw.accept_client_connect(listener)
        except sw.ServerFull as exc:
            print(f"    ServerFull: {exc}")
        print(f"    the 4th client reads {extra.recv(16)!r}: the server closed it")
        extra.close()

        _step(5, "send and receive through a registered client")
        clients[0].sendall(b"hello, server")
        print(f"    server got {accepted[0].recv(64)!r}")
        accepted[0].sendall(b"hello, client")
        print(f"    client got {clients[0].recv(64)!r}")

        _step(6, "closing a registered socket removes it from the group")
        fd = accepted[0].fileno()
        accepted[0].close()
        print(
            f"    closed fd {fd}: {len(listener.clients)} clients left, {fd} in group: "
            f"{fd in listener.clients}"
        )
        for s in clients + accepted[1:]:
            s.close()


def sticky_packets() -> None:
    _step(7, "TCP is a byte stream: 10 sends of 500 bytes, read back with recv(65536)")
    with sw.server_listener(("127.0.0.1", 0), 1) as listener:
        client = sw.create_client(listener.getsockname(), timeout=5)
        conn = sw.accept_client_connect(listener)
        with client, conn:
            sent = threading.Thread(
                target=lambda: [client.sendall(bytes([65 + i]) * 500) for i in range(10)]
            )
            sent.start()
            sent.join()
            client.shutdown(sw.SHUT_WR)
            reads = []
            while chunk := conn.recv(65536):
                reads.append(len(chunk))
            print(f"    10 sends arrived as {len(reads)} read(s) of sizes {reads}")
            print("    the message boundaries are gone: framing (length headers) restores them")


def framing() -> None:
    _step(8, "framing: the same 10 messages with a '!IHB' header (length, msg_id, flags)")
    fmt = sw.PacketFormat("!IHB", ("length", "msg_id", "flags"))
    with sw.server_listener(("127.0.0.1", 0), 1) as listener:
        client = sw.connect(listener.getsockname(), fmt, timeout=5)
        server = sw.Connection(sw.accept_client_connect(listener), fmt)
        with client, server:
            client.send_many([bytes([65 + i]) * 500 for i in range(10)], msg_id=7)
            client.shutdown_write()
            raw = b""
            while chunk := server.socket.recv(65536):  # look at the raw stream first...
                raw += chunk
            print(f"    the server read {len(raw)} bytes: 10 headers and bodies run together")
            packets = fmt.decoder().feed(raw)  # ...then split it with the format's decoder
            print(f"    Decoder.feed() split them into {len(packets)} packets:")
            for p in packets[:3]:
                print(
                    f"      msg_id={p.msg_id} flags={p.flags} body={p.body[:8]!r}... "
                    f"({len(p)} bytes)"
                )
            print("      ...")


def codecs() -> None:
    _step(9, "one message plain, compressed (zstd) and encrypted (aes-256-gcm), with sizes")
    message = b'{"player": 42, "action": "move", "x": 10.5, "y": -3.25}' * 8
    header = ("!IHB", ("length", "msg_id", "flags"))
    key = bytes(range(32))
    formats = {
        "plain": sw.PacketFormat(*header),
        "zstd": sw.PacketFormat(*header, compress="zstd"),
        "zstd + aes-256-gcm": sw.PacketFormat(
            *header, compress="zstd", cipher=sw.Cipher("aes-256-gcm", key)
        ),
    }
    for name, fmt in formats.items():
        frame = fmt.pack(message, msg_id=7)
        flags = frame[6]
        assert fmt.unpack(frame).body == message
        print(f"    {name:20s} {len(frame):4d} bytes on the wire (flags={flags:#04b})")
    sealed = formats["zstd + aes-256-gcm"].pack(message, msg_id=7)
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    try:
        formats["zstd + aes-256-gcm"].unpack(tampered)
    except sw.AuthenticationError as exc:
        print(f"    one flipped bit: AuthenticationError: {exc}")


def gateway() -> None:
    _step(10, "a Gateway: 300 clients on tokio, Python handlers on a work thread, a broadcast")
    fmt = sw.PacketFormat("!IH", ("length", "msg_id"))
    gw = sw.Gateway(("127.0.0.1", 0), fmt, max_clients=1000)

    @gw.route(1)
    def login(client: sw.ClientInfo, packet: sw.Packet) -> bytes:
        client.state["name"] = packet.body.decode()
        return b"welcome " + packet.body

    with gw:
        conns = [sw.connect(gw.address, fmt, timeout=10) for _ in range(300)]
        for i, conn in enumerate(conns):
            conn.send(f"player{i}".encode(), msg_id=1)
        replies = [conn.recv().body for conn in conns]
        print(f"    300 logins answered; the last: {replies[-1]!r}")
        print(f"    gw.clients holds {len(gw.clients)}; one of them: {next(iter(gw.clients))}")
        reached = gw.broadcast(b"server restarts in 5 minutes", msg_id=9)
        got = [conn.recv() for conn in conns]
        print(f"    broadcast queued to {reached} clients; all got {got[0]}")
        stats = gw.stats()
        print(
            "    stats():",
            ", ".join(
                f"{k}={stats[k]}" for k in ("accepted", "active", "packets_in", "packets_out")
            ),
        )
        for conn in conns:
            conn.close()


def main() -> int:
    print(f"sockwire {sw.__version__} demo: the seed recipe on loopback")
    socket_options()
    registry_walkthrough()
    sticky_packets()
    framing()
    codecs()
    gateway()
    print("\ndone.")
    return 0
