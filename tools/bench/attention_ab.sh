#!/usr/bin/env bash
# Alternates attention_bench runs of the default (fused) and the unfused kernels of
# LinearAttention and NormAttention at one length, 7 rounds, and prints the medians:
# on a VM whose speed drifts from minute to minute only alternation compares fairly.
#   tools/bench/attention_ab.sh [n] [--causal]        (needs build/bin/attention_bench)
set -eu
cd "$(dirname "$0")/../.."
n=${1:-16384}
causal=${2:-}
for round in 1 2 3 4 5 6 7; do
  for k in fused unfused; do
    kernels=()
    [ "$k" = unfused ] && kernels=(--kernels linear_attention_chunked,norm_attention_gemm)
    build/bin/attention_bench --n "$n" --variants linear,transnormer --no-torch --parts-n 0 --reps 5 $causal "${kernels[@]}" |
      awk -v k="$k" '/^(linear|transnormer) / {print k, $1, $4, $5}'
  done
done | /usr/bin/python3 tools/bench/ab_medians.py
