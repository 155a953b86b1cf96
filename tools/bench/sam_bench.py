#!/usr/bin/python3
"""Segment Anything speed and memory: Atrous against PyTorch eager, in one run.

    /usr/bin/python3 tools/bench/sam_bench.py [--atrous build/bin/atrous] [--threads 2]
        [--encode-runs 5] [--decode-runs 50] [--torch-encode-runs 3] [--torch-stock-encode-runs 1]
        [--torch-decode-runs 20] [--work /tmp/sam_bench]

With random weights in the official vit_b layout (tests/sam/sam_reference.py, the
same PyTorch implementation the tests compare against):
  1. saves the state dict, converts it with `atrous convert --arch sam`;
  2. encoder at 1024x1024: `atrous bench --entry encode_image` (median of --encode-runs
     after 1 warm-up) and PyTorch eager `image_encoder` (torch.no_grad, eval,
     torch.set_num_threads(T)), both with T threads. PyTorch runs twice: as Debian
     ships it ("stock": its CPU matmul calls the reference BLAS) and with oneDNN's
     sgemm preloaded as BLAS (tests/sam/torch_sgemm_shim.cpp; what a PyTorch linked
     to MKL/OpenBLAS does), each in its own process;
  3. one prompt decode (a foreground point; the padding point makes 2 prompt tokens):
     `atrous bench --entry decode_prepared --keep-inputs` on prepare_image's outputs
     (the decode SamPredictor runs for a prompt without a mask input: the
     prompt-independent part, timed once as `--entry prepare_image`, is computed once
     per image and staged in the decode session once) and `--entry decode` (the whole
     decoder, any prompt), against PyTorch's prompt_encoder + mask_decoder;
  4. peak RSS (/usr/bin/time) of `atrous run --entry encode_image` next to the plan's
     weight bytes and memory lower bound (`atrous inspect --json`);
  5. the library loop: first and steady-state SamPredictor decode through `atrous segment`,
     and SamPredictor::decode in steady state (build/bin/sam_decode_bench, masks
     postprocessed to 640x480).
The machine is shared: run it when `uptime` shows a low load, and read the medians.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "sam"))

TORCH_CHILD = r"""
import json, statistics, sys, time
import numpy as np
import torch
sys.path.insert(0, sys.argv[1])
import sam_reference as ref
torch.set_grad_enabled(False)
torch.set_num_threads(int(sys.argv[3]))
enc_runs, dec_runs = int(sys.argv[4]), int(sys.argv[5])
sam = ref.build_sam(ref.VIT_B)
sam.load_state_dict(torch.load(sys.argv[2]))
x = torch.randn(1, 3, 1024, 1024)
enc = []
for _ in range(enc_runs):
    t = time.perf_counter(); feats = sam.image_encoder(x); enc.append(time.perf_counter() - t)
if not enc_runs:
    feats = torch.randn(1, 256, 64, 64)
pts = (torch.tensor([[[500.0, 375.0]]]), torch.tensor([[1]]))
def decode():
    sparse, dense = sam.prompt_encoder(points=pts, boxes=None, masks=None)
    return sam.mask_decoder(feats, sam.prompt_encoder.get_dense_pe(), sparse, dense, True)
dec = []
for i in range(dec_runs + 2):
    t = time.perf_counter(); decode(); d = time.perf_counter() - t
    if i >= 2: dec.append(d)
