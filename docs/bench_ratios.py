#!/usr/bin/env python3
"""Print the speed-target ratios of the selectors bench as a Markdown table.

Reads the median point estimates criterion wrote for a run of
`cargo bench -p tulip-benches --bench selectors` from
`<CRITERION_DIR>/<group>/<function>/[<N>/]new/estimates.json`.

Usage: python3 docs/bench_ratios.py [CRITERION_DIR ...]   (default: target/criterion)

With several directories (copies of target/criterion after separate runs),
each ratio is computed within each run (tulip and the raw syscall measured
minutes apart at most) and the table shows the median of those ratios and
their range. Python 3 standard library only.
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


def fmt_ns(ns):
    return "—" if ns is None else (f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns")


def rows(root):
    """(what, tulip ns, floor ns, ratio, target text, met) for every target."""
    out = []

    def time_ratio(what, group, backend, floor, n, limit):
        t, f = median_ns(root, group, backend, n), median_ns(root, group, floor, n)
        if t is None or f is None:
            return
        ratio = t / f
        out.append((what, t, f, f"{ratio:.3f}×", f"≤ {limit:.2f}×", ratio <= limit))

    for n in (1, 10, 100, 1000, 10000):
        time_ratio(f"1-of-N ready loop, epoll, N = {n:,}", "ready_1_of_n", "tulip-epoll", "raw-epoll", n, 1.03)
    for n in (1, 1000):
        time_ratio(f"zero-timeout idle select, epoll, N = {n:,}", "idle_zero_timeout", "tulip-epoll", "raw-epoll", n, 1.10)
    for backend in ("poll", "select"):
        time_ratio(f"1-of-N ready loop, {backend}, N = 1,000", "ready_1_of_n", f"tulip-{backend}", f"raw-{backend}", 1000, 1.05)
    time_ratio("register + unregister, epoll", "register_unregister", "tulip-epoll", "raw-epoll", None, 1.05)
    time_ratio("modify READ↔WRITE, epoll", "modify", "tulip-epoll", "raw-epoll", None, 1.05)
    for backend in ("epoll", "poll", "select"):
        t, f = median_ns(root, "ping_pong", f"tulip-{backend}", None), median_ns(root, "ping_pong", f"raw-{backend}", None)
        if t is None or f is None:
            continue
        rate = f / t  # tulip's round trips per second over the raw syscall's
        out.append((f"ping-pong round trip, {backend} (rate)", t, f, f"{rate:.3f}×", "≥ 0.97×", rate >= 0.97))
    return out


def main():
    roots = sys.argv[1:] or [os.path.join("target", "criterion")]
    runs = [rows(root) for root in roots]
    by_target = {}
    for run in runs:
        for what, t, f, ratio, target, met in run:
            by_target.setdefault(what, []).append((t, f, float(ratio.rstrip("×")), target))

    if len(roots) == 1:
        print("| target | tulip (median) | raw syscall (median) | ratio | target | met |")
        print("| --- | ---: | ---: | ---: | ---: | :---: |")
    else:
        print(f"| target | ratio, median of {len(roots)} runs | range | target | met |")
        print("| --- | ---: | ---: | ---: | :---: |")
    for what, values in by_target.items():
        ratios = sorted(r for _, _, r, _ in values)
        middle = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1 : len(ratios) // 2 + 1]) / 2
        target = values[0][3]
        limit = float(target.split()[1].rstrip("×"))
        met = middle >= limit if target.startswith("≥") else middle <= limit
        if len(roots) == 1:
            t, f = values[0][0], values[0][1]
            print(f"| {what} | {fmt_ns(t)} | {fmt_ns(f)} | {middle:.3f}× | {target} | {'yes' if met else '**no**'} |")
        else:
            print(f"| {what} | {middle:.3f}× | {ratios[0]:.3f}–{ratios[-1]:.3f} | {target} | {'yes' if met else '**no**'} |")

    root = roots[-1]
    print()
    print(f"Peers against the same raw syscall ({root}, informational):")
    print()
    print("| bench | mio / raw-epoll | polling / raw-epoll | tulip-epoll / raw-epoll |")
    print("| --- | ---: | ---: | ---: |")
    cases = [("ready_1_of_n", n) for n in (1, 10, 100, 1000, 10000)] + [("idle_zero_timeout", n) for n in (1, 1000)]
    cases += [("register_unregister", None), ("modify", None), ("ping_pong", None)]
    for group, n in cases:
        f = median_ns(root, group, "raw-epoll", n)
        cells = []
        for peer in ("mio", "polling", "tulip-epoll"):
            p = median_ns(root, group, peer, n)
            cells.append("—" if p is None or f is None else f"{p / f:.3f}×")
        label = group if n is None else f"{group}, N = {n:,}"
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
