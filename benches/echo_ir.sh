#!/bin/bash
# usage: benches/echo_ir.sh SERVER CONNECTIONS
# Prints the user-space instructions (callgrind Ir) the echo server's thread
# spends per request: (Ir(K2 rounds) - Ir(K1 rounds)) / ((K2 - K1) * CONNECTIONS),
# so setup cancels out. The server is thread 2 of benches/echo_steps.rs.
# Timing still shapes the batches a server sees per wake-up, so expect a
# little spread between runs (less than with timings).
# Build first: cargo build --release -p tulip-benches --example echo_steps
bin=${BIN:-target/release/examples/echo_steps}
out=$(mktemp -d)
k1=${K1:-200}; k2=${K2:-1200}
ir() {
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$out/cg.$3 $bin $1 $2 $3 >/dev/null 2>&1
  grep -h '^totals:' $out/cg.$3-02 | awk '{print $2}'
}
a=$(ir $1 $2 $k1); b=$(ir $1 $2 $k2)
rm -rf "$out"
python3 -c "print('$1 $2', round(($b-$a)/(($k2-$k1)*$2),1))"
