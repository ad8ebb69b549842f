"""asyncio end to end: a Gateway with `async def` handlers served on the running loop, and
sockwire.aio clients on the same loop.

The server is a small lobby: `login` awaits a (pretend) database, `whisper` forwards a message
to another player, `slow` answers late. The clients log in concurrently, show that a reply they
gave up waiting for is not lost, and that cancelling `serve()` stops the server gracefully.

Run: python examples/async_client.py
"""

import asyncio

import sockwire
from sockwire import aio

FMT = sockwire.PacketFormat("!IH", ("length", "msg_id"))
LOGIN, WHISPER, SLOW, NOTICE = 1, 2, 3, 9


def lobby() -> sockwire.Gateway:
    gw = sockwire.Gateway(("127.0.0.1", 0), FMT)
    names: dict[bytes, sockwire.ClientInfo] = {}

    @gw.route(LOGIN)
    async def login(client: sockwire.ClientInfo, packet: sockwire.Packet) -> bytes:
        await asyncio.sleep(0.05)  # a database lookup: other clients go on meanwhile
        client.state["name"] = packet.body
        names[packet.body] = client
        return b"welcome, " + packet.body

    @gw.route(WHISPER)
    def whisper(client: sockwire.ClientInfo, packet: sockwire.Packet) -> bytes:
        to, _, text = packet.body.partition(b":")
        gw.send(names[to], client.state["name"] + b" whispers " + text, msg_id=NOTICE)
        return b"sent"

    @gw.route(SLOW)
    async def slow(client: sockwire.ClientInfo, packet: sockwire.Packet) -> bytes:
        await asyncio.sleep(0.3)
        return b"sorry I'm late"

    @gw.on_disconnect
    async def left(client: sockwire.ClientInfo, reason: str) -> None:
        names.pop(client.state.get("name", b""), None)
        print(f"server: {client.state.get('name', b'?').decode()} left ({reason})")

    return gw


async def main() -> None:
    gw = lobby()
    serving = asyncio.create_task(gw.serve())  # the handlers run on this loop
    while not gw.running:
        await asyncio.sleep(0.01)

    async def player(name: bytes) -> aio.AsyncConnection:
        conn = await aio.connect(gw.address, FMT, timeout=5)
        reply = await conn.request(name, msg_id=LOGIN)
        print(f"{name.decode()} <- {reply.body.decode()}")
        return conn

    loop = asyncio.get_running_loop()
    began = loop.time()
    alice, bob, carol = await asyncio.gather(*(player(n) for n in [b"alice", b"bob", b"carol"]))
    print(f"3 logins of 50 ms each took {(loop.time() - began) * 1000:.0f} ms: concurrent")

    assert (await alice.request(b"bob:see you at noon", msg_id=WHISPER)).body == b"sent"
    notice = await bob.recv()
    print(f"bob <- {notice.body.decode()} (msg_id {notice.msg_id})")

    # Give up on a slow reply: the cancelled recv loses nothing, the next recv gets it.
    await carol.send(b"", msg_id=SLOW)
    try:
        await asyncio.wait_for(carol.recv(), 0.1)
    except TimeoutError:
        print("carol gave up waiting after 0.1 s")
    print(f"carol <- {(await carol.recv()).body.decode()} (the same reply, not lost)")
    try:
        await carol.recv(timeout=0.1)
    except TimeoutError:
        print("carol: nothing more (TimeoutError)")

    await carol.close()
    await asyncio.sleep(0.05)
    serving.cancel()  # a graceful stop: everyone still connected gets on_disconnect "stopped"
    try:
        await serving
    except asyncio.CancelledError:
        print(f"gateway stopped (running={gw.running})")
    for conn in (alice, bob):
        try:
            await conn.recv()
        except sockwire.ConnectionClosed:
            pass
        await conn.close()
    print("all closed:", alice.closed and bob.closed and carol.closed)


if __name__ == "__main__":
    asyncio.run(main())
