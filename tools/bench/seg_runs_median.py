#!/usr/bin/python3
"""Per-convolution medians over several seg_bench.py runs.

    /usr/bin/python3 tools/bench/seg_runs_median.py RUN1.json RUN2.json RUN3.json ...

Each JSON is one `seg_bench.py --json` run. For every model and every convolution of
>= 1 GFLOP (the ones seg_bench.py's summary counts), prints the median over the runs of
its share of that run's FMA peak (measured before the run), how many convolutions have a
median at >= 80 %, and the lowest medians. A run's own summary can fall short in a slow
phase of this shared machine; the medians say what holds across runs.
"""
import json
import statistics
import sys


def main():
    runs = [json.load(open(p)) for p in sys.argv[1:]]
    if len(runs) < 2:
        sys.exit("give two or more seg_bench.py --json files")
    for model in runs[0]["models"]:
        per = {}
        for r in runs:
            peak = r["fma_peak_gflops"]
            for s in r["models"][model]["steps"]:
                if s["gflop"] >= 1.0 and s["op"] in ("Conv2d", "BoundaryRefinement"):
                    per.setdefault(s["node"], []).append(100.0 * s["gflops_per_s"] / peak)
        med = {n: statistics.median(v) for n, v in per.items() if len(v) == len(runs)}
        speed = [statistics.median(r["models"][model]["torch_s"]) / statistics.median(r["models"][model]["atrous_s"]) for r in runs]
        print("%s: %d runs, speed-up over PyTorch %s (median %.2fx); convolutions of >= 1 GFLOP: %d, median at >= 80 %% of "
              "the peak: %d" % (model, len(runs), " ".join("%.2fx" % x for x in speed), statistics.median(speed), len(med),
                                sum(1 for v in med.values() if v >= 80.0)))
        for n, v in sorted(med.items(), key=lambda kv: kv[1])[:4]:
            print("  %-34s median %5.1f %%  (runs: %s)" % (n, v, " ".join("%.1f" % x for x in per[n])))


if __name__ == "__main__":
    main()
