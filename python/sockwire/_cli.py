"""The ``bench`` and ``echo-server`` commands of ``python -m sockwire``: a load test from a
terminal, and a server to try it on."""

from __future__ import annotations

import argparse
import sys
import textwrap

BENCH_EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m sockwire echo-server 9000                      # in one terminal
      python -m sockwire bench 127.0.0.1:9000 --clients 100 --duration 10
      python -m sockwire bench 127.0.0.1:9000 --rate 20000 --duration 30 --plot run.png
      python -m sockwire bench game.example:7000 --format '!IHB' --fields length,msg_id,flags \\
          --msg-id 3 --expect any --requests 100000 --json run.json
      python -m sockwire bench example.com:9443 --tls --ca ca.pem --server-name example.com

    The live line (stderr) shows elapsed time, connections open, replies in the last second,
    their p99, and errors; the final table goes to stdout. Ctrl-C ends the run and prints the
    partial report. Exit status: 0, or 1 when any request failed.
    """
)

ECHO_EXAMPLES = textwrap.dedent(
    """\
    examples:
      python -m sockwire echo-server 9000                 # 127.0.0.1:9000, PacketFormat()
      python -m sockwire echo-server 0.0.0.0:0            # every interface, any free port
      python -m sockwire echo-server 9000 --format '!IH' --fields length,msg_id

    It prints "listening on HOST:PORT" (the port bound, so 0 works) and echoes every packet
    back with its header; Ctrl-C stops it cleanly.
    """
)


def host_port(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too), or ``PORT`` when ``default_host`` is given."""
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_host is None:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
        host, port = default_host, text
    host = host.strip("[]") or (default_host or "")
    if not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the port must be a number, not {port!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"the port must be 0-65535, not {number}")
    return host, number


def _format(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import sockwire

    if args.format is None:
        if args.fields:
            raise SystemExit("--fields goes with --format")
        return sockwire.PacketFormat()
    fields = tuple(f.strip() for f in args.fields.split(",")) if args.fields else None
    try:
        return sockwire.PacketFormat(args.format, fields)
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"--format {args.format!r}: {exc}") from None


def _add_format_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        metavar="STRUCT",
        help="the header as a struct format, e.g. '!IH' (default: PacketFormat(), a '!I' length)",
    )
    parser.add_argument(
        "--fields",
        metavar="a,b,..",
        help="the header fields' names, e.g. length,msg_id (default: length, then field1...)",
    )


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser(
        "bench",
        help="load a server with many clients and report throughput and latency",
        description="Load HOST:PORT with many clients (sockwire.swarm) and report throughput "
        "and latency percentiles.",
        epilog=BENCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("target", type=host_port, metavar="HOST:PORT")
    bench.add_argument("--clients", type=int, default=100, metavar="N", help="default 100")
    bound = bench.add_mutually_exclusive_group()
    bound.add_argument("--duration", type=float, metavar="S", help="seconds (default 10)")
    bound.add_argument("--requests", type=int, metavar="N", help="requests in all")
    bench.add_argument(
        "--in-flight", type=int, default=1, metavar="N", help="per client (default 1)"
    )
    bench.add_argument(
        "--rate", type=float, metavar="R", help="requests/s over all clients (open loop)"
    )
    bench.add_argument("--ramp-up", type=float, default=0.0, metavar="S", help="default 0")
    _add_format_options(bench)
    bench.add_argument("--msg-id", type=int, default=0, metavar="N", help="default 0")
    bench.add_argument("--body-size", type=int, default=64, metavar="N", help="default 64")
    bench.add_argument("--expect", choices=["any", "echo"], default="any", help="default any")
    bench.add_argument("--timeout", type=float, default=5.0, metavar="S", help="default 5")
    bench.add_argument("--threads", type=int, metavar="N", help="default: one per CPU")
    bench.add_argument("--tls", action="store_true", help="speak TLS")
    bench.add_argument("--ca", metavar="FILE", help="trusted CAs, PEM (default: the system's)")
    bench.add_argument("--server-name", metavar="NAME", help="the name the certificate has")
    bench.add_argument("--insecure", action="store_true", help="verify no certificate")
    bench.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    bench.add_argument("--plot", metavar="FILE", help="also draw the report (PNG; matplotlib)")
    bench.add_argument("--quiet", action="store_true", help="no live progress line")
    bench.set_defaults(func=bench_command)

    echo = commands.add_parser(
        "echo-server",
        help="serve framed echo on a Gateway (a server to try bench on)",
        description="A Gateway that echoes every packet back with its header.",
        epilog=ECHO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    echo.add_argument(
        "listen",
        type=lambda t: host_port(t, default_host="127.0.0.1"),
        metavar="[HOST:]PORT",
    )
    _add_format_options(echo)
    echo.add_argument("--max-clients", type=int, default=10000, metavar="N")
    echo.set_defaults(func=echo_server_command)


def bench_command(args: argparse.Namespace) -> int:
    import sockwire

    tls = None
    if args.tls or args.ca or args.server_name or args.insecure:
        tls = sockwire.TlsConfig.client(
            args.ca, server_name=args.server_name, insecure=args.insecure
        )
    duration = args.duration if args.requests is None and args.duration else None
    if args.requests is None and duration is None:
        duration = 10.0
    try:
        report = sockwire.swarm(
            args.target,
            format=_format(args),
            clients=args.clients,
            duration=duration,
            requests=args.requests,
            in_flight=args.in_flight,
            rate=args.rate,
            ramp_up=args.ramp_up,
            msg_id=args.msg_id,
            body=b"x" * args.body_size,
            expect=args.expect,
            timeout=args.timeout,
            tls=tls,
            threads=args.threads,
            progress=not args.quiet,
        )
    except (ValueError, TypeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(f"sockwire bench {args.target[0]}:{args.target[1]}: {args.clients} clients")
    print(report)
    if args.json:
        report.to_json(args.json)
    if args.plot:
        report.plot(args.plot)
        print(f"plot: {args.plot}")
    return 1 if report.errors else 0


def echo_server_command(args: argparse.Namespace) -> int:
    import sockwire

    gw = sockwire.Gateway(args.listen, _format(args), max_clients=args.max_clients)

    @gw.route()
    def echo(client: sockwire.ClientInfo, packet: sockwire.Packet) -> sockwire.Packet:
        return packet

    gw.start()
    host, port = gw.address[:2]
    try:
        # Inside the try: a Ctrl-C sent as soon as this line is read can land before the next
        # statement runs (the tests do that; one run in about 50 exited with a traceback).
        print(f"listening on {host}:{port}", flush=True)
        gw.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0
