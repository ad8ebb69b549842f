"""Why framing exists: TCP delivers bytes, not messages.

A client makes 10 writes totalling 5000 bytes. The server reads with recv(65536) and counts
its reads: there are fewer than 10, and their sizes have nothing to do with the writes.
The next step (sockwire.PacketFormat) puts a length header on each message so the receiver
can split the stream again.

Run: python examples/sticky_packets.py
"""

import threading

import sockwire

WRITES = [300, 700, 250, 750, 500, 500, 100, 900, 400, 600]  # 5000 bytes in 10 writes

listener = sockwire.server_listener(("127.0.0.1", 0), 1)
client = sockwire.create_client(listener.getsockname(), timeout=5)
conn = sockwire.accept_client_connect(listener)
all_sent = threading.Event()


def writer() -> None:
    for i, size in enumerate(WRITES):
        client.sendall(bytes([ord("a") + i]) * size)
    all_sent.set()
    client.shutdown(sockwire.SHUT_WR)  # half-close: the server sees EOF after the data


threading.Thread(target=writer).start()
all_sent.wait(5)  # let the writes pile up in the receive buffer, as they do on a busy server

reads = []
while chunk := conn.recv(65536):
    reads.append(chunk)

total = sum(len(r) for r in reads)
print(f"client: {len(WRITES)} writes, {sum(WRITES)} bytes: {WRITES}")
print(f"server: {len(reads)} reads, {total} bytes: {[len(r) for r in reads]}")
assert total == sum(WRITES)
assert len(reads) < len(WRITES), "the stream kept the write boundaries this time"
print("the write boundaries are gone: the receiver cannot tell where each message ended")

for sock in (client, conn, listener):
    sock.close()
