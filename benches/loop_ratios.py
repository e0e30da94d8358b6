#!/usr/bin/env python3
"""The issue-7 ratios from one run of the event_loop and echo benches.

usage: python3 benches/loop_ratios.py [ECHO_LOG]

Reads criterion's medians from target/criterion (run both benches first,
in the same session) and, if given, the echo bench's output for the server
CPU time table it prints. Each ratio compares rates (elements per second)
measured in that run: a ratio above 1 means tulip did more per second.
"""

import json
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "criterion")


def median_ns(group, bench, param):
    path = os.path.join(ROOT, group, bench, param, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"]


def rate_ratio(group, ours, theirs, param):
    """Our rate over theirs: their time per iteration over ours (same elements)."""
    return median_ns(group, theirs, param) / median_ns(group, ours, param)


ROWS = [
    ("call_soon batches of 1,000 vs the inline minimal loop", ">= 0.85", "call_soon_batch", "tulip", "floor", "1000", 0.85),
    ("call_soon chains of 1,000 vs tokio spawn-chain", ">= 1.0", "call_soon_chain", "tulip", "tokio", "1000", 1.0),
    ("100,000 call_later vs tokio sleep tasks", ">= 4", "call_later_100k", "tulip", "tokio", "100000", 4.0),
    ("add_reader ping-pong vs raw epoll", ">= 0.95", "add_reader_ping_pong", "tulip", "raw-epoll", "1000", 0.95),
    ("echo, protocol, 1 connection vs tokio (requests/s)", ">= 1.0", "echo", "tulip-protocol", "tokio", "1conn", 1.0),
]


def main():
    print("| measure | target | ratio | met |")
    print("|---|---|---|---|")
    for label, target, group, ours, theirs, param, bound in ROWS:
        try:
            ratio = rate_ratio(group, ours, theirs, param)
        except OSError:
            print(f"| {label} | {target} | (not run) | |")
            continue
        print(f"| {label} | {target} | {ratio:.3f} | {'yes' if ratio >= bound else 'no'} |")
    if len(sys.argv) > 1:
        cpu = {}
        with open(sys.argv[1]) as f:
            for line in f:
                m = re.match(r"\s*(\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s*$", line)
                if m:
                    cpu[(int(m.group(1)), m.group(2))] = float(m.group(5))
        for conns in (10, 100):
            ratio = cpu.get((conns, "tulip-protocol"))
            label = f"echo, protocol, server CPU per request, {conns} connections, vs raw epoll"
            if ratio is None:
                print(f"| {label} | <= 1.02 | (not run) | |")
            else:
                print(f"| {label} | <= 1.02 | {ratio:.3f} | {'yes' if ratio <= 1.02 else 'no'} |")


if __name__ == "__main__":
    main()
