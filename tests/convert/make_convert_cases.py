#!/usr/bin/python3
"""Writes the `atrous convert` test cases into OUTDIR (default: convert_cases).

Round-trip cases (roundtrip.py): seeded PyTorch models described to the
generic JSON recipe (--arch graph), saved as .pth and .safetensors with
reference inputs, outputs and intermediates:
  convnet          Conv2d/BatchNorm/ReLU, strided and dilated depthwise conv,
                   ConvTranspose2d, residual adds, global pool + Linear head,
                   image metadata (mean/std, class names, palette);
  encoder          a pre-norm transformer encoder stack written with the basic
                   nodes (LayerNorm, Linear, Reshape/Transpose/MatMul/Softmax
                   attention, Linear+GELU MLP, residual adds), depth inferred;
  encoder_mha      the same stack with nn.MultiheadAttention -> MultiHeadAttention;
  br_block         GCN's Boundary Refinement as one BoundaryRefinement node (params).
Bad inputs (OUTDIR/bad/): damaged or hostile weight files and state dicts that do
not fit the convnet recipe, each listed in the manifest with the text its error
must contain.
"""
import copy
import io
import os
import pickle
import shutil
import sys
import zipfile

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip as rt  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else "convert_cases"


# ---------------------------------------------------------------- conv net

