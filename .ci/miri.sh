#!/usr/bin/env bash
# The library under Miri (undefined behaviour, leaks, data races in the
# unsafe code): the tests Miri can run. Needs the nightly toolchain with
# the miri and rust-src components (installed here if missing).
#
# What Miri cannot run, and so is left out:
# - poll(2) and select(2): Miri implements epoll, eventfd, pipes and
#   socketpairs, but not these two, so the poll and select backends' suites
#   (and anything that opens every backend and selects on it) stay out;
# - getrlimit/setrlimit, sigaction, fork, regular files under epoll: the
#   tests that raise the fd limit, install signal handlers or fork;
# - the bulk timer tests (tens of thousands of timers, a million cancels)
#   and the conformance kit's random sequences (2,000 operations and a
#   model): correct under Miri but hours long.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup toolchain list | grep -q '^nightly' \
    || ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^miri'; then
    timeout 600 rustup toolchain install nightly --profile minimal -c miri -c rust-src
fi

export MIRIFLAGS="-Zmiri-disable-isolation"

# tulip-selectors: its unit tests (the registry, every backend's bit
# translation, the waker over eventfd and a pipe, the transcript) and the
# epoll half of the conformance suite that needs no fd limit or signal.
cargo +nightly miri test -p tulip-selectors --lib
cargo +nightly miri test -p tulip-selectors --test conformance -- epoll:: \
    --skip fd_closed_while_registered --skip modify_refused_by_the_os \
    --skip modify_with_same_events_makes_no_syscall --skip register_above_fd_setsize \
    --skip register_of_a_closed_fd --skip register_of_a_regular_file \
    --skip signal_does_not_cut_the_timeout_short --skip thousands_of_fds_in_one_select \
    --skip random_sequences_match_the_model

# tulip: the run phase's panics and drops, the timer heap's bookkeeping,
# the panic hook, a protocol's panic closing its transport (over epoll).
cargo +nightly miri test -p tulip --lib -- \
    --skip many_due_timers_leave_in_order_through_the_bulk_path \
    --skip bulk_order_holds_for_deadlines_too_far_apart_for_compact_keys \
    --skip scheduling_and_cancelling_without_running_stays_bounded \
    --skip a_large_batch_runs_in_order
