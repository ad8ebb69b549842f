"""The command line as users run it: ``sockwire`` and ``python -m sockwire``, in subprocesses.

A reader that closes early (``python -m sockwire demo | head -3``) is met with a real pipe
whose read end closes at a chosen point, so the tests do not depend on which process the
scheduler runs first.
"""

import concurrent.futures
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import sockwire

ROOT = pathlib.Path(__file__).resolve().parent.parent


def env(unbuffered):
    """The environment with Python's stdout block-buffered (as in a pipe) or unbuffered."""
    e = dict(os.environ)
    e.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        e["PYTHONUNBUFFERED"] = "1"
    return e


def module(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "sockwire", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        **kwargs,
    )


def script(*args):
    """Runs the ``sockwire`` script pip installed into this interpreter's environment."""
    beside = pathlib.Path(sys.executable).parent / "sockwire"
    path = str(beside) if beside.exists() else shutil.which("sockwire")
    assert path, "the sockwire console script is not installed: pip install -e ."
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60)


VERSION_LINE = f"sockwire {sockwire.__version__}\n"


def test_version_flag_prints_sockwire_and_the_version():
    proc = module("--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, VERSION_LINE, "")


def test_console_script_version_flag_prints_sockwire_and_the_version():
    proc = script("--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, VERSION_LINE, "")


def test_console_script_usage_names_it_sockwire():
    proc = script("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: sockwire [-h]"), proc.stdout
    bad = script("nope")
    assert bad.returncode == 2
    assert bad.stderr.startswith("usage: sockwire [-h]"), bad.stderr
    assert "\nsockwire: error: argument <command>: invalid choice: 'nope'" in bad.stderr


def test_module_usage_names_it_python_dash_m_sockwire():
    proc = module("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m sockwire [-h]"), proc.stdout
    bad = module("nope")
    assert bad.returncode == 2
    assert "\npython -m sockwire: error: argument <command>" in bad.stderr


def test_main_called_with_argv_names_the_installed_command(capsys):
    """``main(argv)`` from Python code names the program ``sockwire``, whatever ran Python."""
    from sockwire.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: sockwire [-h]")


def test_demo_piped_into_head_exits_quietly(tmp_path):
    """The issue's command line; unbuffered, so the demo writes past the third line to a closed
    pipe (block-buffered, its 2 KB often reach the pipe in one write before head exits)."""
    err = tmp_path / "err.txt"
    status = tmp_path / "status.txt"
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'"$0" -m sockwire demo 2>"{err}" | head -3; echo "${{PIPESTATUS[0]}}" >"{status}"',
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env(unbuffered=True),
    )
    assert proc.stdout.startswith("sockwire ") and proc.stdout.count("\n") == 3, proc.stdout
    assert err.read_text() == ""
    assert status.read_text().strip() in {"0", "1"}  # 1 when it met the closed pipe


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", [["demo"], ["--help"], ["--version"]], ids=" ".join)
def test_output_to_a_closed_pipe_exits_quietly_with_status_1(args, unbuffered):
    """stdout is a pipe whose reader is already gone: the first write (or, buffered, the final
    flush) fails with EPIPE; the docs' recipe exits 1 with nothing on stderr. (argparse itself
    ignores a failed write of --help or --version and exits 0: only a buffered one fails.)"""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sockwire", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env(unbuffered),
        )
    finally:
        os.close(write_end)
    status = 0 if unbuffered and args != ["demo"] else 1
    assert (proc.returncode, proc.stderr) == (status, "")


def test_broken_pipe_from_a_socket_is_not_hidden():
    """Only a broken stdout ends quietly: a BrokenPipeError from a socket whose peer closed is
    a failure, and shows as one while stdout is fine."""
    code = (
        "import sys, sockwire.demo, sockwire.__main__ as cli\n"
        "def demo():\n"
        "    print('sending')\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "sockwire.demo.main = demo\n"
        "sys.exit(cli.main(['demo']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert proc.returncode == 1
    assert proc.stdout == "sending\n"
    assert "BrokenPipeError: [Errno 32] Broken pipe" in proc.stderr


# Runs the demo with stdout on a pipe whose reader goes away after argv[1] lines: the read end
# is held by the process itself and closed once that many lines are in the pipe, so every later
# write meets EPIPE, as it would after `head -n N` exits.
READER_LEAVES_AFTER = """
import io, os, sys
from sockwire.__main__ import main

lines_wanted = int(sys.argv[1])
read_end, write_end = os.pipe()
os.dup2(write_end, 1)
os.close(write_end)


class ReaderLeaves(io.TextIOWrapper):
    lines = 0
    reader = True

    def write(self, text):
        if self.lines >= lines_wanted and self.reader:
            os.close(read_end)
            self.reader = False
        n = super().write(text)
        self.lines += text.count("\\n")
        return n


sys.stdout = ReaderLeaves(open(1, "wb", buffering=0, closefd=False), write_through=True)
sys.exit(main(["demo"]))
"""


def test_demo_exits_quietly_whichever_line_the_reader_stops_at():
    """Every point the pipe can break at: no traceback from the main thread or any thread the
    demo started, exit status 1, and no hang (the timeout)."""
    lines = module("demo").stdout.count("\n")
    assert lines > 30

    def run(n):
        return n, subprocess.run(
            [sys.executable, "-c", READER_LEAVES_AFTER, str(n)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run, range(lines)))
    for n, proc in results:
        assert (proc.returncode, proc.stderr) == (1, ""), f"reader left after {n} lines"


def demo_step(n):
    out = module("demo").stdout
    return re.search(rf"^\[{n}\] .*?(?=^\[{n + 1}\] )", out, flags=re.S | re.M).group(0)


def test_demo_socket_options_step_says_which_side_asked_for_what():
    step = demo_step(1)
    client, server = step.split("\n    server = ")
    assert "client = tcp_client_options()" in client, step
    assert server.startswith("tcp_server_options(sndbuf=16384)"), step
    assert re.search(r"SO_SNDBUF +\d+ +not asked for: the system default", client), step
    assert re.search(r"SO_RCVBUF +\d+ +not asked for: the system default", client), step
    assert re.search(r"TCP_NODELAY +1 +on: set by tcp_client_options\(\)", client), step
    assert re.search(r"SO_SNDBUF +32768 +asked for 16384: Linux doubles the request", server)
    assert re.search(r"SO_RCVBUF +\d+ +not asked for: the system default", server), step
    assert re.search(r"SO_REUSEADDR +1 +on: set by tcp_server_options\(\)", server), step
