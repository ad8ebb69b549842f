"""Locust against a game-style TCP server: each user logs in, then chats in a loop; the server
pushes every message to the other players, so replies are matched to requests by a `seq`
header field (`correlate`), and the pushes are read with `recv()`.

Two terminals (the web UI at http://localhost:8089, or --headless):
    python examples/locustfile.py --serve 9000
    locust -f examples/locustfile.py --host tcp://127.0.0.1:9000
    locust -f examples/locustfile.py --host tcp://127.0.0.1:9000 --headless -u 50 -r 10 -t 30s

One command (the server and a 3-second headless run of 20 users in this process):
    python examples/locustfile.py
"""

import sys
import time

from locust import between, task

import sockwire
from sockwire.locust import SockwireUser

FMT = sockwire.PacketFormat("!IHI", ("length", "msg_id", "seq"))
LOGIN, CHAT, NOTICE = 1, 2, 3


class ChatUser(SockwireUser):
    format = FMT
    correlate = "seq"  # replies carry their request's seq; pushes carry 0
    wait_time = between(0.01, 0.05)

    def on_start(self) -> None:
        self.name = f"user{id(self) % 10_000}".encode()
        self.client.request(self.name, msg_id=LOGIN, name="login")

    @task(5)
    def chat(self) -> None:
        with self.client.request(b"hello", msg_id=CHAT, name="chat", catch_response=True) as r:
            if r.reply is not None and r.reply.body != b"sent":
                r.failure(f"unexpected reply {r.reply.body!r}")

    @task(1)
    def read_pushes(self) -> None:
        try:
            while True:  # what other players said since last time
                self.client.recv(timeout=0.001)
        except TimeoutError:
            pass


def lobby(port: int = 0) -> sockwire.Gateway:
    """The server: login, then chat messages pushed to every other logged-in player."""
    gw = sockwire.Gateway(("127.0.0.1", port), FMT, max_clients=10_000)

    @gw.route(LOGIN)
    def login(client: sockwire.ClientInfo, packet: sockwire.Packet) -> bytes:
        client.state["name"] = packet.body
        return b"welcome"

    @gw.route(CHAT)
    def chat(client: sockwire.ClientInfo, packet: sockwire.Packet) -> bytes:
        line = client.state.get("name", b"?") + b": " + packet.body
        gw.broadcast(line, msg_id=NOTICE, exclude=[client], seq=0)
        return b"sent"

    return gw


def run_here(users: int = 20, seconds: float = 3.0) -> None:
    from locust.env import Environment

    with lobby() as gw:
        host, port = gw.address[:2]
        ChatUser.host = f"tcp://{host}:{port}"
        env = Environment(user_classes=[ChatUser])
        runner = env.create_local_runner()
        runner.start(users, spawn_rate=users)
        time.sleep(seconds)  # gevent's sleep: importing locust patched the time module
        runner.quit()
        for name in ["login", "chat"]:
            entry = env.stats.get(name, "sockwire")
            print(
                f"{name}: {entry.num_requests} requests, {entry.num_failures} failures, "
                f"median {entry.median_response_time:.2f} ms"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        with lobby(int(sys.argv[2])) as server:
            print(f"serving on {server.address[0]}:{server.address[1]}", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    else:
        run_here()
