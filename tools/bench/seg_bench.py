#!/usr/bin/python3
"""Semantic segmentation speed: Atrous against PyTorch eager, in one run.

    /usr/bin/python3 tools/bench/seg_bench.py [--atrous build/bin/atrous] [--threads 2] [--runs 7]
                                              [--rounds 3] [--models deeplabv3,gcn] [--work /tmp/atrous_seg_bench]

For each model (torchvision's deeplabv3_resnet50 at 513x513, 21 classes, aux head
dropped; the GCN network of tests/segmentation/gcn_net.py on torchvision's resnet50,
k = 15, 21 classes, at 512x512), with random weights:
  1. saves the state dict and converts it with `atrous convert`;
  2. alternates, --rounds times, --runs timed PyTorch forwards (torch.no_grad, eval,
     torch.set_num_threads(T), after 2 warm-ups) with an `atrous bench --json` of --runs
     runs (after 2 warm-ups) with the same thread count, so both see the same machine load;
  3. prints the median latency of each, the speed-up, and Atrous's per-layer GFLOP/s for
     the convolutions against the machine's FMA peak (build/bin/fma_peak, best of 5).
The machine is shared: run it when `uptime` shows a low load, and read the medians.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

# Steps that are convolutions: Conv2d, and BoundaryRefinement (two fused convs).
CONVS = ("Conv2d", "BoundaryRefinement")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "segmentation"))


def make_model(name):
    torch.manual_seed(0)
    if name == "deeplabv3":
        from torchvision.models.segmentation import deeplabv3_resnet50
        net = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=False).eval()
        return net, (513, 513), "deeplabv3", [], lambda y: y["out"]
    from gcn_net import GCNNet, torchvision_backbone
    bb, widths = torchvision_backbone("resnet50")
    return GCNNet(bb, widths, 21, k=15).eval(), (512, 512), "gcn", [], lambda y: y


def time_torch(net, x, runs, post):
    with torch.no_grad():
        for _ in range(2):
            post(net(x))
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            post(net(x))
            ts.append(time.perf_counter() - t)
    return ts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atrous", default=os.path.join(ROOT, "build", "bin", "atrous"))
    ap.add_argument("--fma-peak", default=None, help="fma_peak binary (default: next to atrous)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="deeplabv3,gcn")
    ap.add_argument("--work", default="/tmp/atrous_seg_bench")
    ap.add_argument("--json", help="write all measurements here")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    torch.set_num_threads(a.threads)
    fma = a.fma_peak or os.path.join(os.path.dirname(a.atrous), "fma_peak")

    def read_peak():
        if not os.path.exists(fma):
            return None
        out = subprocess.run([fma, str(a.threads)], capture_output=True, text=True).stdout
        print(out.strip())
        for line in out.splitlines():
            parts = line.split()
            if "GFLOP/s" in line and parts and parts[0].isdigit() and int(parts[0]) == a.threads:
                return float(parts[parts.index("GFLOP/s") - 1])
        return None

    peak = read_peak()
    print("load before: %s" % os.getloadavg().__repr__())
    results = {"threads": a.threads, "fma_peak_gflops": peak, "torch": torch.__version__, "models": {}}
    for name in a.models.split(","):
        net, (h, w), arch, sets, post = make_model(name)
        pth = os.path.join(a.work, name + ".pth")
        model = os.path.join(a.work, name + ".atrous")
        torch.save(net.state_dict(), pth)
        cmd = [a.atrous, "convert", "--arch", arch, pth, "-o", model] + sum([["--set", s] for s in sets], [])
        subprocess.run(cmd, check=True, capture_output=True)
        x = torch.randn(1, 3, h, w)
        t_torch, t_atrous, steps = [], [], None
        for r in range(a.rounds):
            t_torch += time_torch(net, x, a.runs, post)
            out = subprocess.run([a.atrous, "bench", model, "--json", "--runs", str(a.runs), "--threads", str(a.threads),
                                  "--shape", "image=1,3,%d,%d" % (h, w)], capture_output=True, text=True, check=True).stdout
            j = json.loads(out)
            t_atrous += j["runs_s"]
            if steps is None:
                steps = {s["node"] + "#" + str(i): dict(s, times=[s["median_s"]]) for i, s in enumerate(j["steps"])}
            else:
                for i, s in enumerate(j["steps"]):
                    steps[s["node"] + "#" + str(i)]["times"].append(s["median_s"])
            gflop = j["gflop"]
        mt, ma = statistics.median(t_torch), statistics.median(t_atrous)
        print("\n%s at %dx%d, %d threads: PyTorch %s eager median %.1f ms (%d runs), Atrous median %.1f ms (%d rounds of %d runs), "
              "speed-up %.2fx; %.1f GFLOP -> %.1f GFLOP/s" % (name, h, w, a.threads, torch.__version__, 1e3 * mt, len(t_torch),
                                                            1e3 * ma, a.rounds, a.runs, mt / ma, gflop, gflop / ma))
        rows = []
        for key, s in steps.items():
            t = statistics.median(s["times"])
            rows.append((t, s["node"], s["op"], s["kernel"], s["gflop"], s["gflop"] / t if t > 0 else 0))
        rows.sort(reverse=True)
        total = sum(r[0] for r in rows)
        print("  %-34s %-18s %9s %6s %8s %9s" % ("largest steps", "op", "ms", "share", "GFLOP", "GFLOP/s" + ("" if not peak else " (%peak)")))
        for t, node, op, kernel, gf, rate in rows[:15]:
            pk = "" if not peak or op not in CONVS else " (%3.0f%%)" % (100 * rate / peak)
            print("  %-34.34s %-18s %9.2f %5.1f%% %8.2f %9.1f%s" % (node, op, 1e3 * t, 100 * t / total, gf, rate, pk))
        big = [r for r in rows if r[2] in CONVS and r[4] >= 1.0]
        if big and peak:
            flop = sum(r[4] for r in big)
            secs = sum(r[0] for r in big)
            print("  convolutions of >= 1 GFLOP: %d, %.1f GFLOP in %.1f ms = %.1f GFLOP/s = %.0f%% of the %.0f GFLOP/s FMA peak"
                  % (len(big), flop, 1e3 * secs, flop / secs, 100 * flop / secs / peak, peak))
            # Every large convolution, not only the aggregate: how many reach 80 % of the
            # peak, and the slowest three by rate.
            print("  of which at >= 80%% of the peak: %d of %d; lowest:" % (sum(r[5] >= 0.8 * peak for r in big), len(big)))
            for t, node, op, kernel, gf, rate in sorted(big, key=lambda r: r[5])[:3]:
                print("    %-32.32s %-18s %-24s %8.2f ms %6.2f GFLOP %7.1f GFLOP/s (%3.0f%%)"
                      % (node, op, kernel, 1e3 * t, gf, rate, 100 * rate / peak))
        results["models"][name] = {"size": [h, w], "torch_s": t_torch, "atrous_s": t_atrous, "gflop": gflop,
                                   "steps": [dict(zip(["median_s", "node", "op", "kernel", "gflop", "gflops_per_s"], r)) for r in rows]}
    print("\nload after: %s; the FMA peak again (the percentages above use the first):" % (os.getloadavg().__repr__()))
    results["fma_peak_after_gflops"] = read_peak()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
