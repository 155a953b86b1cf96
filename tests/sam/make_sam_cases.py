"""Reference data for the Segment Anything tests, computed live with PyTorch.

Usage: /usr/bin/python3 make_sam_cases.py OUTDIR [--vitb]

Writes, under OUTDIR:
  ops/          WindowAttention, FeedForward, PromptEncoding and MultiHeadAttention
                (the folded kernel's shapes) cases in refcase.py's format; references
                in float64 from the float32 inputs.
  resize/       PIL Image.resize(BILINEAR) of random uint8 RGB images (down and up).
  small/        a small SAM (same structure as vit_b) with random weights: sam.pth
                (torch.save of the state dict, official keys), image.png, the
                SamPredictor embedding and, per prompt case, the low-res logits,
                IoU predictions and postprocessed logits. References in float64.
  vitb/         (--vitb) the same for the official vit_b size, one prompt case,
                PyTorch in float32 as a user runs it (~1 min on 2 cores).
cases.json in each model folder lists the prompts (original-image pixels).
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
import sam_reference as ref  # noqa: E402
from refcase import CaseWriter, node  # noqa: E402

torch.set_grad_enabled(False)
torch.set_num_threads(2)
OUT = sys.argv[1]
D64 = torch.float64


def save(path, a):
    np.save(path, np.ascontiguousarray(a.detach().cpu().numpy() if torch.is_tensor(a) else a))


def f32(t):
    return t.to(torch.float32)


# ---- op cases ---------------------------------------------------------------------------
def op_cases():
    torch.manual_seed(1)
    W = CaseWriter(os.path.join(OUT, "ops"))

    def wcase(name, nodes, inputs, consts, outputs, tol=1e-4):
        cast = lambda d: {k: f32(v) for k, v in d.items()}  # noqa: E731
        W.case(name, nodes, cast(inputs), cast(consts), cast(outputs), tol=tol)

    # WindowAttention = Block's norm-free attention part: residual + window_unpartition(attn(window_partition(x))).
    def win_case(name, b, h, w, c, heads, window, rel=True, rel_len=None, qkv_bias=True, residual=True):
        attn = ref.Attention(c, heads, qkv_bias=qkv_bias, use_rel_pos=rel,
                             input_size=(window, window) if window else (h, w)).double()
        for p in attn.parameters():
            p.copy_(torch.randn(p.shape, dtype=D64) * (p.shape[-1] ** -0.5 if p.dim() == 2 else 0.2))
        if rel and rel_len:  # stored tables of another length: get_rel_pos interpolates
            hd = c // heads
            attn.rel_pos_h = torch.nn.Parameter(torch.randn(rel_len[0], hd, dtype=D64) * 0.3)
            attn.rel_pos_w = torch.nn.Parameter(torch.randn(rel_len[1], hd, dtype=D64) * 0.3)
        x = torch.randn(b, h, w, c)
        r = torch.randn(b, h, w, c)
        xd = x.double()
        if window:
            xw, pad_hw = ref.window_partition(xd, window)
            y = ref.window_unpartition(attn(xw), window, pad_hw, (h, w))
        else:
            y = attn(xd)
        if residual:
            y = y + r.double()
        consts = {"qkv.weight": attn.qkv.weight, "proj.weight": attn.proj.weight, "proj.bias": attn.proj.bias}
        ins = ["x", "qkv.weight", None, "proj.weight", "proj.bias", None, None, "r" if residual else None]
        if qkv_bias:
            consts["qkv.bias"] = attn.qkv.bias
            ins[2] = "qkv.bias"
        if rel:
            consts["rel_pos_h"] = attn.rel_pos_h
            consts["rel_pos_w"] = attn.rel_pos_w
            ins[5], ins[6] = "rel_pos_h", "rel_pos_w"
        inputs = {"x": x}
        if residual:
            inputs["r"] = r
        wcase(name, [node("attn", "WindowAttention", ins, {"num_heads": heads, "window_size": window}, ["y"])],
              inputs, consts, {"y": y})

    win_case("win_pad_16_w6", 1, 16, 16, 48, 3, 6)
    win_case("win_exact_14_w7_b2", 2, 14, 14, 32, 2, 7)
    win_case("win_window_larger_than_grid", 1, 5, 9, 32, 4, 14)
    win_case("win_no_rel_no_residual", 1, 11, 13, 24, 2, 4, rel=False, residual=False)
    win_case("win_no_qkv_bias_pad", 1, 10, 10, 32, 2, 4, qkv_bias=False)
    win_case("win_rel_interpolated", 1, 12, 12, 32, 2, 5, rel_len=(13, 7))
    win_case("global_16x16", 1, 16, 16, 48, 3, 0)
    win_case("global_nonsquare_b2", 2, 9, 23, 32, 2, 0)
    win_case("global_rel_interpolated", 1, 10, 12, 32, 1, 0, rel_len=(31, 9))
    win_case("global_1x1", 1, 1, 1, 16, 1, 0)
    win_case("global_tiles_70x9", 1, 70, 9, 32, 2, 0)

    # FeedForward = residual + lin2(act(lin1(x))).
    def ffn_case(name, shape, c, f, co, act="Gelu", bias=True, residual=True, w2_input=False):
        x = torch.randn(*shape, c)
        w1, w2 = torch.randn(f, c) * c ** -0.5, torch.randn(co, f) * f ** -0.5
        b1, b2 = torch.randn(f) * 0.5, torch.randn(co) * 0.5
        r = torch.randn(*shape, co)
        h = x.double() @ w1.double().T + (b1.double() if bias else 0)
        h = F.gelu(h) if act == "Gelu" else F.relu(h) if act == "Relu" else torch.tanh(h)
        y = h @ w2.double().T + (b2.double() if bias else 0) + (r.double() if residual else 0)
        consts = {"w1": w1} if w2_input else {"w1": w1, "w2": w2}
        if bias:
            consts.update({"b1": b1, "b2": b2})
        ins = ["x", "w1", "b1" if bias else None, "w2", "b2" if bias else None] + (["r"] if residual else [])
        inputs = {"x": x, "w2": w2} if w2_input else {"x": x}
        if residual:
            inputs["r"] = r
        wcase(name, [node("ffn", "FeedForward", ins, {"activation": act}, ["y"])], inputs, consts, {"y": y})

    ffn_case("ffn_gelu_1row", (1,), 16, 64, 16)
    ffn_case("ffn_gelu_4d", (1, 5, 7), 48, 192, 48)
    ffn_case("ffn_relu_odd_nobias", (13,), 33, 65, 17, act="Relu", bias=False, residual=False)
    ffn_case("ffn_gelu_chunks", (1100,), 32, 96, 40)
    ffn_case("ffn_tanh", (2, 9), 8, 24, 8, act="Tanh")
    # w2 computed by the graph (an input here), as SAM's mask head has it: the second
    # upscaling conv and the product with the block-diagonal hypernetwork outputs.
    ffn_case("ffn_w2_input_mask_head", (1, 1100), 16, 32, 12, bias=False, residual=False, w2_input=True)
    ffn_case("ffn_w2_input_bias_residual", (37,), 24, 40, 20, w2_input=True)
    ffn_case("ffn_gelu_large_values", (3, 4), 16, 32, 16)

    # PromptEncoding: points, padding and box corners.
    def prompt_case(name, n, f, size, labels):
        coords = torch.rand(1, n, 2) * torch.tensor([size[1], size[0]])
        lab = torch.tensor([labels], dtype=torch.float32)
        g = torch.randn(2, f)
        emb = torch.randn(4, 2 * f)
        nap = torch.randn(2 * f)
        c = (coords.double() + 0.5) / torch.tensor([size[1], size[0]], dtype=D64)
        c = (2 * c - 1) @ g.double() * (2 * np.pi)
        pe = torch.cat([torch.sin(c), torch.cos(c)], dim=-1)
        for i, l in enumerate(labels):
            pe[0, i] = nap.double() if l == -1 else pe[0, i] + emb[int(l)].double()
        wcase(name, [node("pe", "PromptEncoding", ["coords", "labels", "g", "emb", "nap"],
                          {"width": float(size[1]), "height": float(size[0])}, ["y"])],
              {"coords": coords, "labels": lab}, {"g": g, "emb": emb, "nap": nap}, {"y": pe})

    prompt_case("prompt_points_pad", 4, 16, (1024, 1024), [1, 0, 1, -1])
    prompt_case("prompt_box_point", 3, 8, (256, 256), [0, 2, 3])
    prompt_case("prompt_one", 1, 128, (1024, 1024), [1])
    prompt_case("prompt_nonsquare", 5, 4, (100, 300), [3, 2, 1, 0, -1])

    # MultiHeadAttention with a short side (segment-anything's decoder Attention).
    def mha_case(name, b, lq, lk, dim, heads, downsample, self_attn=False, residual=False):
        m = ref.DecoderAttention(dim, heads, downsample).double()
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, dtype=D64) * (p.shape[-1] ** -0.5 if p.dim() == 2 else 0.3))
        q = torch.randn(b, lq, dim)
        k = q if self_attn else torch.randn(b, lk, dim)
        v = q if self_attn else torch.randn(b, lk, dim)
        y = m(q.double(), k.double(), v.double())
        consts, ins = {}, ["q", None if self_attn else "k", None if self_attn else "v"]
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            lin = getattr(m, n)
            consts[n + ".weight"], consts[n + ".bias"] = lin.weight, lin.bias
            ins += [n + ".weight", n + ".bias"]
        inputs = {"q": q} if self_attn else {"q": q, "k": k, "v": v}
        if residual:  # input 12 (after the absent bias): y = attention + residual
            inputs["r"] = torch.randn(b, lq, dim)
            ins += [None, "r"]
            y = y + inputs["r"].double()
        wcase(name, [node("attn", "MultiHeadAttention", ins, {"num_heads": heads}, ["y"])], inputs, consts, {"y": y})

    mha_case("mha_short_keys_i2t", 1, 300, 7, 64, 2, 2)
    mha_case("mha_short_keys_b2", 2, 129, 3, 48, 3, 1)
    mha_case("mha_short_queries_t2i", 1, 7, 500, 64, 2, 2)
    mha_case("mha_short_queries_key_tiles", 1, 3, 5000, 32, 2, 1)
    mha_case("mha_short_self", 1, 6, 6, 64, 2, 1, self_attn=True)
    mha_case("mha_short_queries_b2", 2, 2, 33, 32, 1, 2)
    mha_case("mha_short_keys_residual_b2", 2, 300, 7, 64, 2, 2, residual=True)
    mha_case("mha_short_queries_residual_b2", 2, 7, 500, 64, 2, 2, residual=True)
    W.finish()


# ---- PIL resize cases ----------------------------------------------------------------------
def resize_cases():
    d = os.path.join(OUT, "resize")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(3)
    sizes = [((200, 300), (171, 256)), ((480, 640), (768, 1024)), ((1000, 1500), (683, 1024)), ((37, 53), (715, 1024)),
             ((129, 7), (1024, 56)), ((50, 50), (50, 50)), ((3000, 20), (1024, 7))]
    index = []
    for i, ((h, w), (nh, nw)) in enumerate(sizes):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i % 2:  # smooth images too, where rounding differences would show
            yy, xx = np.mgrid[0:h, 0:w]
            img = ((np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) % 256], -1)).astype(np.uint8))
        out = np.array(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
        np.save(os.path.join(d, f"in_{i}.npy"), img)
        np.save(os.path.join(d, f"out_{i}.npy"), out)
        index.append({"in": f"in_{i}.npy", "out": f"out_{i}.npy", "width": nw, "height": nh})
    with open(os.path.join(d, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


# ---- whole-model cases ------------------------------------------------------------------------
def test_image(h, w, seed):
    """A smooth image with some structure (gradients, a disc, a bar) plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w * 200, yy / h * 180, 100 + 50 * np.sin(xx / 17) * np.cos(yy / 23)], -1)
    disc = (xx - 0.6 * w) ** 2 + (yy - 0.4 * h) ** 2 < (0.2 * min(h, w)) ** 2
    img[disc] = [230, 40, 40]
    img[int(0.7 * h):int(0.8 * h), int(0.1 * w):int(0.5 * w)] = [20, 200, 60]
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def model_cases(name, cfg, image_hw, prompts, dtype, seed):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    sam = ref.build_sam(cfg)
    ref.randomize(sam, seed)
    if name == "small":  # stored tables of other lengths: block 0 (window) and block 3 (global) interpolate
        hd = cfg["embed_dim"] // cfg["heads"]
        g = torch.Generator().manual_seed(seed + 1)
        blk = sam.image_encoder.blocks
        blk[0].attn.rel_pos_h = torch.nn.Parameter(torch.randn(15, hd, generator=g) * 0.3)
        blk[0].attn.rel_pos_w = torch.nn.Parameter(torch.randn(9, hd, generator=g) * 0.3)
        blk[3].attn.rel_pos_h = torch.nn.Parameter(torch.randn(41, hd, generator=g) * 0.3)
        blk[3].attn.rel_pos_w = torch.nn.Parameter(torch.randn(25, hd, generator=g) * 0.3)
    torch.save(sam.state_dict(), os.path.join(d, "sam.pth"))
    img = test_image(*image_hw, seed)
    Image.fromarray(img).save(os.path.join(d, "image.png"))
    sam = sam.to(dtype)
    pred = ref.SamPredictor(sam, dtype)
    t0 = time.time()
    pred.set_image(img)
    t_enc = time.time() - t0
    save(os.path.join(d, "embedding.npy"), f32(pred.features))
    out = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
           "image": "image.png", "width": image_hw[1], "height": image_hw[0],
           "input_size": list(pred.input_size), "encode_seconds": t_enc, "cases": []}
    prev_low = None
    for i, p in enumerate(prompts):
        kw = {"multimask_output": p["multimask"]}
        if "points" in p:
            kw["point_coords"] = np.array(p["points"], dtype=np.float32)
            kw["point_labels"] = np.array(p["labels"], dtype=np.int64)
        if "box" in p:
            kw["box"] = np.array(p["box"], dtype=np.float32)
        if p.get("mask_from_previous"):
            kw["mask_input"] = prev_low
            np.save(os.path.join(d, f"case{i}_mask_input.npy"), prev_low.astype(np.float32))
        t0 = time.time()
        logits, iou, low = pred.predict(**kw)
        t_dec = time.time() - t0
        save(os.path.join(d, f"case{i}_low_res.npy"), f32(low))
        save(os.path.join(d, f"case{i}_iou.npy"), f32(iou))
        save(os.path.join(d, f"case{i}_logits.npy"), f32(logits))
        best = int(torch.argmax(iou))
        prev_low = f32(low[best:best + 1]).numpy()
        entry = dict(p)
        entry["decode_seconds"] = t_dec
        out["cases"].append(entry)
    with open(os.path.join(d, "cases.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"{name}: encode {t_enc:.2f} s ({dtype}), {len(prompts)} prompts")


SMALL_PROMPTS = [
    {"name": "one point", "points": [[180, 80]], "labels": [1], "multimask": True},
    {"name": "points with negatives", "points": [[180, 80], [60, 150], [250, 20], [30, 30], [299, 199]],
     "labels": [1, 1, 0, 0, 1], "multimask": False},
    {"name": "box", "box": [120, 40, 240, 130], "multimask": False},
    {"name": "box and point", "points": [[200, 90]], "labels": [0], "box": [100, 30, 260, 160], "multimask": True},
    {"name": "mask input and point", "points": [[170, 90]], "labels": [1], "mask_from_previous": True,
     "multimask": False},
    {"name": "many points", "points": [[10 + 23 * k, 7 + 15 * k] for k in range(12)],
     "labels": [k % 2 for k in range(12)], "multimask": True},
]
VITB_PROMPTS = [
    {"name": "box and point", "points": [[400, 190]], "labels": [1], "box": [250, 90, 520, 300], "multimask": True},
]

if __name__ == "__main__":
    if "--vitb" in sys.argv:
        model_cases("vitb", ref.VIT_B, (480, 640), VITB_PROMPTS, torch.float32, 7)
    else:
        op_cases()
        resize_cases()
        model_cases("small", ref.SMALL, (200, 300), SMALL_PROMPTS, D64, 5)
