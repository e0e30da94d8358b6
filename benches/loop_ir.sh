#!/bin/bash
# usage: benches/loop_ir.sh WORKLOAD ELEMENTS
# Prints the user-space instructions (callgrind Ir) per element of a
# benches/loop_steps.rs workload: (Ir(K2 runs) - Ir(K1 runs)) / ((K2 - K1) * ELEMENTS),
# so setup cancels out. Deterministic, unlike timings on a shared machine
# (the timer and threadsafe workloads depend on timing a little).
# Build first: cargo build --release -p tulip-benches --example loop_steps
bin=${BIN:-target/release/examples/loop_steps}
out=${OUT:-/tmp}
k1=${K1:-10}; k2=${K2:-60}
ir() { valgrind --tool=callgrind --callgrind-out-file=$out/callgrind.$1.$2.$3 $bin $1 $2 $3 2>&1 | grep -oP 'Collected : \K[0-9]+'; }
a=$(ir $1 $2 $k1); b=$(ir $1 $2 $k2)
python3 -c "print('$1 $2', round(($b-$a)/(($k2-$k1)*$2),1))"
