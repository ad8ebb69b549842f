"""Every example runs as written, and the command line works."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

# What each example must print: proof that it did its job, not just that it exited 0.
EXPECT = {
    "seed_walkthrough.py": ["registry: 3 of 4 clients", "turned away:", "closing everything: 0"],
    "sticky_packets.py": ["client: 10 writes, 5000 bytes", "the write boundaries are gone"],
    "chat_gateway.py": [
        "bob <- alice: hello, everyone",
        "alice <- kicked carol",
        "carol was disconnected",
        "bob <- carol left (kicked by alice)",
        "gateway stopped",
    ],
    "async_client.py": [
        "3 logins of 50 ms each took",
        "bob <- alice whispers see you at noon (msg_id 9)",
        "carol <- sorry I'm late (the same reply, not lost)",
        "server: alice left (stopped)",
        "gateway stopped (running=False)",
        "all closed: True",
    ],
    "framed_echo.py": ["reply msg_id=1001 b'ALICE:SECRET'", "20 replies in order", "server done"],
    "locustfile.py": ["login: 20 requests, 0 failures", "chat: "],
    "secure_chat.py": ["alice <- welcome, alice", "(zstd, then sealed)", "refused a client"],
    "test_load.py": ["2 passed"],
    "tls_echo.py": [
        "sockwire client (TLSv1.3) <- b'HELLO FROM SOCKWIRE'",
        "python ssl client (TLSv1.3) <- b'HELLO FROM SSL'",
        "untrusted server refused by the client",
    ],
}


def run(*args, timeout=120):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_every_example_has_expectations():
    assert {p.name for p in EXAMPLES} == set(EXPECT)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path):
    proc = run(str(path))
    assert proc.returncode == 0, proc.stderr
    for text in EXPECT[path.name]:
        assert text in proc.stdout, proc.stdout


def test_demo():
    proc = run("-m", "sockwire", "demo")
    assert proc.returncode == 0, proc.stderr
    for text in [
        "[1] Socket options",
        "ServerFull:",
        "10 sends arrived as",
        "split them into 10 packets",
        "zstd + aes-256-gcm",
        "one flipped bit: AuthenticationError",
        "done.",
    ]:
        assert text in proc.stdout, proc.stdout


def test_help_lists_subcommands():
    proc = run("-m", "sockwire", "--help")
    assert proc.returncode == 0
    assert "demo" in proc.stdout


def test_no_command_prints_help_and_fails():
    proc = run("-m", "sockwire")
    assert proc.returncode == 2
    assert "demo" in proc.stdout


@pytest.mark.parametrize(
    ("script", "marker"),
    [
        ("bench_socket.py", "(2) bulk"),
        ("bench_packets.py", "(c) request/response"),
        ("bench_codecs.py", "(4) TLS bulk"),
        ("bench_gateway.py", "(4) 200 new connections"),
        ("bench_aio.py", "(3) Gateway echo, 100 connections x 16 in flight"),
        ("bench_swarm.py", "most connections held and cycling"),
        ("bench_locust.py", "(2) Locust's p50 against a server answering 5 ms late"),
    ],
)
def test_benchmark_smoke(script, marker):
    """Each benchmark runs end to end (figures are not asserted: timing stays out of tests)."""
    proc = run(str(ROOT / "bench" / script), "--quick")
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout
