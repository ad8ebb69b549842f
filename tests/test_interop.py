"""Framing interop with peers no one here wrote, over real loopback sockets, both directions:
Twisted's Int32StringReceiver / Int16StringReceiver, multiprocessing.connection, and an asyncio
StreamReader.readexactly protocol."""

import asyncio
import json
import struct
import subprocess
import sys
import threading
from multiprocessing.connection import Client as MpClient
from multiprocessing.connection import Listener as MpListener

import pytest

import sockwire as sw

MESSAGES = [b"", b"a", b"hello" * 20, bytes(range(256)) * 40, b"\x00" * 1000, b"last"]

TWISTED_SERVER = r"""
import sys
from twisted.internet import protocol, reactor
from twisted.protocols.basic import Int16StringReceiver, Int32StringReceiver

base = {"32": Int32StringReceiver, "16": Int16StringReceiver}[sys.argv[1]]

class Reverse(base):
    def stringReceived(self, data):
        self.sendString(data[::-1])  # reversed: proof each frame was split where it ends

    def connectionLost(self, reason):
        reactor.stop()

factory = protocol.ServerFactory()
factory.protocol = Reverse
port = reactor.listenTCP(0, factory, interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""

TWISTED_CLIENT = r"""
import json, sys
from twisted.internet import protocol, reactor
from twisted.protocols.basic import Int16StringReceiver, Int32StringReceiver

base = {"32": Int32StringReceiver, "16": Int16StringReceiver}[sys.argv[1]]
messages = [bytes.fromhex(m) for m in json.loads(sys.argv[3])]
got = []

class Sender(base):
    def connectionMade(self):
        for m in messages:
            self.sendString(m)

    def stringReceived(self, data):
        got.append(data.hex())
        if len(got) == len(messages):
            self.transport.loseConnection()

    def connectionLost(self, reason):
        print(json.dumps(got), flush=True)
        reactor.stop()

factory = protocol.ClientFactory()
factory.protocol = Sender
reactor.connectTCP("127.0.0.1", int(sys.argv[2]), factory)
reactor.run()
"""

pytest.importorskip("twisted")


@pytest.mark.parametrize(("bits", "header"), [("32", "!I"), ("16", "!H")])
def test_sockwire_client_to_twisted_server(bits, header):
    proc = subprocess.Popen(
        [sys.executable, "-c", TWISTED_SERVER, bits], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())
        with sw.connect(("127.0.0.1", port), sw.PacketFormat(header), timeout=10) as conn:
            conn.send_many(MESSAGES)  # one write: Twisted must split the sticky stream
            replies = [conn.recv().body for _ in MESSAGES]
        assert replies == [m[::-1] for m in MESSAGES]
        assert proc.wait(10) == 0
    finally:
        proc.kill()


@pytest.mark.parametrize(("bits", "header"), [("32", "!I"), ("16", "!H")])
def test_twisted_client_to_sockwire_server(bits, header):
    fmt = sw.PacketFormat(header)
    with sw.server_listener(("127.0.0.1", 0), 1) as lst:
        messages = json.dumps([m.hex() for m in MESSAGES])
        port = str(lst.getsockname()[1])
        proc = subprocess.Popen(
            [sys.executable, "-c", TWISTED_CLIENT, bits, port, messages],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            lst.settimeout(10)
            conn = sw.Connection(sw.accept_client_connect(lst), fmt)
            received = []
            for packet in conn:  # until Twisted closes
                received.append(packet.body)
                conn.send(packet.body[::-1])
            out, _ = proc.communicate(timeout=10)
        finally:
            proc.kill()
    assert received == MESSAGES
    assert [bytes.fromhex(h) for h in json.loads(out)] == [m[::-1] for m in MESSAGES]


def test_twisted_int16_rejects_what_our_format_rejects():
    """A body over 65535 bytes cannot be framed with a 2-byte length, on either side."""
    with pytest.raises(ValueError, match="cannot hold"):
        sw.PacketFormat("!H").pack(b"x" * 65536)


# multiprocessing.connection frames each message with a signed 4-byte big-endian length.
MP_FORMAT = sw.PacketFormat("!i")


def test_sockwire_client_to_multiprocessing_listener():
    with MpListener(("127.0.0.1", 0)) as listener:
        result = []

        def serve():
            with listener.accept() as conn:
                while True:
                    try:
                        data = conn.recv_bytes()
                    except EOFError:
                        return
                    result.append(data)
                    conn.send_bytes(data[::-1])

        t = threading.Thread(target=serve)
        t.start()
        with sw.connect(listener.address, MP_FORMAT, timeout=10) as conn:
            conn.send_many(MESSAGES)
            replies = [conn.recv().body for _ in MESSAGES]
        t.join(10)
    assert result == MESSAGES
    assert replies == [m[::-1] for m in MESSAGES]


def test_multiprocessing_client_to_sockwire_server():
    with sw.server_listener(("127.0.0.1", 0), 1) as lst:
        replies = []

        def client():
            with MpClient(lst.getsockname()) as c:
                for m in MESSAGES:
                    c.send_bytes(m)
                for _ in MESSAGES:
                    replies.append(c.recv_bytes())

        t = threading.Thread(target=client)
        t.start()
        conn = sw.Connection(sw.accept_client_connect(lst), MP_FORMAT)
        received = []
        for packet in conn:
            received.append(packet.body)
            conn.send(packet.body[::-1])
        t.join(10)
        conn.close()
    assert received == MESSAGES
    assert replies == [m[::-1] for m in MESSAGES]


# An asyncio protocol the way people write it by hand: readexactly(header), then the body.
GAME = sw.PacketFormat("!IHB", ("length", "msg_id", "flags"))
HEADER = struct.Struct("!IHB")


async def _asyncio_game_server(port_box, done):
    async def handle(reader, writer):
        try:
            while True:
                length, msg_id, flags = HEADER.unpack(await reader.readexactly(HEADER.size))
                body = await reader.readexactly(length)
                writer.write(HEADER.pack(len(body), msg_id + 1, flags) + body.upper())
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port_box.append(server.sockets[0].getsockname()[1])
    async with server:
        await asyncio.get_running_loop().run_in_executor(None, done.wait)


def test_sockwire_client_to_asyncio_server():
    port_box, done = [], threading.Event()
    t = threading.Thread(target=asyncio.run, args=(_asyncio_game_server(port_box, done),))
    t.start()
    try:
        while not port_box:
            threading.Event().wait(0.01)
        with sw.connect(("127.0.0.1", port_box[0]), GAME, timeout=10) as conn:
            conn.send_many([b"abc", b"", b"x" * 70000], msg_id=5, flags=1)
            replies = [conn.recv() for _ in range(3)]
    finally:
        done.set()
        t.join(10)
    assert replies == [
        sw.Packet(b"ABC", msg_id=6, flags=1),
        sw.Packet(b"", msg_id=6, flags=1),
        sw.Packet(b"X" * 70000, msg_id=6, flags=1),
    ]


def test_asyncio_client_to_sockwire_server():
    async def client(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i, body in enumerate(MESSAGES):
            writer.write(HEADER.pack(len(body), i, 0) + body)
        await writer.drain()
        got = []
        for _ in MESSAGES:
            length, msg_id, _flags = HEADER.unpack(await reader.readexactly(HEADER.size))
            got.append((msg_id, await reader.readexactly(length)))
        writer.close()
        await writer.wait_closed()
        return got

    with sw.server_listener(("127.0.0.1", 0), 1) as lst:
        result = []
        t = threading.Thread(
            target=lambda: result.append(asyncio.run(client(lst.getsockname()[1])))
        )
        t.start()
        conn = sw.Connection(sw.accept_client_connect(lst), GAME)
        for packet in conn:
            conn.send(packet.body[::-1], msg_id=packet.msg_id)
        t.join(10)
        conn.close()
    assert result == [[(i, m[::-1]) for i, m in enumerate(MESSAGES)]]
