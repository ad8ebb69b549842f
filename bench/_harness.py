"""How every benchmark in bench/ measures: one rule, one output format, one set of options.

The rule, for every figure the benchmarks print:

* **Interleaved rounds.** A round runs every contender once (sockwire and its baselines, same
  work each), and the order flips from one round to the next. Drift on the machine (a build
  starting, the CPU clock changing) then falls on every side alike instead of on whichever
  side happened to run last.
* **Median of N rounds** (N = 5 unless ``--rounds N``; 1 with ``--quick``) is the reported
  figure, for every workload, and the ratio is taken between two medians. Not the best
  round: best-of-N estimates the run with the least interference, which is a fair idea for a
  pure CPU loop on an idle machine, but (1) four of the nine workloads here are loopback
  round trips and bulk transfers where wake-ups and scheduling *are* the cost, so the
  fastest round is a lucky one that does not come back; (2) on a shared virtual machine a
  single quiet moment for one side and not the other moves a best-of ratio, while the median
  of interleaved rounds needs most rounds to move; (3) one rule keeps figures comparable
  across benchmarks (before this module, bench_packets and bench_codecs reported best of 5
  for CPU loops and median of 5 for loopback work). The price is that a CPU loop's median is
  a little slower than its best. The spread printed next to each figure ((max - min) /
  median over the rounds) says how far to trust it.
* **Pinning.** The measuring process and the peer process (the other end of a loopback
  connection) are pinned: without pinning, rounds of the same workload varied between 0.2x
  and 3.4x of each other on the 2-core CI machine. By default both run on the same CPU: on
  this virtual machine a wake-up across CPUs costs so much that loopback round trips ran
  10x slower with the ends on separate CPUs (7-10k round trips/s, rounds 33-47% apart,
  against ~90k and 4% on one CPU), and that cost, the same for every implementation, drowned
  the difference being measured. On one CPU the figure is the two ends' combined CPU cost
  per operation. ``--pin split`` puts them on separate CPUs (the peer's CPU is chosen by the
  parent before it pins itself: a child spawned after that inherits the parent's one-CPU
  mask); ``--pin off`` leaves scheduling to the kernel.
* **Ratio line.** ``sockwire is X.XXx (target Yx: met)`` or ``... NOT met)``, where X is the
  baseline's median time over sockwire's for the same work (above 1: sockwire is faster).

Options, the same for every benchmark: ``--rounds N``, ``--quick`` (small workloads and one
round, a smoke run), ``--json FILE`` (every round's time, the medians and the ratios) and
``--pin same|split|off`` (measuring process and peer on one CPU, the default; on separate
CPUs; not pinned).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import sockwire

DEFAULT_ROUNDS = 5

# Taken at import, in the measuring process, before it pins itself.
_CPUS = sorted(os.sched_getaffinity(0))
# Where the measuring process and the peers go (None: not pinned); Bench sets them from --pin.
_placement: dict[str, int | None] = {"main": None, "peer": None}


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _peer_main(cpu: int | None, target: Callable[..., Any], port_q: Any, args: tuple) -> None:
    _pin(cpu)
    target(port_q, *args)


def start_peer(target: Callable[..., Any], *args: Any) -> tuple[mp.process.BaseProcess, Any]:
    """Runs ``target(port_q, *args)`` in a spawned child process pinned to the peer CPU, and
    returns (the process, the first value the child puts on ``port_q``: its port).
    ``target`` must be a module-level function (it is pickled by name)."""
    ctx = mp.get_context("spawn")
    port_q = ctx.Queue()
    peer_cpu = _placement["peer"]
    proc = ctx.Process(target=_peer_main, args=(peer_cpu, target, port_q, args), daemon=True)
    proc.start()
    return proc, port_q.get(timeout=30)


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """A contender that runs ``fn`` once and returns the seconds it took."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


