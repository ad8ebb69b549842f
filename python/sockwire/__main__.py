"""The ``sockwire`` command line: ``python -m sockwire <command>``."""

from __future__ import annotations

import argparse
import sys


def _demo(_args: argparse.Namespace) -> int:
    from sockwire import demo

    return demo.main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sockwire",
        description="sockwire: TCP network programming for Python with a Rust core.",
    )
    commands = parser.add_subparsers(title="commands", metavar="<command>")
    demo = commands.add_parser("demo", help="run the seed recipe end to end on loopback")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