print(json.dumps({"encode": enc, "decode": dec}))
"""


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr


def med(v):
    return statistics.median(v) if v else float("nan")


def torch_times(args, pth, enc_runs, dec_runs, shim):
    env = dict(os.environ)
    if shim:
        env["LD_PRELOAD"] = shim
    out = run([sys.executable, "-c", TORCH_CHILD, os.path.join(ROOT, "tests", "sam"), pth, str(args.threads),
               str(enc_runs), str(dec_runs)], env)
    return json.loads(out.strip().splitlines()[-1])


def atrous_bench(args, model, entry, runs, extra=()):
    out = run([args.atrous, "bench", model, "--entry", entry, "--threads", str(args.threads), "--runs", str(runs),
               "--warmup", "1" if entry == "encode_image" else "3", "--json", *extra])
    return json.loads(out[out.index("{"):])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atrous", default=os.path.join(ROOT, "build", "bin", "atrous"))
    ap.add_argument("--shim", default=None, help="torch sgemm shim (default: lib/libsam_torch_sgemm.so next to bin/)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--encode-runs", type=int, default=5)
    ap.add_argument("--decode-runs", type=int, default=50)
    ap.add_argument("--torch-encode-runs", type=int, default=3)
    ap.add_argument("--torch-stock-encode-runs", type=int, default=1)
    ap.add_argument("--torch-decode-runs", type=int, default=20)
    ap.add_argument("--work", default="/tmp/sam_bench")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    shim = args.shim or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.atrous))), "lib",
                                     "libsam_torch_sgemm.so")
    import numpy as np
    import torch
    import sam_reference as ref

    print(f"uptime: {open('/proc/loadavg').read().split()[:3]} (load averages)")
    pth = os.path.join(args.work, "sam_vit_b_random.pth")
    model = os.path.join(args.work, "sam_vit_b.atrous")
    if not os.path.exists(model):
        sam = ref.build_sam(ref.VIT_B)
        ref.randomize(sam, 0)
        torch.save(sam.state_dict(), pth)
        run([args.atrous, "convert", "--arch", "sam", pth, "-o", model])
    rng = np.random.default_rng(0)
    np.save(os.path.join(args.work, "image.npy"), rng.standard_normal((1, 3, 1024, 1024)).astype(np.float32))
    np.save(os.path.join(args.work, "emb.npy"), rng.standard_normal((1, 256, 64, 64)).astype(np.float32))
    np.save(os.path.join(args.work, "coords.npy"), np.array([[[500 * 1024 / 640, 375 * 1024 / 640], [0, 0]]], np.float32))
    np.save(os.path.join(args.work, "labels.npy"), np.array([[1, -1]], np.float32))
    np.save(os.path.join(args.work, "mask.npy"), np.zeros((1, 1, 256, 256), np.float32))
    np.save(os.path.join(args.work, "has.npy"), np.zeros((1,), np.float32))
    w = lambda n: os.path.join(args.work, n)  # noqa: E731
    dec_inputs = ["--input", "image_embeddings=" + w("emb.npy"), "--input", "point_coords=" + w("coords.npy"), "--input",
                  "point_labels=" + w("labels.npy"), "--input", "mask_input=" + w("mask.npy"), "--input",
                  "has_mask_input=" + w("has.npy")]
    # prepare_image's outputs for the decode_prepared runs (a model converted before that
    # entry point existed has neither: delete it and run again).
    prep = ("image_tokens", "image_tokens_pe", "keys0", "values0")
    run([args.atrous, "run", model, "--entry", "prepare_image", "--input", "image_embeddings=" + w("emb.npy"), "--output-dir",
         w("prep")])
    prep_inputs = ["--input", "point_coords=" + w("coords.npy"), "--input", "point_labels=" + w("labels.npy")]
    for n in prep:
        prep_inputs += ["--input", f"{n}={w('prep/' + n + '.npy')}"]

    # Interleaved so that both see the same machine load.
    a_enc = atrous_bench(args, model, "encode_image", args.encode_runs)
    t_fast = torch_times(args, pth, args.torch_encode_runs, args.torch_decode_runs, shim if os.path.exists(shim) else None)
    a_dec = atrous_bench(args, model, "decode_prepared", args.decode_runs, prep_inputs + ["--keep-inputs"])
    a_whole = atrous_bench(args, model, "decode", args.decode_runs, dec_inputs)
    a_prep = atrous_bench(args, model, "prepare_image", 10, ["--input", "image_embeddings=" + w("emb.npy")])
    t_stock = torch_times(args, pth, args.torch_stock_encode_runs, args.torch_decode_runs, None)
    print(f"uptime: {open('/proc/loadavg').read().split()[:3]} (load averages)")

    print(f"\nSAM vit_b, {args.threads} threads, f32")
    print(f"{'':32s} {'Atrous':>12s} {'PyTorch+sgemm':>14s} {'PyTorch stock':>14s}")
    ae, ad, aw = a_enc["latency_s"]["median"], a_dec["latency_s"]["median"], a_whole["latency_s"]["median"]
    print(f"{'encoder 1024x1024 (median)':32s} {ae:11.2f}s {med(t_fast['encode']):13.2f}s {med(t_stock['encode']):13.2f}s")
    print(f"{'decode, one point (median)':32s} {ad * 1e3:10.1f}ms {med(t_fast['decode']) * 1e3:12.1f}ms "
          f"{med(t_stock['decode']) * 1e3:12.1f}ms")
    print(f"{'  whole decoder (median)':32s} {aw * 1e3:10.1f}ms")
    print(f"{'  prepare_image, once per image':32s} {a_prep['latency_s']['median'] * 1e3:10.1f}ms")
    print(f"encoder: {a_enc['gflop']:.1f} GFLOP -> {a_enc['gflops_per_s']:.1f} GFLOP/s; "
          f"decode: {a_dec['gflop']:.2f} GFLOP -> {a_dec['gflops_per_s']:.1f} GFLOP/s "
          f"(whole decoder {a_whole['gflop']:.2f} GFLOP -> {a_whole['gflops_per_s']:.1f} GFLOP/s)")
    print("\nencoder per op type (sum of step medians, GFLOP/s):")
    by = {}
    for s in a_enc["steps"]:
        k = s["op"] + " / " + s["kernel"]
        t, f = by.get(k, (0.0, 0.0))
        by[k] = (t + s["median_s"], f + s["gflop"])
    for k, (t, f) in sorted(by.items(), key=lambda kv: -kv[1][0]):
        print(f"  {k:50s} {t:8.3f} s {f / t if t else 0:8.1f}")
    print("\ndecode steps (top 8):")
    for s in sorted(a_dec["steps"], key=lambda s: -s["median_s"])[:8]:
        print(f"  {s['node'][:44]:44s} {s['kernel']:24s} {s['median_s'] * 1e3:7.2f} ms {s['gflops_per_s']:7.1f} GFLOP/s")

    # Peak RSS of an encoder run, against the plan's weights and lower bound.
    info = json.loads(run([args.atrous, "inspect", model, "--entry", "encode_image", "--json", "--threads",
                           str(args.threads)]).replace("<discarded>", "null"))
    mem = info["entries"][0]["plan"]["memory"] if "plan" in info["entries"][0] else info["entries"][0]["memory"]
    out = run(["/usr/bin/time", "-v", args.atrous, "run", model, "--entry", "encode_image", "--threads",
               str(args.threads), "--input", "image=" + w("image.npy"), "--output-dir", w("out")])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out).group(1)) * 1024
    weights, lb, persistent = mem["weight_bytes"], mem["lower_bound_bytes"], mem["persistent_bytes"]
    mib = 1 << 20
    # Packed copies replace the file's pages of the weights they pack (ModelFile::release_pages),
    # so the budget counts the weights once.
    print(f"\nencoder peak RSS {rss / mib:.1f} MiB; weights used {weights / mib:.1f} MiB ({persistent / mib:.1f} MiB of them "
          f"packed or copied by the plan), planner lower bound {lb / mib:.2f} MiB; budget weights + 1.2 x bound = "
          f"{(weights + 1.2 * lb) / mib:.1f} MiB")

    # The library loop through the CLI: encode + first decode, then a cached-embedding decode.
    from PIL import Image
    img = os.path.join(args.work, "photo.png")
    Image.fromarray((rng.random((480, 640, 3)) * 255).astype(np.uint8)).save(img)
    run([args.atrous, "segment", model, img, "--point", "320,240", "-o", w("m.png"), "--json", w("r1.json"),
         "--save-embedding", w("photo.npy"), "--threads", str(args.threads)])
    run([args.atrous, "segment", model, img, "--point", "320,240", "--point", "100,50,0", "-o", w("m2.png"), "--json",
         w("r2.json"), "--embedding", w("photo.npy"), "--threads", str(args.threads)])
    r1, r2 = json.load(open(w("r1.json"))), json.load(open(w("r2.json")))
    print(f"\natrous segment (640x480 image): encode {r1['seconds']['encode']:.2f} s, first decode incl. planning and "
          f"postprocessing {r1['seconds']['decode'] * 1e3:.1f} ms; with --embedding: decode {r2['seconds']['decode'] * 1e3:.1f} ms")
    dec_bench = os.path.join(os.path.dirname(os.path.abspath(args.atrous)), "sam_decode_bench")
    if os.path.exists(dec_bench):
        print("\nSamPredictor::decode, steady state (sam_decode_bench):")
        print(run([dec_bench, model, w("emb.npy"), "--threads", str(args.threads)]).rstrip())
    print(f"uptime: {open('/proc/loadavg').read().split()[:3]} (load averages)")


if __name__ == "__main__":
    main()
