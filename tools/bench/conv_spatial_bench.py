#!/usr/bin/python3
"""conv2d_spatial against oneDNN on the GCN network's class-channel convolutions.

    /usr/bin/python3 tools/bench/conv_spatial_bench.py [--atrous build/bin/atrous] [--rounds 3]
                                                       [--runs 10] [--work /tmp/conv_spatial_bench]

For each shape below, writes a random-weight model with `atrous convert --arch graph`:
a 1x1 conv with ReLU (so the measured conv reads oneDNN's blocked output, as in the
network), the measured conv ("same" padding, bias), and a 1x1 conv after it (so its
output may stay blocked under oneDNN). Then alternates, --rounds times, `atrous bench`
with the default kernels (conv2d_spatial) and with `--exclude-kernel conv2d_spatial`
(oneDNN), and prints per shape the medians of the measured conv's time and GFLOP/s,
and of the reorder to plain that conv2d_spatial needs before it. The FMA peak
(build/bin/fma_peak, best of 5) is read before each round.
"""
import argparse
import json
import os
import statistics
import subprocess

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

# name: input channels, output channels, kh, kw, H, W (the GCN network at 512x512, k = 15)
SHAPES = {
    "gcm4.conv_l1 (15x1, 256->21, 128x128)": (256, 21, 15, 1, 128, 128),
    "gcm4.conv_r1 (1x15, 256->21, 128x128)": (256, 21, 1, 15, 128, 128),
    "gcm3.conv_l1 (15x1, 512->21, 64x64)": (512, 21, 15, 1, 64, 64),
    "gcm1.conv_l1 (15x1, 2048->21, 16x16)": (2048, 21, 15, 1, 16, 16),
    "brm9.conv (3x3, 21->21, 512x512)": (21, 21, 3, 3, 512, 512),
    "brm4.conv (3x3, 21->21, 128x128)": (21, 21, 3, 3, 128, 128),
}


def make(work, atrous, key, shape):
    c, o, kh, kw, h, w = shape
    name = "m%d" % list(SHAPES).index(key)
    path = os.path.join(work, name + ".atrous")
    if os.path.exists(path):
        return path
    g = torch.Generator().manual_seed(0)
    sd = {"pre.weight": torch.randn(c, c, 1, 1, generator=g) * 0.05, "pre.bias": torch.randn(c, generator=g),
          "conv.weight": torch.randn(o, c, kh, kw, generator=g) * 0.05, "conv.bias": torch.randn(o, generator=g),
          "post.weight": torch.randn(16, o, 1, 1, generator=g), "post.bias": torch.randn(16, generator=g)}
    torch.save(sd, os.path.join(work, name + ".pth"))
    pad = {"pad_top": kh // 2, "pad_bottom": kh // 2, "pad_left": kw // 2, "pad_right": kw // 2}
    cfg = {"name": name, "inputs": [{"name": "x", "dtype": "f32", "shape": [1, c, h, w]}],
           "nodes": [{"op": "Conv2d", "params": "pre", "inputs": ["x"], "attrs": {"activation": "Relu"}},
                     {"op": "Conv2d", "params": "conv", "inputs": ["pre"], "attrs": pad},
                     {"op": "Conv2d", "params": "post", "inputs": ["conv"]}],
           "outputs": ["post"]}
    with open(os.path.join(work, name + ".json"), "w") as f:
        json.dump(cfg, f)
    subprocess.run([atrous, "convert", "--arch", "graph", "--config", os.path.join(work, name + ".json"),
                    os.path.join(work, name + ".pth"), "-o", path], check=True, stdout=subprocess.DEVNULL)
    return path


def bench(atrous, model, runs, extra):
    out = subprocess.run([atrous, "bench", model, "--runs", str(runs), "--warmup", "2", "--threads", "2", "--json"] + extra,
                         capture_output=True, text=True, check=True).stdout
    steps = json.loads(out)["steps"]
    conv = next(s for s in steps if s["node"] == "conv")
    reorder = sum(s["median_s"] for s in steps if s["op"] == "Reorder")
    return conv["median_s"] * 1e3, conv["gflops_per_s"], conv["kernel"], reorder * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--atrous", default=os.path.join(ROOT, "build", "bin", "atrous"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--work", default="/tmp/conv_spatial_bench")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    models = {k: make(a.work, a.atrous, k, s) for k, s in SHAPES.items()}
    peak_bin = os.path.join(os.path.dirname(a.atrous), "fma_peak")
    res = {k: {"spatial": [], "onednn": []} for k in SHAPES}
    peaks = []
    for r in range(a.rounds):
        if os.path.exists(peak_bin):
            line = subprocess.run([peak_bin], capture_output=True, text=True).stdout.strip().splitlines()[-1]
            peaks.append(float(line.split(":")[1].split()[0]))
        for k, m in models.items():
            res[k]["spatial"].append(bench(a.atrous, m, a.runs, []))
            res[k]["onednn"].append(bench(a.atrous, m, a.runs, ["--exclude-kernel", "conv2d_spatial"]))
    print("fma_peak (2 threads) before each round: " + ", ".join("%.1f" % p for p in peaks) + " GFLOP/s")
    print("%-40s %-16s %9s %9s %11s" % ("convolution", "kernel", "ms", "GFLOP/s", "reorder ms"))
    for k in SHAPES:
        for name in ("spatial", "onednn"):
            v = res[k][name]
            print("%-40s %-16s %9.2f %9.1f %11.2f" % (k, v[0][2], statistics.median(x[0] for x in v),
                                                   statistics.median(x[1] for x in v), statistics.median(x[3] for x in v)))
        s, o = res[k]["spatial"], res[k]["onednn"]
        with_reorder = statistics.median(x[0] + x[3] for x in s)
        print("%-40s speed-up %.2fx (%.2fx counting the reorder)" % (
            "", statistics.median(x[0] for x in o) / statistics.median(x[0] for x in s),
            statistics.median(x[0] for x in o) / with_reorder))


if __name__ == "__main__":
    main()
