"""sockwire.locust under Locust itself, in subprocesses (importing locust patches the process
with gevent): a user waiting for a reply never blocks the others, requests are reported to
Locust's statistics, catch_response decides failures, and distributed mode works unchanged."""

import asyncio
import csv
import importlib.util
import os
import socket
import struct
import subprocess
import sys
import textwrap

import pytest
from _asyncio_server import AsyncioServer

# Only looked up, never imported here: importing locust patches this process with gevent.
if importlib.util.find_spec("locust") is None:
    pytest.skip("locust is not installed", allow_module_level=True)

HDR = struct.Struct("!IH")


async def slow_echo(reader, writer):
    """Answers each request 5 ms later (and not with `fail` when asked to echo it)."""
    try:
        while True:
            length, msg_id = HDR.unpack(await reader.readexactly(HDR.size))
            body = await reader.readexactly(length)
            await asyncio.sleep(0.005)
            if body == b"fail":
                body = b"wrong"
            writer.write(HDR.pack(len(body), msg_id) + body)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


@pytest.fixture(scope="module")
def server():
    with AsyncioServer(slow_echo, backlog=512) as s:
        yield s


LOCUSTFILE = textwrap.dedent(
    """
    import os, time
    import gevent
    from locust import constant, events, task
    import sockwire
    from sockwire.locust import SockwireUser

    class Player(SockwireUser):
        format = sockwire.PacketFormat("!IH", ("length", "msg_id"))
        wait_time = constant(0)

        @task(3)
        def ping(self):
            self.client.request(b"ping", msg_id=1, name=NAME)

        @task(1)
        def checked(self):
            with self.client.request(b"fail", msg_id=2, name="checked",
                                     catch_response=True) as r:
                if r.reply.body != b"fail":
                    r.failure("the server changed my body")

    NAME = os.environ.get("REQUEST_NAME", "ping")
    gaps = []

    @events.test_start.add_listener
    def ticker(environment, **kwargs):
        def tick():
            last = time.monotonic()
            while True:
                gevent.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now
        gevent.spawn(tick)

    @events.quitting.add_listener
    def largest_gap(environment, **kwargs):
        if gaps:
            p99 = sorted(gaps)[len(gaps) * 99 // 100]
            print(f"largest gap {max(gaps) * 1000:.1f} ms", flush=True)
            print(f"p99 gap {p99 * 1000:.1f} ms", flush=True)
    """
)


def locust(tmp_path, *args, env=None, **kwargs):
    (tmp_path / "locustfile.py").write_text(LOCUSTFILE)
    return subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(tmp_path / "locustfile.py"), *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **kwargs,
    )


def stats(path):
    with open(path) as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_fifty_users_never_block_the_hub_and_requests_are_reported(server, tmp_path):
    proc = locust(
        tmp_path,
        "--headless",
        "-u",
        "50",
        "-r",
        "50",
        "-t",
        "3s",
        "--host",
        f"tcp://127.0.0.1:{server.port}",
        "--csv",
        "run",
        "--only-summary",
    )
    out, _ = proc.communicate(timeout=60)
    # A 10 ms ticker kept ticking while 50 users waited. A hub blocked for each 5 ms reply
    # would starve it for most of the run; one stall of the whole machine (this virtual
    # machine has them: a run once had every request and the ticker late by the same 108 ms)
    # moves only the largest gap, so the bound on it is loose and the p99 is checked.
    largest = float(out.split("largest gap ")[1].split()[0])
    p99 = float(out.split("p99 gap ")[1].split()[0])
    assert p99 < 60 and largest < 500, out  # ms
    rows = stats(tmp_path / "run_stats.csv")
    ping, checked = rows["ping"], rows["checked"]
    assert ping["Type"] == "sockwire"
    assert int(ping["Request Count"]) > 1000 and int(ping["Failure Count"]) == 0
    assert 5 <= float(ping["Median Response Time"]) < 50  # the server's 5 ms, plus a little
    assert float(ping["Average Content Size"]) == 4  # len(b"ping")
    # catch_response: every "checked" request got a reply the test rejected
    assert int(checked["Failure Count"]) == int(checked["Request Count"]) > 0
    failures = list(csv.DictReader(open(tmp_path / "run_failures.csv")))
    assert any("the server changed my body" in f["Error"] for f in failures)


def test_distributed_master_counts_requests_from_both_workers(server, tmp_path):
    host = f"tcp://127.0.0.1:{server.port}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])  # free now: the master binds it
    master = locust(
        tmp_path,
        *("--headless", "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1"),
        *("--master-bind-port", port, "-u", "20", "-r", "20", "-t", "4s", "--host", host),
        *("--csv", "dist", "--only-summary"),
    )
    workers = [
        locust(
            tmp_path,
            *("--worker", "--master-host", "127.0.0.1", "--master-port", port),
            env={**os.environ, "REQUEST_NAME": f"ping from worker {i}"},
        )
        for i in range(2)
    ]
    out, _ = master.communicate(timeout=90)
    for worker in workers:
        worker.communicate(timeout=30)
    rows = stats(tmp_path / "dist_stats.csv")
    for i in range(2):  # each worker names its requests: both reached the master's stats
        assert int(rows[f"ping from worker {i}"]["Request Count"]) > 100, (rows.keys(), out)


def test_default_request_name_type_and_bad_hosts():
    code = textwrap.dedent(
        """
        from locust import events
        from locust.env import Environment
        import sockwire
        from sockwire.locust import SockwireClient, parse_host

        for bad in ["http://127.0.0.1:80", "tcp://127.0.0.1", "", None]:
            try:
                parse_host(bad)
            except ValueError as exc:
                print("refused", repr(bad), "-", exc)
        print(parse_host("tcp://127.0.0.1:9000"), parse_host("localhost:7"))

        fmt = sockwire.PacketFormat("!IH", ("length", "msg_id"))
        gw = sockwire.Gateway(("127.0.0.1", 0), fmt)
        gw.route()(lambda client, packet: packet)
        seen = []
        env = Environment(events=events)
        env.events.request.add_listener(lambda **kw: seen.append(kw))
        with gw:
            client = SockwireClient(*gw.address[:2], format=fmt, tls=None, timeout=5,
                                    environment=env)
            assert client.request(b"abc", msg_id=3).body == b"abc"
            client.close()
        [event] = seen
        print(event["request_type"], "|", event["name"], "|", event["response_length"],
              "|", event["exception"])
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("refused") == 4
    assert "refused 'http://127.0.0.1:80' - host must be \"tcp://HOST:PORT\"" in out
    assert "('127.0.0.1', 9000) ('localhost', 7)" in out
    assert "sockwire | msg 3 | 3 | None" in out
