#!/bin/bash
# usage: benches/echo_ir.sh SERVER [SERVER...] CONNECTIONS
# Prints the user-space instructions (callgrind Ir) the echo server's thread
# spends per request: (Ir(K2 rounds) - Ir(K1 rounds)) / ((K2 - K1) * CONNECTIONS),
# so setup cancels out. The server is thread 2 of benches/echo_steps.rs.
# Server and clients are pinned to one CPU (--pin), as in the bench: each
# round is one batch for the server, and the count repeats to a few tenths.
# With several servers, each line also gives its ratio to the first's, e.g.
# benches/echo_ir.sh tulip-protocol tulip-streams 10 (issue 13's streams cost).
# Build first: cargo build --release -p tulip-benches --example echo_steps
bin=${BIN:-target/release/examples/echo_steps}
out=$(mktemp -d)
k1=${K1:-200}; k2=${K2:-1200}
conns=${@: -1}
servers=("${@:1:$#-1}")
ir() {
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=$out/cg.$3 $bin --pin $1 $2 $3 >/dev/null 2>&1
  grep -h '^totals:' $out/cg.$3-02 | awk '{print $2}'
}
first=
for server in "${servers[@]}"; do
  a=$(ir $server $conns $k1); b=$(ir $server $conns $k2)
  per=$(python3 -c "print(round(($b-$a)/(($k2-$k1)*$conns),1))")
  if [ -z "$first" ]; then
    first=$per
    echo "$server $conns $per"
  else
    echo "$server $conns $per $(python3 -c "print(f'{$per/$first:.2f}x ${servers[0]}')")"
  fi
done
rm -rf "$out"
