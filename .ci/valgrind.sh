#!/usr/bin/env bash
# Runs a subset of the test binaries under valgrind's memcheck: every
# invalid read or write, use of uninitialised memory, bad free, and every
# definite leak is an error, and any error fails the script. Needs valgrind
# and the Rust toolchain; takes a few minutes on 2 cores.
#
#     .ci/valgrind.sh            # the subset below
#     .ci/valgrind.sh conformance futures   # only these (names from the list)
#
# The subset: the unit tests of both crates, the selector suites (the
# conformance kit on every backend, the concrete types, the CPython port,
# the differential run, the transcripts, fork) and the event loop's suites.
# Left out, and why:
#   - example_cli, examples, echo_examples, seed_server: they start example
#     programs (through cargo or their binaries) and test those; valgrind
#     follows no child through exec (--trace-children=no), so it would only
#     watch the test harness wait, for minutes.
#   - readme: reads README.md and compares text; no unsafe code, no fds.
#   - timing: asserts wake-ups within a few milliseconds of their deadline;
#     under valgrind every thread runs 20-50 times slower and one at a time,
#     so its bounds measure valgrind, not the loop (its code paths are run
#     by event_loop and futures, which are here).
#   - the doc tests: rustdoc compiles and runs them itself.
#   - event_loop's a_million_cancelled_timers_do_not_grow_the_heap: a
#     million timers, each a heap allocation that memcheck tracks; minutes
#     and gigabytes under valgrind, for the allocation paths every other
#     timer test runs (SKIP below).
#   - four cases that count on the loop being quick, which under valgrind
#     it is not (SKIP below): trace's a_timer_iteration_says_why_it_waited_and_what_fired
#     (the loop must reach select within 1 ms of a 5 ms timer to have
#     blocked 4 ms), asyncio_port's eintr_from_select_does_not_end_run_forever
#     (three EINTRs must come before a 10 ms timer is due), transports'
#     dropped_create_connection_closes (a dropped connect must be cleaned up
#     within a 10 ms sleep), threadsafe's a_blocked_loop_is_woken (of 100 ms,
#     the loop must spend at most 50 running). Their code paths run in the
#     other cases.
#   - the io_uring backend (TULIP_IO_URING=0 below makes it unavailable,
#     so its cases skip): valgrind 3.19 holds its one running-thread lock
#     through io_uring_enter, so a select waiting for another thread's
#     write never ends. Its code runs under AddressSanitizer (.ci/asan.sh).
# Programs under valgrind run slower, never differently: the tests' bounds
# ("never early", a few seconds of slack) hold, and the differential run
# is shortened (TULIP_DIFF_OPS) to keep the whole within minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind is not installed" >&2
    exit 2
fi

# package:target (target "lib" is the crate's unit tests).
SUBSET=(
    tulip-selectors:lib
    tulip-selectors:conformance
    tulip-selectors:concrete
    tulip-selectors:cpython_port
    tulip-selectors:differential
    tulip-selectors:transcript
    tulip-selectors:fork
    tulip:lib
    tulip:event_loop
    tulip:futures
    tulip:io
    tulip:threadsafe
    tulip:signals
    tulip:sockets
    tulip:transports
    tulip:trace
    tulip:with_selector
    tulip:asyncio_port
    tulip:layer3_port
    tulip:drop
    tulip:fork
)
# Test cases left out of a binary (passed to it as --skip), with the reason above.
declare -A SKIP=(
    [tulip:event_loop]="a_million_cancelled_timers_do_not_grow_the_heap"
    [tulip:trace]="a_timer_iteration_says_why_it_waited_and_what_fired"
    [tulip:asyncio_port]="eintr_from_select_does_not_end_run_forever"
    [tulip:transports]="dropped_create_connection_closes"
    [tulip:threadsafe]="a_blocked_loop_is_woken"
)
if [ $# -gt 0 ]; then
    wanted=("$@")
    chosen=()
    for entry in "${SUBSET[@]}"; do
        for name in "${wanted[@]}"; do
            if [ "${entry#*:}" = "$name" ] || [ "$entry" = "$name" ]; then
                chosen+=("$entry")
            fi
        done
    done
    SUBSET=("${chosen[@]}")
fi

VALGRIND=(
    valgrind
    --tool=memcheck
    --leak-check=full
    --errors-for-leak-kinds=definite
    --show-leak-kinds=definite
    --error-exitcode=97
    --trace-children=no
    --child-silent-after-fork=yes
    --fair-sched=yes
    --quiet
)

# The executable of one test target, built if need be.
executable() {
    local package=$1 target=$2
    local select=(--lib)
    if [ "$target" != lib ]; then
        select=(--test "$target")
    fi
    cargo test -p "$package" "${select[@]}" --no-run 2>&1 |
        sed -n 's/^ *Executable .*(\(.*\))$/\1/p' | tail -n 1
}

cargo test --workspace --no-run --quiet 2>/dev/null || cargo test --workspace --no-run
failed=()
started=$SECONDS
for entry in "${SUBSET[@]}"; do
    package=${entry%%:*}
    target=${entry#*:}
    binary=$(executable "$package" "$target")
    if [ -z "$binary" ]; then
        echo "no test executable for $entry" >&2
        exit 2
    fi
    begin=$SECONDS
    printf '==> valgrind %s (%s)\n' "$entry" "$binary"
    skips=()
    for case in ${SKIP[$entry]:-}; do
        skips+=(--skip "$case")
    done
    if TULIP_DIFF_OPS=2000 TULIP_IO_URING=0 "${VALGRIND[@]}" "$binary" --quiet "${skips[@]}"; then
        printf '    %s: clean, %ss\n' "$entry" $((SECONDS - begin))
    else
        printf '    %s: FAILED (status %s), %ss\n' "$entry" "$?" $((SECONDS - begin))
        failed+=("$entry")
    fi
done
echo
if [ ${#failed[@]} -gt 0 ]; then
    echo "valgrind: ${#failed[@]} of ${#SUBSET[@]} test binaries failed: ${failed[*]} ($((SECONDS - started))s)"
    exit 1
fi
echo "valgrind: ${#SUBSET[@]} test binaries, 0 errors, 0 definite leaks ($((SECONDS - started))s)"
