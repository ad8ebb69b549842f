"""A chat server on a Gateway, and three clients talking to it.

Every packet carries a `!IH` header: body length (u32), msg_id (u16). A client logs in first
(LOGIN: the server keeps the name in `client.state`, the per-connection dict); a CHAT packet
goes to every other logged-in client as "name: text"; "/kick name" disconnects that user;
`on_disconnect` tells the others who left and why.

Run: python examples/chat_gateway.py
"""

import sockwire

CHAT_FORMAT = sockwire.PacketFormat("!IH", ("length", "msg_id"))
LOGIN, CHAT, NOTICE = 1, 2, 3

gateway = sockwire.Gateway(("127.0.0.1", 0), CHAT_FORMAT, max_clients=100)


def others(client: sockwire.ClientInfo) -> list[sockwire.ClientInfo]:
    """Who a message from `client` must not reach: the sender, and whoever is not logged in."""
    return [client, *(c for c in gateway.clients if "name" not in c.state)]


@gateway.route(LOGIN)
def login(client: sockwire.ClientInfo, packet: sockwire.Packet) -> bytes:
    name = packet.body.decode()
    client.state["name"] = name
    gateway.broadcast(f"{name} joined".encode(), msg_id=NOTICE, exclude=others(client))
    return f"welcome, {name}".encode()


@gateway.route(CHAT)
def chat(client: sockwire.ClientInfo, packet: sockwire.Packet) -> bytes | None:
    name = client.state.get("name")
    if name is None:
        return b"log in first"
    text = packet.body.decode()
    if text.startswith("/kick "):
        target = text.removeprefix("/kick ")
        for other in gateway.clients:
            if other.state.get("name") == target:
                gateway.kick(other, f"kicked by {name}")
                return f"kicked {target}".encode()
        return f"no user {target}".encode()
    gateway.broadcast(f"{name}: {text}".encode(), msg_id=CHAT, exclude=others(client))
    return None


@gateway.on_disconnect
def left(client: sockwire.ClientInfo, reason: str) -> None:
    if "name" in client.state:
        gateway.broadcast(f"{client.state['name']} left ({reason})".encode(), msg_id=NOTICE)


gateway.start()
address = gateway.address
alice, bob, carol = (sockwire.connect(address, CHAT_FORMAT, timeout=5) for _ in range(3))
for name, conn in (("alice", alice), ("bob", bob), ("carol", carol)):
    print(f"{name} <- {conn.request(name.encode(), msg_id=LOGIN).body.decode()}")
print(f"alice <- {alice.recv().body.decode()}")  # bob joined
print(f"alice <- {alice.recv().body.decode()}")  # carol joined
print(f"bob <- {bob.recv().body.decode()}")  # carol joined

alice.send(b"hello, everyone", msg_id=CHAT)
for name, conn in (("bob", bob), ("carol", carol)):
    print(f"{name} <- {conn.recv().body.decode()}")

print(f"alice <- {alice.request(b'/kick carol', msg_id=CHAT).body.decode()}")
try:
    carol.recv()
except sockwire.ConnectionClosed:
    print("carol was disconnected")
for name, conn in (("alice", alice), ("bob", bob)):
    print(f"{name} <- {conn.recv().body.decode()}")

print(f"{len(gateway.clients)} clients left; stats: {gateway.stats()['packets_in']} packets in")
for conn in (alice, bob, carol):
    conn.close()
gateway.stop()
print("gateway stopped")
