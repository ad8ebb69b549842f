"""A game-style framed echo server and client.

Every packet carries a 7-byte header `!IHB`: body length (u32), msg_id (u16), flags (u8).
The server (a Listener plus one Connection per client, each in its own thread) answers each
request with msg_id + 1000 and the body upper-cased; the client sends requests one by one with
Connection.request, then a burst with send_many that the server splits back into packets.

Run: python examples/framed_echo.py
"""

import threading

import sockwire

GAME = sockwire.PacketFormat("!IHB", ("length", "msg_id", "flags"))
LOGIN, CHAT, MOVE = 1, 2, 3
REPLY = 1000


def handle(conn: sockwire.Connection) -> None:
    with conn:
        for packet in conn:  # until the client closes its side
            conn.send(packet.body.upper(), msg_id=packet.msg_id + REPLY, flags=packet.flags)


def serve(listener: sockwire.Listener, clients: int) -> None:
    workers = []
    for _ in range(clients):
        sock = sockwire.accept_client_connect(listener)
        worker = threading.Thread(target=handle, args=(sockwire.Connection(sock, GAME),))
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join()


listener = sockwire.server_listener(("127.0.0.1", 0), 8)
server = threading.Thread(target=serve, args=(listener, 1))
server.start()

with sockwire.connect(listener.getsockname(), GAME, timeout=5) as client:
    for msg_id, body in [(LOGIN, b"alice:secret"), (CHAT, b"hello, world"), (MOVE, b"x=3,y=4")]:
        reply = client.request(body, msg_id=msg_id)
        print(f"request msg_id={msg_id} {body!r:18} -> reply msg_id={reply.msg_id} {reply.body!r}")

    # A burst: 20 packets in one write. TCP may deliver them to the server in any chunks;
    # the decoder splits them back exactly.
    client.send_many([f"move {i}".encode() for i in range(20)], msg_id=MOVE, flags=1)
    replies = [client.recv() for _ in range(20)]
    assert [r.body for r in replies] == [f"MOVE {i}".encode() for i in range(20)]
    assert all(r.msg_id == MOVE + REPLY and r.flags == 1 for r in replies)
    print(f"burst: 20 packets sent in one write, 20 replies in order, last {replies[-1]}")
    client.shutdown_write()  # the server's loop ends when it sees EOF

server.join()
listener.close()
print("server done")
