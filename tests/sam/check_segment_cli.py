"""End to end through the `atrous` binary with a converted SAM model.

Usage: /usr/bin/python3 check_segment_cli.py ATROUS MODEL_DIR   (MODEL_DIR: small/ of make_sam_cases.py)

- `atrous segment` with a point (multimask, JSON, overlay, --save-embedding), then with a
  box from the saved embedding (--embedding): masks equal to the PyTorch references
  wherever |logit| >= 1e-3, and the JSON consistent with the masks.
- clear errors: a point outside the image, no prompt, a malformed point, a bad label,
  an embedding saved for another image size.
- `atrous run --entry encode_image`, `--entry decode`, and `--entry prepare_image` then
  `--entry decode_prepared`, on .npy inputs built here from the reference preprocessing:
  outputs within 1e-3 of the references;
- `atrous bench --keep-inputs` on decode_prepared, and its dtype check.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import sam_reference as ref  # noqa: E402

ATROUS, D = sys.argv[1], sys.argv[2]
MODEL = os.path.join(D, "model.atrous")
IMAGE = os.path.join(D, "image.png")
cases = json.load(open(os.path.join(D, "cases.json")))
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(*args):
    p = subprocess.run([ATROUS, *args], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def mask_matches(png, logits, what):
    m = np.array(Image.open(png)) > 127
    sure = np.abs(logits) >= 1e-3
    wrong = int(((logits > 0) != m)[sure].sum())
    check(m.shape == logits.shape and wrong == 0, f"{what}: {wrong} of {int(sure.sum())} pixels differ from PyTorch")


tmp = tempfile.mkdtemp(prefix="sam_cli_")
out = lambda n: os.path.join(tmp, n)  # noqa: E731

# 1. one point, multimask, everything written.
c0 = cases["cases"][0]
x, y = c0["points"][0]
rc, log = run("segment", MODEL, IMAGE, "--point", f"{x},{y}", "--multimask", "-o", out("m.png"), "--overlay",
              out("ov.png"), "--json", out("r.json"), "--save-embedding", out("emb.npy"))
check(rc == 0, "segment --point --multimask exits 0\n" + log)
ref0 = np.load(os.path.join(D, "case0_logits.npy"))
r = json.load(open(out("r.json")))
check(len(r["masks"]) == 3 and r["best"] == int(np.argmax(np.load(os.path.join(D, "case0_iou.npy")))),
      "JSON lists 3 masks and the best is the highest reference IoU")
for m in r["masks"]:
    mask_matches(m["file"], ref0[m["index"]], f"multimask mask {m['index']}")
    if m["bbox"] is not None:
        ys, xs = np.nonzero(np.array(Image.open(m["file"])) > 127)
        check(m["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] and m["area"] == len(xs),
              f"JSON bbox/area of mask {m['index']}")
mask_matches(out("m.png"), ref0[r["best"]], "-o mask (the best)")
check(os.path.exists(out("ov.png")) and Image.open(out("ov.png")).size == (cases["width"], cases["height"]), "overlay written")
check(os.path.exists(out("emb.npy")) and os.path.exists(out("emb.npy.json")), "embedding + sidecar saved")
emb = np.load(out("emb.npy"))
want = np.load(os.path.join(D, "embedding.npy"))
check(np.abs(emb - want).max() <= 1e-3 * np.abs(want).max(), "saved embedding matches PyTorch")

# 2. a box from the cached embedding.
c2 = cases["cases"][2]
rc, log = run("segment", MODEL, IMAGE, "--box", ",".join(str(v) for v in c2["box"]), "-o", out("box.png"), "--embedding",
              out("emb.npy"), "--json", out("box.json"))
check(rc == 0 and "skipped (--embedding)" in log, "segment --box --embedding exits 0 and skips the encoder\n" + log)
mask_matches(out("box.png"), np.load(os.path.join(D, "case2_logits.npy"))[0], "box mask from the cached embedding")
check(json.load(open(out("box.json")))["seconds"]["encode"] == 0, "JSON: no encode time with --embedding")

# 3. errors.
W, H = cases["width"], cases["height"]
for args, text, what in [
    (["--point", f"{W},{5}"], "outside the", "point outside the image"),
    (["--point", "-1,5"], "outside the", "negative coordinate"),
    ([], "no prompt", "no prompt"),
    (["--point", "12,abc"], "expected X,Y or X,Y,LABEL", "malformed point"),
    (["--point", "12"], "expected X,Y or X,Y,LABEL", "point with one number"),
    (["--point", "1,2,3,4"], "expected X,Y or X,Y,LABEL", "point with four numbers"),
    (["--point", "5,5,2"], "LABEL must be 1", "bad label"),
    (["--box", "1,2,3"], "expected X0,Y0,X1,Y1", "malformed box"),
    (["--box", "50,50,10,10"], "top-left then bottom-right", "inverted box"),
]:
    rc, log = run("segment", MODEL, IMAGE, *args, "-o", out("e.png"))
    check(rc != 0 and text in log and "error:" in log, f"error for {what}: {log.strip()}")
small = out("small.png")
Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(small)
rc, log = run("segment", MODEL, small, "--point", "3,3", "--embedding", out("emb.npy"), "-o", out("e.png"))
check(rc != 0 and "was computed for a" in log, "error for an embedding of another image size: " + log.strip())

# 4. atrous run on each entry point.
img = np.array(Image.open(IMAGE).convert("RGB"))
S = cases["config"]["img_size"]
t = ref.ResizeLongestSide(S)
resized = t.apply_image(img).astype(np.float32)
x = (resized - np.array([123.675, 116.28, 103.53], np.float32)) / np.array([58.395, 57.12, 57.375], np.float32)
pad = np.zeros((S, S, 3), np.float32)
pad[:x.shape[0], :x.shape[1]] = x
np.save(out("image.npy"), pad.transpose(2, 0, 1)[None].copy())
rc, log = run("run", MODEL, "--entry", "encode_image", "--input", "image=" + out("image.npy"), "--output-dir", out("enc"))
check(rc == 0, "run --entry encode_image\n" + log)
got = np.load(out("enc/image_embeddings.npy"))
check(np.abs(got - want).max() <= 1e-3 * np.abs(want).max(), "run encode_image output matches PyTorch")
coords = t.apply_coords(np.array([[x0, y0] for x0, y0 in c0["points"]] + [[0, 0]], float), img.shape[:2])
np.save(out("coords.npy"), coords.astype(np.float32)[None])
np.save(out("labels.npy"), np.array([[1, -1]], np.float32))
M = 4 * S // 16
np.save(out("mask.npy"), np.zeros((1, 1, M, M), np.float32))
np.save(out("has.npy"), np.zeros((1,), np.float32))
rc, log = run("run", MODEL, "--entry", "decode", "--input", "image_embeddings=" + os.path.join(D, "embedding.npy"),
              "--input", "point_coords=" + out("coords.npy"), "--input", "point_labels=" + out("labels.npy"),
              "--input", "mask_input=" + out("mask.npy"), "--input", "has_mask_input=" + out("has.npy"),
              "--output-dir", out("dec"))
check(rc == 0, "run --entry decode\n" + log)
low = np.load(out("dec/low_res_masks.npy"))
ref_low = np.load(os.path.join(D, "case0_low_res.npy"))
check(low.shape == (1, 4, M, M) and np.abs(low[0, 1:] - ref_low).max() <= 1e-3 * np.abs(ref_low).max(),
      "run decode: masks 1..3 match PyTorch's multimask output")
iou = np.load(out("dec/iou_predictions.npy"))
ref_iou = np.load(os.path.join(D, "case0_iou.npy"))
check(np.abs(iou[0, 1:] - ref_iou).max() <= 1e-3 * np.abs(ref_iou).max(), "run decode: IoU 1..3 match")
# The same prompt through prepare_image and decode_prepared.
rc, log = run("run", MODEL, "--entry", "prepare_image", "--input", "image_embeddings=" + os.path.join(D, "embedding.npy"),
              "--output-dir", out("prep"))
check(rc == 0, "run --entry prepare_image\n" + log)
prep = ["--input", "point_coords=" + out("coords.npy"), "--input", "point_labels=" + out("labels.npy")]
for name in ("image_tokens", "image_tokens_pe", "keys0", "values0"):
    prep += ["--input", name + "=" + out("prep/" + name + ".npy")]
rc, log = run("run", MODEL, "--entry", "decode_prepared", *prep, "--output-dir", out("decp"))
check(rc == 0, "run --entry decode_prepared\n" + log)
if rc == 0:
    low = np.load(out("decp/low_res_masks.npy"))
    iou = np.load(out("decp/iou_predictions.npy"))
    check(low.shape == (1, 4, M, M) and np.abs(low[0, 1:] - ref_low).max() <= 1e-3 * np.abs(ref_low).max(),
          "run decode_prepared: masks 1..3 match PyTorch's multimask output")
    check(np.abs(iou[0, 1:] - ref_iou).max() <= 1e-3 * np.abs(ref_iou).max(), "run decode_prepared: IoU 1..3 match")
# `atrous bench` on decode_prepared with the inputs staged once (--keep-inputs), and an
# input of the wrong dtype refused before anything is copied into the arena.
rc, log = run("bench", MODEL, "--entry", "decode_prepared", "--keep-inputs", "--runs", "3", "--json", *prep)
check(rc == 0 and json.loads(log[log.index("{"):])["latency_s"]["median"] > 0, "bench --keep-inputs runs\n" + log[:2000])
np.save(out("tokens_i32.npy"), np.zeros(np.load(out("prep/image_tokens.npy")).shape, np.int32))
rc, log = run("bench", MODEL, "--entry", "decode_prepared", "--keep-inputs", "--runs", "1", *prep,
              "--input", "image_tokens=" + out("tokens_i32.npy"))
check(rc != 0 and "input 'image_tokens' is i32" in log, "bench --keep-inputs refuses a wrong dtype\n" + log)
# --input errors: each input once, every input given, the model's dtype.
rc, log = run("run", MODEL, "--entry", "decode", "--input", "image_embeddings=" + os.path.join(D, "embedding.npy"),
              "--output-dir", out("dec_missing"))
check(rc != 0 and "input 'point_coords' was not given" in log, "run: a missing --input is named\n" + log)
rc, log = run("run", MODEL, "--entry", "encode_image", "--input", "image=" + out("image.npy"), "--input",
              "image=" + out("image.npy"), "--output-dir", out("enc_twice"))
check(rc != 0 and "input 'image' is given twice" in log, "run: an input given twice is refused\n" + log)
np.save(out("image_i64.npy"), np.zeros((1, 3, S, S), np.int64))
rc, log = run("run", MODEL, "--entry", "encode_image", "--input", "image=" + out("image_i64.npy"), "--output-dir", out("enc_i64"))
check(rc != 0 and "holds i64, input 'image' must be f32" in log, "run: a .npy of the wrong dtype is refused\n" + log)

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
