#!/usr/bin/env bash
# Alternates attention_bench runs between two builds of libatrous (LD_LIBRARY_PATH), for
# comparing a change with the code before it on a machine whose speed drifts:
#   cp -a build/lib/libatrous.so* /tmp/libA/     # before the change
#   ... rebuild ...
#   tools/bench/attention_lib_ab.sh /tmp/libA build/lib 16384 flash,litemla,performer [rounds] [--causal]
# Prints per variant and build the median over the rounds (each round: 3 timed runs).
set -eu
cd "$(dirname "$0")/../.."
a=$1 b=$2 n=$3 variants=$4 rounds=${5:-5} causal=${6:-}
for round in $(seq "$rounds"); do
  for lib in "$a" "$b"; do
    LD_LIBRARY_PATH="$lib" build/bin/attention_bench --n "$n" --variants "$variants" --no-torch --parts-n 0 --reps 3 $causal |
      awk -v k="$lib" -v n="$n" '$2 == n {print k, $1, $4, $5}'
  done
done | /usr/bin/python3 tools/bench/ab_medians.py
