#!/usr/bin/env python3
"""Print io_uring against epoll (issue 16) as a Markdown table.

Reads the median point estimates criterion wrote for one run of

    cargo bench -p tulip-benches --bench selectors -- 'epoll|io_uring|mio'
    cargo bench -p tulip-benches --bench churn

from `<CRITERION_DIR>/<group>/<function>/[<N>/]new/estimates.json`.

Usage: python3 docs/io_uring_ratios.py [CRITERION_DIR]   (default: target/criterion)

Each row compares tulip's io_uring backend with tulip's epoll backend on the
same workload in the same run: a time ratio (below 1: io_uring is faster)
or, for round trips and connections, a rate ratio (above 1: io_uring does
more per second). raw epoll and mio are shown for scale. Python 3 standard
library only.
"""

import json
import os
import sys


def median_ns(root, group, function, n=None):
    """The median time per iteration in ns, or None if the bench did not run."""
    parts = [root, group, function] + ([str(n)] if n is not None else []) + ["new", "estimates.json"]
    try:
        with open(os.path.join(*parts)) as f:
            return json.load(f)["median"]["point_estimate"]
    except FileNotFoundError:
        return None


def fmt_ns(ns, per=1):
    if ns is None:
        return "—"
    ns /= per
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
    rows = []

    def row(what, group, n=None, per=1, rate=False, goal=None):
        uring = median_ns(root, group, "tulip-io_uring", n)
        epoll = median_ns(root, group, "tulip-epoll", n)
        if uring is None or epoll is None:
            return
        raw, mio = median_ns(root, group, "raw-epoll", n), median_ns(root, group, "mio", n)
        ratio = epoll / uring if rate else uring / epoll
        label = f"{ratio:.2f}× {'rate' if rate else 'time'}"
        wins = ratio > 1 if rate else ratio < 1
        verdict = "io_uring" if wins else "epoll"
        if goal is not None:
            met = goal(ratio)
            verdict += f" (goal {'met' if met else 'missed'})"
        rows.append((what, fmt_ns(uring, per), fmt_ns(epoll, per), fmt_ns(raw, per), fmt_ns(mio, per), label, verdict))

    row("register + unregister, one fd", "register_unregister", goal=lambda r: r <= 0.3)
    row("2 × modify READ↔WRITE, one fd", "modify")
    for n in (1, 10, 100, 1000, 10000):
        row(f"write 1 byte + select + read, 1 of N = {n:,} ready", "ready_1_of_n", n)
    for n in (1, 1000):
        row(f"select with a zero timeout, nothing ready, N = {n:,}", "idle_zero_timeout", n)
    row("ping-pong round trip (two selects)", "ping_pong", rate=True)
    row("accept-serve-close, per connection, on the loop", "accept_serve_close", 64, per=64, rate=True,
        goal=lambda r: r > 1)

    print("| workload | io_uring | epoll | raw epoll | mio | io_uring vs epoll | ahead |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for what, uring, epoll, raw, mio, ratio, verdict in rows:
        print(f"| {what} | {uring} | {epoll} | {raw} | {mio} | {ratio} | {verdict} |")
    if not rows:
        print(f"(no results under {root}: run the two benches first)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