class Bench:
    """One benchmark run: parses the common options, pins this process, prints the header,
    runs and prints comparisons, and writes ``--json`` at the end."""

    def __init__(self, name: str, description: str, pin: str = "same") -> None:
        ap = argparse.ArgumentParser(description=description)
        ap.add_argument(
            "--rounds",
            type=int,
            default=None,
            metavar="N",
            help=f"interleaved rounds per workload; the median is reported "
            f"(default {DEFAULT_ROUNDS}; 1 with --quick)",
        )
        ap.add_argument("--quick", action="store_true", help="small workloads: a smoke run")
        ap.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
        ap.add_argument(
            "--pin",
            choices=["same", "split", "off"],
            default=pin,
            help=f"the measuring process and its peer: both on one CPU, on separate CPUs, or "
            f"not pinned (default: {pin})",
        )
        args = ap.parse_args()
        self.name = name
        self.quick: bool = args.quick
        self.rounds: int = args.rounds or (1 if args.quick else DEFAULT_ROUNDS)
        if args.rounds is not None and args.rounds < 1:
            ap.error("--rounds must be at least 1")
        self.json_path: str | None = args.json
        self.results: list[dict[str, Any]] = []
        self.pin: str = args.pin
        if args.pin == "off" or len(_CPUS) < 2:
            pinning = "not pinned" + (" (fewer than two CPUs)" if len(_CPUS) < 2 else "")
        elif args.pin == "same":
            _placement.update(main=_CPUS[0], peer=_CPUS[0])
            pinning = f"measuring process and peer both on CPU {_CPUS[0]}"
        else:
            _placement.update(main=_CPUS[0], peer=_CPUS[1])
            pinning = f"measuring on CPU {_CPUS[0]}, peer on CPU {_CPUS[1]}"
        _pin(_placement["main"])
        print(
            f"sockwire {sockwire.__version__} {name}: median of {self.rounds} interleaved "
            f"round{'s' if self.rounds > 1 else ''}; {pinning}"
        )

    def compare(
        self,
        title: str,
        ours: dict[str, Callable[[], float]],
        theirs: dict[str, Callable[[], float]],
        *,
        work: float,
        unit: str,
        target: float,
        per_op: bool = False,
    ) -> dict[str, float]:
        """Runs the contenders (each returns the seconds its share of work took) in
        interleaved rounds and prints each one's median figure, then one ratio line per
        (ours, theirs) pair. ``work`` is what one run does, in ``unit``'s terms: figures
        are ``work / seconds`` in ``unit`` or, with ``per_op``, microseconds per unit of
        work. Returns the ratios, keyed "ours vs theirs"."""
        labels = [*ours, *theirs]
        contenders = {**ours, **theirs}
        assert len(contenders) == len(labels), "a label is used twice"
        times: dict[str, list[float]] = {label: [] for label in labels}
        for i in range(self.rounds):
            for label in labels if i % 2 == 0 else reversed(labels):
                times[label].append(contenders[label]())
        median = {label: statistics.median(t) for label, t in times.items()}

        def figure(seconds: float) -> float:
            return seconds / work * 1e6 if per_op else work / seconds

        print(f"  {title}")
        width = max(len(label) for label in labels)
        for label in labels:
            value = figure(median[label])
            shown = f"{value:14.2f}" if per_op else f"{value:14,.0f}"
            line = f"    {label:{width}s} {shown} {unit}"
            if self.rounds > 1:
                spread = (max(times[label]) - min(times[label])) / median[label]
                line += f"   (spread {spread:.0%})"
            print(line)
        ratios = {}
        for mine in ours:
            for other in theirs:
                ratio = median[other] / median[mine]
                verdict = "met" if ratio >= target else "NOT met"
                prefix = f"{mine} vs {other}" if len(ours) > 1 else f"vs {other}"
                print(f"    {prefix}: sockwire is {ratio:.2f}x (target {target:g}x: {verdict})")
                ratios[f"{mine} vs {other}"] = ratio
        self.results.append(
            {
                "title": title,
                "unit": unit,
                "work": work,
                "per_op": per_op,
                "target": target,
                "seconds": times,
                "figures": {label: figure(median[label]) for label in labels},
                "ratios": ratios,
                "met": {pair: r >= target for pair, r in ratios.items()},
            }
        )
        return ratios

    def finish(self) -> None:
        """Writes the ``--json`` file, if one was asked for."""
        if self.json_path is None:
            return
        report = {
            "benchmark": self.name,
            "sockwire": sockwire.__version__,
            "rule": f"median of {self.rounds} interleaved rounds",
            "rounds": self.rounds,
            "quick": self.quick,
            "pin": self.pin,
            "cpus": {"measuring": _placement["main"], "peer": _placement["peer"]},
            "results": self.results,
        }
        with open(self.json_path, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
