"""`Report.plot`: one PNG a person can read at a glance (matplotlib, the `sockwire[plot]` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sockwire._swarm import Report


def plot_report(report: Report, histogram: list[tuple[float, int]], path: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ImportError("Report.plot needs matplotlib: pip install 'sockwire[plot]'") from None
    matplotlib.use("Agg")  # a file, never a window
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    timeline = report.timeline
    t = [entry["t"] + 1 for entry in timeline]  # the end of each second
    ms = 1e3
    fig, (lat, rate, hist) = plt.subplots(3, 1, figsize=(9, 10), constrained_layout=True)
    title = (
        f"sockwire swarm: {report.received:,} replies in {report.duration:.1f} s "
        f"({report.throughput:,.0f}/s), p99 {report.latency['p99'] * ms:.2f} ms"
    )
    errors = sum(report.errors.values())
    if errors:
        title += f", {errors:,} errors"
    fig.suptitle(title)

    lat.plot(t, [e["p50"] * ms for e in timeline], label="p50", marker=".")
    lat.plot(t, [e["p99"] * ms for e in timeline], label="p99", marker=".")
    lat.set_title("Latency per second")
    lat.set_xlabel("time (s)")
    lat.set_ylabel("latency (ms)")
    lat.set_ylim(bottom=0)
    lat.grid(True, alpha=0.3)
    lat.legend()

    rate.plot(t, [e["received"] for e in timeline], label="replies/s", marker=".")
    rate.plot(t, [e["sent"] for e in timeline], label="requests sent/s", alpha=0.6)
    if errors:
        rate.bar(t, [e["errors"] for e in timeline], color="tab:red", label="errors/s", alpha=0.6)
    rate.set_title("Throughput per second")
    rate.set_xlabel("time (s)")
    rate.set_ylabel("per second")
    peak = max([e["received"] for e in timeline] + [e["sent"] for e in timeline] + [1])
    rate.set_ylim(0, peak * 1.15)
    rate.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    rate.grid(True, alpha=0.3)
    rate.legend()

    _histogram(hist, histogram, report)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _histogram(ax: Any, buckets: list[tuple[float, int]], report: Report) -> None:
    from matplotlib.ticker import FuncFormatter

    ms = 1e3
    ax.set_title("Latency distribution (all replies)")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("replies")
    if not buckets:
        ax.text(0.5, 0.5, "no replies", ha="center", va="center", transform=ax.transAxes)
        return
    import math

    # HDR buckets regrouped on a log scale: 20 bins per decade.
    low = min(v for v, _ in buckets)
    high = max(v for v, _ in buckets)
    start, stop = math.floor(math.log10(low) * 20), math.ceil(math.log10(high) * 20) + 1
    edges = [10 ** (k / 20) for k in range(start, stop + 1)]
    counts = [0] * (len(edges) - 1)
    for value, count in buckets:
        k = min(max(int(math.log10(value) * 20) - start, 0), len(counts) - 1)
        counts[k] += count
    ax.stairs(counts, [e * ms for e in edges], fill=True, alpha=0.7)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    for name, key, color in [("p50", "p50", "tab:green"), ("p99", "p99", "tab:red")]:
        value = report.latency[key] * ms
        ax.axvline(value, color=color, linestyle="--", label=f"{name} {value:.2f} ms")
    ax.legend()
    ax.grid(True, alpha=0.3)
