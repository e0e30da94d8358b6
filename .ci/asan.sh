#!/usr/bin/env bash
# The test suites under AddressSanitizer (use after free, overflows, and
# leaks at exit with LeakSanitizer). Needs nightly and rust-src for
# -Zbuild-std (installed here if missing); builds in target/asan.
#
# Left out: the examples' suites (they run the example binaries, built
# again for them without the sanitizer), the README check and the benches.
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
# Every suite in tests/ but those that run the examples.
examples_suites=" echo_examples example_cli examples os_examples seed_server readme "
suites=()
for file in tests/*.rs; do
    name=$(basename "$file" .rs)
    [[ $examples_suites == *" $name "* ]] || suites+=(--test "$name")
done
asan_test -p tulip --lib "${suites[@]}"
