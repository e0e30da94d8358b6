#!/usr/bin/env python3
"""Draw docs/select_cost.svg: the cost of one "write, select, read" loop with
one ready fd among N registered, against N, for every tulip backend, the raw
syscalls and the peers (mio, polling). Both axes are logarithmic, so O(N)
backends (select, poll) climb a slope while O(ready) ones (epoll) stay flat.

Reads the median point estimate that criterion wrote for the last run of
`cargo bench -p tulip-benches --bench selectors`:
    target/criterion/ready_1_of_n/<function>/<N>/new/estimates.json

Usage: python3 docs/plot_select_cost.py [CRITERION_DIR [OUTPUT_SVG]]
       (defaults: target/criterion, docs/select_cost.svg)

Python 3 standard library only; the SVG is written by hand.
"""

import json
import math
import os
import sys
from xml.sax.saxutils import escape

GROUP = "ready_1_of_n"

# (criterion function name, legend label, colour, dashed?) in legend order.
SERIES = [
    ("tulip-epoll", "tulip EpollSelector", "#1f77b4", False),
    ("raw-epoll", "raw epoll_wait", "#1f77b4", True),
    ("tulip-poll", "tulip PollSelector", "#d62728", False),
    ("raw-poll", "raw poll", "#d62728", True),
    ("tulip-select", "tulip SelectSelector", "#2ca02c", False),
    ("raw-select", "raw select", "#2ca02c", True),
    ("mio", "mio::Poll", "#9467bd", False),
    ("polling", "polling::Poller", "#ff7f0e", False),
]

WIDTH, HEIGHT = 760, 480
LEFT, RIGHT, TOP, BOTTOM = 80, 210, 50, 60  # margins around the plot area


def load(root):
    """{function: [(N, median ns), ...] sorted by N} for every series found."""
    data = {}
    for function, *_ in SERIES:
        directory = os.path.join(root, GROUP, function)
        if not os.path.isdir(directory):
            continue
        points = []
        for entry in os.listdir(directory):
            path = os.path.join(directory, entry, "new", "estimates.json")
            if entry.isdigit() and os.path.isfile(path):
                with open(path) as f:
                    points.append((int(entry), json.load(f)["median"]["point_estimate"]))
        if points:
            data[function] = sorted(points)
    return data


def decades(low, high):
    """Powers of ten covering [low, high]."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10 ** e for e in range(first, last + 1)]


def label(value, unit=""):
    """1, 10, 100, 1,000 … or 1 µs, 10 µs … for tick labels."""
    if unit == "ns":
        for scale, name in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
            if value >= scale:
                return f"{value / scale:g} {name}"
        return f"{value:g} ns"
    return f"{int(value):,}"


def render(data):
    all_n = [n for points in data.values() for n, _ in points]
    all_t = [t for points in data.values() for _, t in points]
    xs, ys = decades(min(all_n), max(all_n)), decades(min(all_t), max(all_t))
    x_lo, x_hi = math.log10(xs[0]), math.log10(xs[-1])
    y_lo, y_hi = math.log10(ys[0]), math.log10(ys[-1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(n):
        return LEFT + (math.log10(n) - x_lo) / (x_hi - x_lo) * plot_w

    def py(t):
        return TOP + plot_h - (math.log10(t) - y_lo) / (y_hi - y_lo) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT + plot_w / 2}" y="24" text-anchor="middle" font-size="15">'
        "One ready fd among N registered: write, select, read (median)</text>",
    ]
    # Grid and ticks, one per decade.
    for n in xs:
        x = px(n)
        out.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{label(n)}</text>')
    for t in ys:
        y = py(t)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(label(t, "ns"))}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>')
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 18}" text-anchor="middle">'
        "registered fds N (log scale)</text>"
    )
    out.append(
        f'<text transform="translate(18 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
        "time per loop (log scale)</text>"
    )
    # One polyline with markers per series, then its legend entry.
    legend_y = TOP + 10
    for function, name, colour, dashed in SERIES:
        points = data.get(function)
        if not points:
            continue
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        coords = " ".join(f"{px(n):.1f},{py(t):.1f}" for n, t in points)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for n, t in points:
            out.append(
                f'<circle cx="{px(n):.1f}" cy="{py(t):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)}, N = {n:,}: {t:,.0f} ns</title></circle>"
            )
        lx = LEFT + plot_w + 16
        out.append(
            f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 28}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{lx + 34}" y="{legend_y + 4}">{escape(name)}</text>')
        legend_y += 20
    out.append(
        f'<text x="{LEFT + plot_w + 16}" y="{legend_y + 10}" font-size="10" fill="#555">'
        "select stops at FD_SETSIZE</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
    output = sys.argv[2] if len(sys.argv) > 2 else os.path.join("docs", "select_cost.svg")
    data = load(root)
    if not data:
        sys.exit(f"no {GROUP} results under {root}: run cargo bench -p tulip-benches --bench selectors")
    with open(output, "w") as f:
        f.write(render(data))
    print(f"wrote {output} ({len(data)} series)")


if __name__ == "__main__":
    main()
