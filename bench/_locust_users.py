"""The two Locust users bench_locust.py compares, doing the same task against the same echo
server: a request of 64 bytes behind a `!I` length, the reply read whole, reported to Locust.
(Run by `locust -f` in a subprocess; importing locust patches the process with gevent.)"""

import os
import socket
import struct
import time

from locust import User, constant, task

import sockwire
from sockwire.locust import SockwireUser

HDR = struct.Struct("!I")
BODY = b"x" * 64
HOST, PORT = os.environ["BENCH_HOST"], int(os.environ["BENCH_PORT"])


class SockwireEcho(SockwireUser):
    host = f"tcp://{HOST}:{PORT}"
    format = sockwire.PacketFormat("!I")
    wait_time = constant(0)

    @task
    def echo(self) -> None:
        self.client.request(BODY, name="echo")


class GeventEcho(User):
    """The usual way: gevent's own sockets (socket is patched), struct framing, the request
    event fired by hand."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.sock = socket.create_connection((HOST, PORT))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def recv_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    @task
    def echo(self) -> None:
        started = time.perf_counter()
        error = None
        length = 0
        try:
            self.sock.sendall(HDR.pack(len(BODY)) + BODY)
            (length,) = HDR.unpack(self.recv_exactly(4))
            self.recv_exactly(length)
        except OSError as exc:
            error = exc
        self.environment.events.request.fire(
            request_type="tcp",
            name="echo",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=error,
            context={},
        )
