"""Locust benchmark: the requests per second one Locust worker process sustains with
`SockwireUser` against a `User` written the usual way (gevent's own sockets, `struct` framing),
same task, same server (bench/rust/echo_server.rs on the other CPU), 64-byte bodies; and the
p50 Locust reports against the server's true delay.

(1) 50 users, no wait, an echo server that answers at once: requests/s (aim >= 2x);
(2) 50 users against the same server answering 5 ms late: Locust's p50 against 5 ms.

Figures are taken as bench/_harness.py says (Locust pinned to one CPU, the server on the
other). Run: python bench/bench_locust.py [--quick]
"""

from __future__ import annotations

import csv
import os
import pathlib
import subprocess
import sys
import tempfile

from _harness import Bench, start_peer
from bench_swarm import EXAMPLES, build_rust

HERE = pathlib.Path(__file__).resolve().parent


def _delayed_echo_server(port_q, delay_ms: int) -> None:
    proc = subprocess.Popen(
        [str(EXAMPLES / "bench_echo_server"), "0", "1", str(delay_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    port_q.put(int(proc.stdout.readline().split()[-1]))
    proc.wait()


def run_locust(user: str, port: int, seconds: float, users: int = 50) -> dict[str, float]:
    """One headless Locust process; the aggregated figures of its stats CSV."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BENCH_HOST": "127.0.0.1", "BENCH_PORT": str(port)}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(HERE / "_locust_users.py"),
                user,
                "--headless",
                "-u",
                str(users),
                "-r",
                str(users),
                "-t",
                f"{round(seconds)}s",
                "--csv",
                f"{tmp}/run",
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            env=env,
            capture_output=True,
            check=False,  # Locust exits 1 when any request failed: checked below
            text=True,
        )
        if not os.path.exists(f"{tmp}/run_stats.csv"):
            raise RuntimeError(f"locust failed:\n{done.stdout}\n{done.stderr}")
        with open(f"{tmp}/run_stats.csv") as f:
            rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    assert int(total["Failure Count"]) == 0, total
    return {
        "rps": float(total["Requests/s"]),
        "p50": float(total["50%"]),
        "median": float(total["Median Response Time"]),
    }


def main() -> None:
    bench = Bench("bench_locust", __doc__.splitlines()[0], pin="split")
    build_rust()
    seconds = 2.0 if bench.quick else 8.0
    procs = []
    try:
        proc, fast = start_peer(_delayed_echo_server, 0)
        procs.append(proc)
        proc, slow = start_peer(_delayed_echo_server, 5)
        procs.append(proc)
        bench.compare(
            f"(1) one Locust worker, 50 users, no wait, {seconds:g} s a round",
            {"SockwireUser": lambda: 1 / run_locust("SockwireEcho", fast, seconds)["rps"]},
            {"gevent sockets User": lambda: 1 / run_locust("GeventEcho", fast, seconds)["rps"]},
            work=1,
            unit="requests/s",
            target=2.0,
        )
        print("  (2) Locust's p50 against a server answering 5 ms late (50 users)")
        for name, user in [("SockwireUser", "SockwireEcho"), ("gevent sockets User", "GeventEcho")]:
            figures = run_locust(user, slow, seconds)
            print(
                f"    {name:20s} p50 {figures['p50']:.0f} ms (median {figures['median']:.1f} ms)"
                f", {figures['rps']:,.0f} requests/s; the server's delay: 5 ms"
            )
    finally:
        for proc in procs:
            proc.kill()
        subprocess.run(["pkill", "-f", "bench_echo_server"], check=False)
    bench.finish()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
