"""A chat over a `!IHB` header with every body compressed (zstd) and encrypted (AES-256-GCM).

Both sides share a 32-byte key. On the wire each packet is: length (u32), msg_id (u16), flags
(u8; bit 0 = compressed, bit 1 = encrypted), then nonce(12) || ciphertext || tag(16), with the
7-byte header as associated data: nobody can read the messages or alter a header or body
without the receiver noticing (AuthenticationError). A third client with the wrong key is
refused.

Run: python examples/secure_chat.py
"""

import os
import threading

import sockwire

KEY = os.urandom(32)  # in real life: from your key exchange or configuration
CHAT, JOIN = 1, 2


def chat_format(key: bytes) -> sockwire.PacketFormat:
    return sockwire.PacketFormat(
        "!IHB",
        ("length", "msg_id", "flags"),
        compress=sockwire.Compression("zstd", min_size=64),  # small lines go uncompressed
        cipher=sockwire.Cipher("aes-256-gcm", key),
    )


FMT = chat_format(KEY)
listener = sockwire.server_listener(("127.0.0.1", 0), 4)


def server() -> None:
    for _ in range(2):
        conn = sockwire.Connection(sockwire.accept_client_connect(listener), FMT)
        with conn:
            try:
                for packet in conn:
                    if packet.msg_id == JOIN:
                        conn.send(b"welcome, " + packet.body, msg_id=JOIN)
                    else:
                        conn.send(b"echo: " + packet.body, msg_id=CHAT)
            except sockwire.AuthenticationError as exc:
                print(f"server: refused a client: {exc}")


thread = threading.Thread(target=server)
thread.start()

with sockwire.connect(listener.getsockname(), FMT, timeout=5) as alice:
    print("alice <-", alice.request(b"alice", msg_id=JOIN).body.decode())
    print("alice <-", alice.request(b"hi all", msg_id=CHAT).body.decode())
    long_line = b"a long message that compresses well " * 20
    wire = FMT.pack(long_line, msg_id=CHAT)
    print(f"a {len(long_line)}-byte line is {len(wire)} bytes on the wire (zstd, then sealed)")
    reply = alice.request(long_line, msg_id=CHAT)
    assert reply.body == b"echo: " + long_line
    alice.shutdown_write()

intruder = sockwire.connect(listener.getsockname(), chat_format(os.urandom(32)), timeout=5)
intruder.send(b"let me in", msg_id=JOIN)
intruder.shutdown_write()
thread.join()
intruder.close()
listener.close()
