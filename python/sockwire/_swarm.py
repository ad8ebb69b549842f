"""`sockwire.swarm`: load from a test script, and its `Report`.

The clients run on Rust threads (a runtime of the swarm's own) with the GIL released; this
module only checks the arguments, waits for the run in slices short enough for Ctrl-C and the
progress display, and turns the driver's figures into a `Report`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

from sockwire._core import Packet, PacketFormat, TlsConfig, _Swarm

__all__ = ["Report", "swarm"]

ERROR_REASONS = ("timeout", "mismatch", "closed", "connect", "protocol error")

Expect = str | Callable[[bytes, Packet], object]
Progress = bool | Callable[[dict[str, Any]], object]


class Report:
    """What a swarm did. Latencies are in seconds, from an HDR histogram (3 significant
    digits); with ``rate`` they count from each request's intended send time.

    ``connected`` (connections made, reconnections included), ``failed_connects``, ``sent``,
    ``received``, ``pushed`` (packets that matched no request, with ``correlate``), ``errors``
    (reason -> count: ``"timeout"``, ``"mismatch"``, ``"closed"``, ``"connect"``, ``"protocol
    error"``), ``duration`` (seconds), ``throughput`` (replies per second), ``latency``
    (``p50 p90 p99 p999 max mean``), ``timeline`` (one dict per second: ``t sent received
    errors p99``; also ``p50``), ``interrupted`` (stopped by Ctrl-C or cancellation before its
    end)."""

    __slots__ = (
        "_histogram",
        "connected",
        "duration",
        "errors",
        "failed_connects",
        "interrupted",
        "latency",
        "pushed",
        "received",
        "sent",
        "throughput",
        "timeline",
    )
    connected: int
    failed_connects: int
    sent: int
    received: int
    pushed: int
    errors: dict[str, int]
    duration: float
    throughput: float
    latency: dict[str, float]
    timeline: list[dict[str, float]]
    interrupted: bool
    _histogram: list[tuple[float, int]]

    def __init__(self, figures: Mapping[str, Any]) -> None:
        for name in self.__slots__:
            if name != "_histogram":
                setattr(self, name, figures[name])
        self._histogram = list(figures.get("histogram", ()))

    def to_dict(self) -> dict[str, Any]:
        """Every field, as plain Python values (what ``to_json`` writes)."""
        return {name: getattr(self, name) for name in sorted(self.__slots__) if name[0] != "_"} | {
            "errors": dict(self.errors),
            "latency": dict(self.latency),
        }

    def to_json(self, path: str | None = None) -> str:
        """The report as JSON; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    def plot(self, path: str) -> None:
        """A PNG at ``path``: latency percentiles over time, throughput over time, and the
        latency histogram. Needs matplotlib (``pip install sockwire[plot]``)."""
        from sockwire._plot import plot_report

        plot_report(self, self._histogram, path)

    def __str__(self) -> str:
        def n(value: float) -> str:
            return f"{value:,.0f}"

        errors = ", ".join(f"{reason} {count:,}" for reason, count in self.errors.items())
        lat = self.latency
        rows = [
            (
                "duration",
                f"{self.duration:.2f} s" + ("  (interrupted)" if self.interrupted else ""),
            ),
            ("connected", f"{n(self.connected)} (failed {n(self.failed_connects)})"),
            ("sent", n(self.sent)),
            ("received", f"{n(self.received)}  ({n(self.throughput)}/s)"),
            ("pushed", n(self.pushed)),
            ("errors", f"{n(sum(self.errors.values()))}  ({errors})" if errors else "0"),
            (
                "latency",
                "  ".join(
                    f"{name} {format_seconds(lat[key])}"
                    for name, key in [
                        ("p50", "p50"),
                        ("p90", "p90"),
                        ("p99", "p99"),
                        ("p99.9", "p999"),
                        ("max", "max"),
                        ("mean", "mean"),
                    ]
                ),
            ),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def __repr__(self) -> str:
        return (
            f"<Report sent={self.sent} received={self.received} "
            f"errors={sum(self.errors.values())} p99={format_seconds(self.latency['p99'])}>"
        )


def format_seconds(seconds: float) -> str:
    """A latency as a person reads it: 412 µs, 3.81 ms, 1.20 s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    return value


def _seconds(value: object, name: str, *, zero: bool = True) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0 or (not zero and seconds == 0) or math.isinf(seconds):
        raise ValueError(f"{name} must be a number of seconds {'>=' if zero else '>'} 0")
    return seconds


def _bodies(body: bytes | Sequence[bytes]) -> list[bytes]:
    if isinstance(body, (bytes, bytearray, memoryview)):
        return [bytes(body)]
    bodies = [bytes(b) for b in body]
    if not bodies:
        raise ValueError("body: give bytes, or a non-empty list of bytes")
    return bodies


def start_swarm(
    addr: tuple[str, int],
    *,
    format: PacketFormat | None = None,
    clients: int = 100,
    duration: float | None = None,
    requests: int | None = None,
    in_flight: int = 1,
    rate: float | None = None,
    ramp_up: float = 0.0,
    msg_id: int = 0,
    body: bytes | Sequence[bytes] = b"x" * 64,
    fields: Mapping[str, Any] | None = None,
    hello: Iterable[tuple[int, bytes]] = (),
    expect: Expect = "any",
    correlate: str | None = None,
    timeout: float = 5.0,
    connect_timeout: float = 5.0,
    tls: TlsConfig | None = None,
    threads: int | None = None,
) -> _Swarm:
    """Checks the arguments as DESIGN section 6 gives them and starts the run (``swarm`` and
    ``aio.swarm`` wait for it each their way)."""
    if (duration is None) == (requests is None):
        raise ValueError("give exactly one of duration (seconds) and requests (a total)")
    return _Swarm(
        addr,
        format,
        clients=_positive_int(clients, "clients"),
        in_flight=_positive_int(in_flight, "in_flight"),
        requests=None if requests is None else _positive_int(requests, "requests"),
        duration=None if duration is None else _seconds(duration, "duration", zero=False),
        rate=None if rate is None else _seconds(rate, "rate", zero=False),
        ramp_up=_seconds(ramp_up, "ramp_up"),
        msg_id=msg_id,
        bodies=_bodies(body),
        fields=dict(fields) if fields else None,
        hello=[(int(m), bytes(b)) for m, b in hello],
        expect=expect,
        correlate=correlate,
        timeout=_seconds(timeout, "timeout", zero=False),
        connect_timeout=_seconds(connect_timeout, "connect_timeout", zero=False),
        tls=tls,
        threads=None if threads is None else _positive_int(threads, "threads"),
    )


class _Display:
    """The live progress line on stderr: redrawn in place on a terminal, a line per second
    otherwise; or a callable given each second's snapshot."""

    def __init__(self, progress: Progress, stream: IO[str] | None = None) -> None:
        self.callback = progress if callable(progress) else None
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.callback is None and self.stream.isatty()
        self.drawn = False

    def show(self, snapshot: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback(snapshot)
            return
        line = (
            f"{snapshot['elapsed']:6.1f} s  connected {snapshot['connected']:,}  "
            f"{snapshot['rate']:,} req/s  p99 {format_seconds(snapshot['p99'])}  "
            f"errors {snapshot['errors']:,}"
        )
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self.drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def _run(core: _Swarm, progress: Progress) -> Report:
    """Waits for the run in short slices (Ctrl-C ends it within one), showing progress each
    second; returns the report, partial and ``interrupted`` after Ctrl-C."""
    display = _Display(progress) if progress else None
    started = time.monotonic()
    next_show = 1.0
    try:
        while not core.wait(0.1):
            if display is not None and time.monotonic() - started >= next_show:
                display.show(core.snapshot())
                next_show += 1.0
    except KeyboardInterrupt:
        pass  # the report says interrupted=True
    finally:
        core.stop()
        if display is not None:
            display.close()
    return Report(core.finish())


def swarm(
    addr: tuple[str, int],
    *,
    format: PacketFormat | None = None,
    clients: int = 100,
    duration: float | None = None,
    requests: int | None = None,
    in_flight: int = 1,
    rate: float | None = None,
    ramp_up: float = 0.0,
    msg_id: int = 0,
    body: bytes | Sequence[bytes] = b"x" * 64,
    fields: Mapping[str, Any] | None = None,
    hello: Iterable[tuple[int, bytes]] = (),
    expect: Expect = "any",
    correlate: str | None = None,
    timeout: float = 5.0,
    connect_timeout: float = 5.0,
    tls: TlsConfig | None = None,
    threads: int | None = None,
    progress: Progress = False,
) -> Report:
    """Load ``addr`` with ``clients`` connections for ``duration`` seconds or ``requests``
    requests in all (exactly one of the two), and return a :class:`Report`.

    Closed loop by default (each client keeps ``in_flight`` requests outstanding); ``rate``
    (requests per second over all clients) makes it open loop, latency counting from each
    request's intended send time. ``ramp_up`` spreads the clients' starts over that many
    seconds. Requests carry ``body`` (or each body of a list, in turn), ``msg_id`` and the
    header ``fields``; ``hello`` are ``(msg_id, body)`` pairs each client sends once after it
    connects, awaiting each reply (a login). ``expect``: ``"any"`` packet is the reply,
    ``"echo"`` (its body must equal the request's), or a callable ``(request_body, reply) ->
    bool`` (called in batches, one GIL acquisition each). ``correlate`` names a header field
    the swarm numbers requests in, matching replies by it in any order (packets that match
    none are ``pushed``); without it a request that times out closes its connection and the
    client reconnects. ``threads``: the swarm's runtime threads (default: one per CPU).
    ``progress=True`` shows a live line on stderr; a callable gets each second's snapshot.

    Runs on Rust threads with the GIL released. Ctrl-C ends the run within a second, every
    connection closed, and returns the partial report (``interrupted=True``)."""
    core = start_swarm(
        addr,
        format=format,
        clients=clients,
        duration=duration,
        requests=requests,
        in_flight=in_flight,
        rate=rate,
        ramp_up=ramp_up,
        msg_id=msg_id,
        body=body,
        fields=fields,
        hello=hello,
        expect=expect,
        correlate=correlate,
        timeout=timeout,
        connect_timeout=connect_timeout,
        tls=tls,
        threads=threads,
    )
    return _run(core, progress)
