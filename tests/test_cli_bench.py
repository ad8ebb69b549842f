"""`python -m sockwire echo-server` and `python -m sockwire bench`, in subprocesses, as a user
runs them in two terminals; and the pytest plugin's fixtures, through pytester."""

import json
import signal
import socket
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]


def sockwire(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "sockwire", *args], capture_output=True, text=True, **kwargs
    )


@pytest.fixture
def echo_server():
    proc = subprocess.Popen(
        [sys.executable, "-m", "sockwire", "echo-server", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("listening on 127.0.0.1:"), line
    yield line.split()[-1], proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_bench_against_echo_server(echo_server, tmp_path):
    target, _ = echo_server
    report_path, plot_path = tmp_path / "run.json", tmp_path / "run.png"
    done = sockwire(
        "bench",
        target,
        "--clients",
        "20",
        "--duration",
        "2",
        "--expect",
        "echo",
        "--json",
        str(report_path),
        "--plot",
        str(plot_path),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"sockwire bench {target}: 20 clients" in done.stdout
    for word in ["received", "latency", "p99", "errors     0"]:
        assert word in done.stdout
    # stderr is not a terminal here: one progress line per second
    progress = [line for line in done.stderr.splitlines() if "req/s" in line]
    assert len(progress) >= 1 and "connected 20" in progress[0]
    report = json.loads(report_path.read_text())
    assert report["errors"] == {} and report["received"] > 0
    assert plot_path.read_bytes()[:4] == b"\x89PNG"


def test_bench_exits_1_when_requests_fail():
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    done = sockwire(
        "bench", f"127.0.0.1:{port}", "--clients", "3", "--requests", "10", "--quiet", timeout=60
    )
    assert done.returncode == 1
    assert "connect 3" in done.stdout


def test_bench_with_a_format_and_fields(echo_server):
    target, _ = echo_server
    done = sockwire(
        "bench",
        target,
        "--requests",
        "500",
        "--quiet",
        "--format",
        "!I",
        "--fields",
        "length",
        "--expect",
        "echo",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "500" in done.stdout


def test_bench_rejects_bad_targets_and_options():
    assert sockwire("bench", "nowhere").returncode == 2
    assert sockwire("bench", "127.0.0.1:99999").returncode == 2
    assert sockwire("bench", "127.0.0.1:1", "--duration", "1", "--requests", "5").returncode == 2


def test_echo_server_stops_cleanly_on_ctrl_c(echo_server):
    _, proc = echo_server
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "stopped" in out


def test_help_shows_examples():
    for command, example in [("bench", "--rate 20000"), ("echo-server", "echo-server 9000")]:
        done = sockwire(command, "--help")
        assert done.returncode == 0 and "examples:" in done.stdout and example in done.stdout


def test_the_pytest_plugin_fixtures(pytester):
    pytester.makepyfile(
        """
        import sockwire

        FMT = sockwire.PacketFormat("!IH", ("length", "msg_id"))

        def test_gateway_and_connect(sockwire_gateway, sockwire_connect):
            gw = sockwire_gateway(FMT, routes={1: lambda c, p: b"one", None: lambda c, p: p})
            conn = sockwire_connect(gw.address, FMT, timeout=5)
            assert conn.request(b"", msg_id=1).body == b"one"
            assert conn.request(b"echo", msg_id=5).body == b"echo"

        def test_echo_server(sockwire_echo_server, sockwire_connect):
            conn = sockwire_connect(sockwire_echo_server, timeout=5)
            assert conn.request(b"hi").body == b"hi"

        def test_a_swarm_on_the_echo_server(sockwire_echo_server):
            report = sockwire.swarm(sockwire_echo_server, clients=10, requests=1000, expect="echo")
            assert report.errors == {} and report.latency["p99"] < 1.0

        def test_tls(sockwire_tls, sockwire_gateway, sockwire_connect):
            server, client = sockwire_tls
            gw = sockwire_gateway(routes={None: lambda c, p: p}, tls=server)
            conn = sockwire_connect(gw.address, tls=client, timeout=5)
            assert conn.request(b"secret").body == b"secret"

        gateways = []

        def test_teardown_first(sockwire_gateway):
            gateways.append(sockwire_gateway())
            assert gateways[0].running

        def test_teardown_then(sockwire_gateway):
            assert not gateways[0].running  # stopped by the first test's teardown
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)


def test_progress_redraws_in_place_on_a_terminal(echo_server):
    import os
    import pty

    target, _ = echo_server
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sockwire", "bench", target, "--clients", "5", "--duration", "2.5"],
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
    )
    os.close(follower)
    out, _ = proc.communicate(timeout=60)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.returncode == 0 and "received" in out
    assert seen.count(b"\r\x1b[K") == 2  # the line redrawn each second, not scrolled
    assert seen.endswith(b"\r\n")  # left on a line of its own at the end
