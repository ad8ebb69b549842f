"""The classic socket recipe, step by step, on sockwire.

1. socket options: a client and a server socket, with their send/receive buffer sizes;
2. a listener that holds at most MAX_CLIENTS live clients;
3. clients connect; the server accepts and registers each one in a ClientGroup of
   ClientInfo{client_fd, fd_port};
4. the server answers each client, then a client leaves and the registry shrinks;
5. one client too many is turned away with ServerFull.

Run: python examples/seed_walkthrough.py
"""

import threading

import sockwire
from sockwire import SO_RCVBUF, SO_SNDBUF, SOL_SOCKET

MAX_CLIENTS = 4


def print_buffers(label: str, sock: sockwire.Socket) -> None:
    sndbuf = sock.getsockopt(SOL_SOCKET, SO_SNDBUF)
    rcvbuf = sock.getsockopt(SOL_SOCKET, SO_RCVBUF)
    print(f"{label:>22}: send buffer {sndbuf:>7} bytes, receive buffer {rcvbuf:>7} bytes")


# 1. Options. Linux reports twice the size you ask for (it keeps room for bookkeeping).
with sockwire.tcp_client_options() as c, sockwire.tcp_server_options(rcvbuf=32768) as s:
    print_buffers("tcp_client_options()", c)
    print_buffers("tcp_server_options()", s)

# 2. The listener: bound, listening, with a client limit.
listener = sockwire.server_listener(("127.0.0.1", 0), MAX_CLIENTS)
address = listener.getsockname()
print(f"listening on {address}, at most {listener.max_clients} clients")


# 3. The server: accept and register clients, answer each one with its own registry entry.
def serve(count: int) -> None:
    for _ in range(count):
        conn = sockwire.accept_client_connect(listener)
        info = listener.clients.get(conn.fileno())
        assert info is not None  # accept_client_connect registered it
        name = conn.recv(64).decode()
        conn.sendall(f"welcome {name}, you are fd {info['client_fd']}".encode())
        served.append(conn)


served: list[sockwire.Socket] = []
server = threading.Thread(target=serve, args=(3,))
server.start()
clients = []
for name in ("alice", "bob", "carol"):
    client = sockwire.create_client(address, timeout=5)
    client.sendall(name.encode())
    print(f"{name} <- {client.recv(64).decode()!r}")
    clients.append(client)
server.join()

print(f"registry: {len(listener.clients)} of {listener.max_clients} clients")
for info in listener.clients:
    print(f"  client_fd={info.client_fd} fd_port={info.fd_port} as dict: {info.as_dict()}")

# 4. A client leaves: closing the server-side socket removes it from the registry.
leaving = served.pop(0)
fd = leaving.fileno()
leaving.close()
print(f"fd {fd} closed; still registered: {fd in listener.clients}; {len(listener.clients)} left")

# 5. Fill the listener, then one more client than it may hold.
free = listener.max_clients - len(listener.clients)
extra = [sockwire.create_client(address, timeout=5) for _ in range(free + 1)]
served += [sockwire.accept_client_connect(listener) for _ in range(free)]
try:
    sockwire.accept_client_connect(listener)
except sockwire.ServerFull as exc:
    print(f"turned away: {exc}; that client reads {extra[-1].recv(16)!r} (closed)")

for sock in clients + extra + served:
    sock.close()
listener.close()
print("registry after closing everything:", len(listener.clients))
