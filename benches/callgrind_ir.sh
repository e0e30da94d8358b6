#!/bin/bash
# usage: benches/callgrind_ir.sh IMPL WORKLOAD N
# Prints the user-space instructions (callgrind Ir) per step of
# benches/selector_loops.rs: (Ir(K2 steps) - Ir(K1 steps)) / (K2 - K1), so
# setup cancels out. Deterministic, unlike timings on a shared machine.
# Build first: cargo build --release -p tulip-benches --example selector_loops
bin=${BIN:-target/release/examples/selector_loops}
out=${OUT:-/tmp}
k1=${K1:-2000}; k2=${K2:-12000}
ir() { valgrind --tool=callgrind --callgrind-out-file=$out/callgrind.$1.$2.$3.$4 $bin $1 $2 $3 $4 2>&1 | grep -oP 'Collected : \K[0-9]+'; }
a=$(ir $1 $2 $3 $k1); b=$(ir $1 $2 $3 $k2)
python3 -c "print('$1 $2 $3', round(($b-$a)/($k2-$k1),1))"