class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = nn.Conv2d(8, 5, 1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = self.stem(x)
        z = F.relu(self.bn(self.down(y)))
        z = z + self.dw(z)
        seg = self.head(self.up(z) + y)
        cls = self.fc(z.mean((2, 3)))
        return seg, cls


def pads(p):
    return {"pad_top": p, "pad_left": p, "pad_bottom": p, "pad_right": p}


CONVNET_JSON = {
    "name": "tiny_convnet",
    "vars": {"bn_eps": 1e-5},
    "inputs": [{"name": "x", "dtype": "f32", "shape": [-1, 3, -1, -1]}],
    "nodes": [
        {"op": "Conv2d", "params": "stem.0", "attrs": pads(1), "inputs": ["x"]},
        {"op": "BatchNorm", "params": "stem.1", "attrs": {"eps": "$bn_eps"}, "inputs": ["stem.0"]},
        {"name": "stem.2", "op": "Unary", "attrs": {"kind": "Relu"}, "inputs": ["stem.1"]},
        {"op": "Conv2d", "params": "down", "attrs": dict(pads(1), stride_h=2, stride_w=2), "inputs": ["stem.2"]},
        {"op": "BatchNorm", "params": "bn", "attrs": {"eps": "$bn_eps"}, "inputs": ["down"]},
        {"name": "relu", "op": "Unary", "attrs": {"kind": "Relu"}, "inputs": ["bn"]},
        {"name": "dw", "op": "Conv2d", "params": "dw.0",
         "attrs": dict(pads(2), dilation_h=2, dilation_w=2, groups=16, activation="Relu"), "inputs": ["relu"]},
        {"name": "res", "op": "Binary", "attrs": {"kind": "Add"}, "inputs": ["relu", "dw"]},
        {"op": "ConvTranspose2d", "params": "up", "attrs": {"stride_h": 2, "stride_w": 2}, "inputs": ["res"]},
        {"name": "skip", "op": "Binary", "attrs": {"kind": "Add"}, "inputs": ["up", "stem.2"]},
        {"op": "Conv2d", "params": "head", "inputs": ["skip"]},
        {"name": "pool", "op": "GlobalPool", "attrs": {"kind": "Avg"}, "inputs": ["res"]},
        {"name": "flat", "op": "Reshape", "attrs": {"shape": [0, -1]}, "inputs": ["pool"]},
        {"op": "Linear", "params": "fc", "inputs": ["flat"]},
    ],
    "outputs": [{"value": "head", "name": "seg"}, {"value": "fc", "name": "cls"}],
    "value_scale": 1 / 255,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "postprocess": "argmax_classes",
    "scores_output": "seg",
    "class_names": ["background", "road", "car", "tree", "sky"],
    "palette": [[0, 0, 0], [128, 64, 128], [0, 0, 142], [107, 142, 35], [70, 130, 180]],
}

CONVNET_INTERMEDIATES = ["stem.0", "stem.1", "stem.2", "down", "bn", "dw", "up"]


# ---------------------------------------------------------------- boundary refinement

class BRBlock(nn.Module):
    """GCN's Boundary Refinement, x + conv2(relu(conv1(x))), with 5 -> 7 -> 5 channels."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(5, 7, 3, padding=1)
        self.conv2 = nn.Conv2d(7, 5, (3, 5), padding=(1, 2))

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class BRNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 5, 3, padding=1)
        self.br = BRBlock()

    def forward(self, x):
        return self.br(self.stem(x))


BR_JSON = {
    "name": "br_block",
    "inputs": [{"name": "x", "dtype": "f32", "shape": [-1, 3, -1, -1]}],
    "nodes": [{"op": "Conv2d", "params": "stem", "attrs": pads(1), "inputs": ["x"]},
              {"op": "BoundaryRefinement", "params": "br", "inputs": ["stem"]}],
    "outputs": [{"value": "br", "name": "y"}],
}


# ---------------------------------------------------------------- transformer encoder

class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x):
        b, n, d = x.shape
        split = lambda t: t.view(b, n, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        a = torch.softmax(q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d))


class TorchMHA(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, mha):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True) if mha else Attention(dim, heads)
        self.mha = mha
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        h = self.norm1(x)
        x = x + (self.attn(h, h, h, need_weights=False)[0] if self.mha else self.attn(h))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, in_dim=12, dim=32, heads=4, hidden=64, depth=3, classes=5, mha=False):
        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, mha) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, tokens):
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


def encoder_json(mha):
    split = []
    for p in "qkv":
        split += [
            {"name": "{prefix}.attn.%sh" % p, "op": "Reshape", "attrs": {"shape": [0, 0, "$heads", -1]},
             "inputs": ["{prefix}.attn.%s" % p]},
            {"name": "{prefix}.attn.%st" % p, "op": "Transpose", "attrs": {"perm": [0, 2, 1, 3]},
             "inputs": ["{prefix}.attn.%sh" % p]},
        ]
    manual = [{"op": "Linear", "params": "{prefix}.attn.%s" % p, "inputs": ["{prefix}.norm1"]} for p in "qkv"] + split + [
        {"name": "{prefix}.attn.scores", "op": "MatMul", "attrs": {"transpose_b": True, "alpha": "$scale"},
         "inputs": ["{prefix}.attn.qt", "{prefix}.attn.kt"]},
        {"name": "{prefix}.attn.probs", "op": "Softmax", "attrs": {"axis": -1}, "inputs": ["{prefix}.attn.scores"]},
        {"name": "{prefix}.attn.ctx", "op": "MatMul", "inputs": ["{prefix}.attn.probs", "{prefix}.attn.vt"]},
        {"name": "{prefix}.attn.ctxt", "op": "Transpose", "attrs": {"perm": [0, 2, 1, 3]},
         "inputs": ["{prefix}.attn.ctx"]},
        {"name": "{prefix}.attn.merged", "op": "Reshape", "attrs": {"shape": [0, 0, -1]},
         "inputs": ["{prefix}.attn.ctxt"]},
        {"name": "{prefix}.attn", "op": "Linear", "params": "{prefix}.attn.proj", "inputs": ["{prefix}.attn.merged"]},
    ]
    fused = [{"op": "MultiHeadAttention", "params": "{prefix}.attn", "attrs": {"num_heads": "$heads"},
              "inputs": ["{prefix}.norm1"]}]
    return {
        "name": "tiny_encoder_mha" if mha else "tiny_encoder",
        "vars": {"heads": 4, "dim": {"shape_of": "embed.weight", "axis": 0},
                 "in_dim": {"shape_of": "embed.weight", "axis": 1}, "scale": "$(1 / sqrt(dim / heads))"},
        "inputs": [{"name": "tokens", "shape": [-1, -1, "$in_dim"]}],
        "nodes": [
            {"op": "Linear", "params": "embed", "inputs": ["tokens"]},
            {"repeat": {"prefix": "blocks.{i}", "count": "auto", "input": "embed", "as": "encoded", "nodes": [
                {"op": "LayerNorm", "params": "{prefix}.norm1", "inputs": ["{prev}"]},
            ] + (fused if mha else manual) + [
                {"name": "{prefix}.res1", "op": "Binary", "attrs": {"kind": "Add"}, "inputs": ["{prev}", "{prefix}.attn"]},
                {"op": "LayerNorm", "params": "{prefix}.norm2", "inputs": ["{prefix}.res1"]},
                {"name": "{prefix}.mlp.act", "op": "Linear", "params": "{prefix}.mlp.fc1", "attrs": {"activation": "Gelu"},
                 "inputs": ["{prefix}.norm2"]},
                {"op": "Linear", "params": "{prefix}.mlp.fc2", "inputs": ["{prefix}.mlp.act"]},
                {"name": "{prefix}", "op": "Binary", "attrs": {"kind": "Add"}, "inputs": ["{prefix}.res1", "{prefix}.mlp.fc2"]},
            ]}},
            {"op": "LayerNorm", "params": "norm", "inputs": ["encoded"]},
            {"op": "Linear", "params": "head", "inputs": ["norm"]},
        ],
        "outputs": [{"value": "head", "name": "logits"}],
    }


ENCODER_INTERMEDIATES = ["embed", "blocks.0.norm1", "blocks.0.attn", "blocks.0.norm2", "blocks.0.mlp.act",
                         "blocks.0.mlp.fc2", "blocks.0", "blocks.1.attn", "blocks.1", "blocks.2", "norm"]


# ---------------------------------------------------------------- bad inputs

def bad_inputs(convnet_dir, bad):
    """Files and state dicts that must fail, with the text each message must contain."""
    d = os.path.join(OUT, "bad")
    os.makedirs(d, exist_ok=True)
    pth = os.path.join(convnet_dir, "model.pth")
    data = open(pth, "rb").read()

    def write(name, blob):
        with open(os.path.join(d, name), "wb") as f:
            f.write(blob)
        return os.path.join(d, name)

    bad.append({"name": "truncated zip", "weights": write("truncated.pth", data[: len(data) * 6 // 10]),
                "contains": ["truncated.pth", "truncated or damaged"]})
    cd = data.rfind(b"PK\x01\x02")
    bad.append({"name": "corrupt zip", "weights": write("corrupt.pth", data[:cd] + b"XX\x01\x02" + data[cd + 4:]),
                "contains": ["corrupt.pth", "cannot read the zip archive"]})

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
        z.writestr("archive/version", "3\n")
    bad.append({"name": "pickle with unexpected globals", "weights": write("evil.pth", buf.getvalue()),
                "contains": ["evil.pth", "global 'posix.system' is not allowed"]})

    sd = torch.load(pth)
    lying = os.path.join(d, "lying.safetensors")
    rt.save_safetensors(sd, lying)
    blob = bytearray(open(lying, "rb").read())
    # Move the first tensor's end offset far past the data: the header lies.
    import json
    import struct
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(bytes(blob[8:8 + n]))
    first = next(iter(header))
    header[first]["data_offsets"][1] += 1 << 20
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    write("lying.safetensors", struct.pack("<Q", len(hb)) + hb + bytes(blob[8 + n:]))
    bad.append({"name": "safetensors header lying about offsets", "weights": lying,
                "contains": ["lying.safetensors", "tensor '" + first + "'", "run past the end of the file"]})

    # State dicts that load but do not fit the recipe: every problem at once.
    wrong = copy.copy(sd)
    wrong["stem.0.weight"] = torch.randint(0, 3, (8, 3, 3, 3))         # dtype: integer conv weight
    del wrong["bn.running_var"]                                        # missing
    wrong["fc.weights"] = wrong.pop("fc.weight")                       # missing + unexpected
    wrong["head.bias"] = torch.zeros(6)                                 # shape vs head.weight [5, 8, 1, 1]
    wrong["dw.0.weight"] = torch.zeros(16, 1, 3)                        # rank
    wrong["extra.scale"] = torch.ones(3)                                # unexpected
    path = os.path.join(d, "mismatched.pth")
    torch.save(wrong, path)
    bad.append({"name": "missing, unexpected, dtype and shape problems at once", "weights": path,
                "contains": ["dtype mismatch for 'stem.0.weight': the file has i64, the recipe expects a float tensor",
                             "missing key 'bn.running_var' (expected shape [16])",
                             "missing key 'fc.weight'",
                             "shape mismatch for 'head.bias': the file has [6], the recipe expects [5]",
                             "shape mismatch for 'dw.0.weight': the file has [16, 1, 3], the recipe expects [*, *, *, *]",
                             "unexpected key 'fc.weights' [4, 16] f32",
                             "unexpected key 'extra.scale' [3] f32",
                             "7 problems with the weights for recipe 'graph'; nothing was written"]})


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    cases = []

    rt.seed(0)
    net = rt.randomize_(ConvNet(), seed=1).eval()
    x = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(2))
    cases.append(rt.write_case(OUT, "convnet", net, {"x": x}, "graph", CONVNET_JSON, ["seg", "cls"],
                               intermediates=CONVNET_INTERMEDIATES, dtypes=["f32", "f16", "bf16"]))

    # The node type with its parameter-table layout; 40 columns: the fused kernel runs it.
    rt.seed(0)
    br = rt.randomize_(BRNet(), seed=5).eval()
    x = torch.randn(2, 3, 9, 40, generator=torch.Generator().manual_seed(6))
    cases.append(rt.write_case(OUT, "br_block", br, {"x": x}, "graph", BR_JSON, ["y"], intermediates=["stem"],
                               dtypes=["f32", "f16"]))

    for mha in (False, True):
        rt.seed(0)
        enc = rt.randomize_(Encoder(mha=mha), seed=3).eval()
        tokens = torch.randn(2, 7, 12, generator=torch.Generator().manual_seed(4))
        case = rt.write_case(OUT, "encoder_mha" if mha else "encoder", enc, {"tokens": tokens}, "graph",
                             encoder_json(mha), ["logits"], intermediates=ENCODER_INTERMEDIATES, dtypes=["f32", "f16"])
        if mha:
            case["requires_ops"] = ["MultiHeadAttention"]
        cases.append(case)

    bad = []
    bad_inputs(os.path.join(OUT, "convnet"), bad)
    rt.write_manifest(OUT, cases, {"bad": bad})


if __name__ == "__main__":
    main()
