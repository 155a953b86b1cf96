#!/usr/bin/python3
"""Medians of alternating A/B attention_bench runs. Reads lines `LABEL VARIANT MS GFLOPS`
on stdin (one per cell and round) and prints, per (variant, label), the median time and
GFLOP/s and every round's time. Used by attention_ab.sh and attention_lib_ab.sh."""
import collections
import statistics
import sys

runs = collections.defaultdict(list)
for line in sys.stdin:
    label, variant, ms, gflops = line.split()
    runs[(variant, label)].append((float(ms), float(gflops)))
for (variant, label), r in sorted(runs.items()):
    ms = [a for a, _ in r]
    print(f"{variant:12s} {label:10s} median {statistics.median(ms):7.1f} ms "
          f"{statistics.median(b for _, b in r):6.1f} GFLOP/s   runs: " + " ".join(f"{m:.1f}" for m in ms))
