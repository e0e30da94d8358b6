#!/usr/bin/env bash
# The test suites under AddressSanitizer (use after free, overflows, and
# leaks at exit with LeakSanitizer). Needs nightly and rust-src for
# -Zbuild-std (installed here if missing); builds in target/asan.
#
# Left out: the examples' suites (they start `cargo run`, which would build
# every example again without the sanitizer) and the benches.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup toolchain list | grep -q '^nightly' \
    || ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    timeout 600 rustup toolchain install nightly --profile minimal -c rust-src
fi

target=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" ASAN_OPTIONS="detect_leaks=1"
asan_test() {
    cargo +nightly test -Zbuild-std --no-fail-fast --target "$target" --target-dir target/asan "$@"
}
asan_test -p tulip-selectors --lib --tests
asan_test -p tulip --lib \
    --test event_loop --test io --test drop --test fork --test signals --test threadsafe \
    --test futures --test timing --test testing --test trace --test sockets --test transports \
    --test locks --test queues --test taskgroups --test timeouts --test waiting \
    --test asyncio_port --test layer3_port --test with_selector
