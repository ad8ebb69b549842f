"""The ``sockwire`` command line: ``sockwire <command>`` or ``python -m sockwire <command>``.

``sockwire --version`` prints the version; ``sockwire demo`` runs the seed recipe on loopback;
``sockwire bench HOST:PORT`` loads a server, ``sockwire echo-server PORT`` serves one to load.
"""

from __future__ import annotations

import argparse
import os
import select
import sys

from sockwire import __version__

MODULE_PROG = "python -m sockwire"
SCRIPT_PROG = "sockwire"


def program_name(argv0: str) -> str:
    """The program as it was invoked, for usage and error lines.

    ``python -m sockwire`` sets ``sys.argv[0]`` to the path of this file (``.../__main__.py``);
    the console script sets it to the script's path (``.../bin/sockwire``). Anything else
    (``-c``, an empty string in an embedded interpreter) names the installed command.
    """
    name = os.path.basename(argv0)
    if name == "__main__.py":
        return MODULE_PROG
    name = name.removesuffix(".exe")
    if not name or name.startswith("-"):
        return SCRIPT_PROG
    return name


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe (or socket) whose reader has gone: poll() reports POLLERR
    (a pipe) or POLLHUP (a socket) on it. Assumed where poll() is missing, as the signal
    module's recipe assumes it everywhere."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # no stdout file (None, or an in-memory stream): not what broke
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are reported without being asked for
    return any(mask & (select.POLLERR | select.POLLHUP) for _fd, mask in poller.poll(0))


def _demo(_args: argparse.Namespace) -> int:
    from sockwire import demo

    return demo.main()


def build_parser(prog: str = SCRIPT_PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="sockwire: TCP network programming for Python with a Rust core.",
    )
    parser.add_argument("--version", action="version", version=f"sockwire {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="<command>")
    demo = commands.add_parser("demo", help="run the seed recipe end to end on loopback")
    demo.set_defaults(func=_demo)
    from sockwire._cli import add_commands

    add_commands(commands)
    return parser


def _run(argv: list[str] | None) -> int:
    # The command line names itself as it was invoked; a caller passing argv is Python code,
    # whose sys.argv[0] (pytest, -c, an application) says nothing about this command.
    prog = program_name(sys.argv[0] if sys.argv else "") if argv is None else SCRIPT_PROG
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line (``argv`` defaults to ``sys.argv[1:]``) and returns its status.

    Output into a pipe whose reader has gone (``sockwire demo | head -3``) ends the command
    quietly with status 1, as the ``signal`` module's documentation recommends: no traceback.
    """
    try:
        try:
            return _run(argv)
        finally:
            # Flush here, inside the try, so that output still buffered for a reader that has
            # gone fails now (also after --help or --version, which exit by SystemExit) rather
            # than in the interpreter's final flush, which would print "Exception ignored".
            if sys.stdout is not None:
                sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # a socket's BrokenPipeError (a peer that closed) is a failure to show
        # Python flushes the standard streams on exit: point stdout at devnull so that the
        # output still buffered goes nowhere instead of failing a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1  # Python exits with status 1 on EPIPE


if __name__ == "__main__":
    sys.exit(main())
