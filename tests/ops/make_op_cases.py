"""Reference cases for the basic ops, computed live with PyTorch.

Usage: /usr/bin/python3 make_op_cases.py OUTDIR
Each case is checked by op_cases_test.cpp against every kernel of its op.
Shapes are deliberately awkward: size 1, odd sizes, channel counts that are not
multiples of 16, strides, dilations larger than the map, groups and depthwise.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
from refcase import CaseWriter, node  # noqa: E402

torch.manual_seed(0)
torch.set_grad_enabled(False)
W = CaseWriter(sys.argv[1])

ACT = {
    "Relu": F.relu, "Relu6": F.relu6, "Gelu": F.gelu, "GeluTanh": lambda x: F.gelu(x, approximate="tanh"),
    "Silu": F.silu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Elu": F.elu, "Softplus": F.softplus,
    "HardSwish": F.hardswish, "LeakyRelu": lambda x: F.leaky_relu(x, 0.1),
    "Exp": torch.exp, "Neg": torch.neg, "Abs": torch.abs, "Square": torch.square,
    "ReluSquare": lambda x: F.relu(x) ** 2,
}


def rnd(*s, scale=1.0):
    return torch.randn(*s) * scale


# ---- Conv2d -------------------------------------------------------------------
def conv_case(name, n, c, h, w, o, k, stride=(1, 1), pad=(0, 0, 0, 0), dil=(1, 1), groups=1, bias=True,
              act=None, residual=False):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rnd(n, c, h, w)
    wt = rnd(o, c // groups, kh, kw, scale=(1.0 / (c // groups * kh * kw)) ** 0.5)
    b = rnd(o) if bias else None
    pt, pl, pb, pr = pad
    y = F.conv2d(F.pad(x, (pl, pr, pt, pb)), wt, b, stride=stride, dilation=dil, groups=groups)
    attrs = {"stride_h": stride[0], "stride_w": stride[1], "pad_top": pt, "pad_left": pl, "pad_bottom": pb,
             "pad_right": pr, "dilation_h": dil[0], "dilation_w": dil[1], "groups": groups}
    consts = {"w": wt}
    ins = ["x", "w", "b" if bias else None]
    inputs = {"x": x}
    if bias:
        consts["b"] = b
    if residual:
        r = rnd(*y.shape)
        inputs["r"] = r
        ins = ins + ["r"]
        y = y + r
    if act:
        attrs["activation"] = act
        if act == "LeakyRelu":
            attrs["act_alpha"] = 0.1
        y = ACT[act](y)
    W.case(name, [node("conv", "Conv2d", ins, attrs, ["y"])], inputs, consts, {"y": y})


conv_case("conv_1x1", 1, 5, 7, 9, 3, 1)
conv_case("conv_3x3_pad", 2, 3, 11, 13, 17, 3, pad=(1, 1, 1, 1))
conv_case("conv_stride2_odd", 1, 17, 15, 9, 32, 3, stride=(2, 2), pad=(1, 1, 1, 1))
conv_case("conv_stride3_asym_pad", 1, 8, 10, 12, 16, (3, 5), stride=(3, 2), pad=(0, 2, 1, 1))
conv_case("conv_dilated2", 1, 16, 20, 20, 16, 3, pad=(2, 2, 2, 2), dil=(2, 2))
conv_case("conv_dilated6_nobias", 1, 32, 17, 19, 24, 3, pad=(6, 6, 6, 6), dil=(6, 6), bias=False)
conv_case("conv_rate_beyond_map", 1, 16, 7, 9, 16, 3, pad=(24, 24, 24, 24), dil=(24, 24))
conv_case("conv_rate_partly_beyond", 1, 16, 13, 5, 8, 3, pad=(12, 12, 12, 12), dil=(12, 12))
conv_case("conv_groups", 1, 12, 9, 9, 18, 3, pad=(1, 1, 1, 1), groups=3)
conv_case("conv_depthwise", 2, 32, 14, 10, 32, 3, stride=(2, 2), pad=(1, 1, 1, 1), groups=32)
conv_case("conv_depthwise_5x5_dil", 1, 24, 16, 16, 24, 5, pad=(4, 4, 4, 4), dil=(2, 2), groups=24)
conv_case("conv_gcn_kx1", 1, 16, 21, 19, 8, (15, 1), pad=(7, 0, 7, 0))
conv_case("conv_gcn_1xk", 1, 16, 21, 19, 8, (1, 21), pad=(0, 10, 0, 10))
conv_case("conv_7x7_s2_rgb", 1, 3, 33, 35, 64, 7, stride=(2, 2), pad=(3, 3, 3, 3))
conv_case("conv_1x1_big_channels", 1, 256, 5, 6, 300, 1)
for act in ["Relu", "Relu6", "Gelu", "GeluTanh", "Silu", "Sigmoid", "Tanh", "Elu", "HardSwish", "LeakyRelu"]:
    conv_case("conv_act_" + act.lower(), 1, 6, 8, 7, 10, 3, pad=(1, 1, 1, 1), act=act)
conv_case("conv_residual", 1, 16, 9, 9, 16, 3, pad=(1, 1, 1, 1), residual=True)
conv_case("conv_residual_relu", 2, 20, 6, 11, 20, 3, pad=(1, 1, 1, 1), residual=True, act="Relu")


# Plan-time fusion: conv → batchnorm → add(skip) → relu, and conv → unary.
def fused_chain():
    x = rnd(1, 16, 12, 10)
    w1 = rnd(16, 16, 3, 3, scale=0.1)
    g, b, m, v = rnd(16).abs() + 0.5, rnd(16), rnd(16) * 0.1, rnd(16).abs() + 0.5
    y = F.conv2d(x, w1, None, padding=1)
    y = F.batch_norm(y, m, v, g, b, False, 0.0, 1e-5)
    y = F.relu(y + x)
    w2 = rnd(8, 16, 1, 1, scale=0.2)
    b2 = rnd(8)
    z = F.silu(F.conv2d(y, w2, b2))
    nodes = [
        node("conv1", "Conv2d", ["x", "w1", None], {"pad_top": 1, "pad_left": 1, "pad_bottom": 1, "pad_right": 1}, ["c1"]),
        node("bn1", "BatchNorm", ["c1", "g", "b", "m", "v"], {}, ["n1"]),
        node("add1", "Binary", ["n1", "x"], {"kind": "Add"}, ["s1"]),
        node("relu1", "Unary", ["s1"], {"kind": "Relu"}, ["r1"]),
        node("conv2", "Conv2d", ["r1", "w2", "b2"], {}, ["c2"]),
        node("silu2", "Unary", ["c2"], {"kind": "Silu"}, ["z"]),
    ]
    W.case("conv_bn_add_relu_chain", nodes, {"x": x}, {"w1": w1, "g": g, "b": b, "m": m, "v": v, "w2": w2, "b2": b2},
           {"z": z}, op="Conv2d")


fused_chain()

# ---- Unary --------------------------------------------------------------------
for act, fn in ACT.items():
    x = rnd(2, 3, 5, 7) * 3
    if act == "Softplus":
        x[0, 0, 0, :] = torch.tensor([25.0, -30.0, 19.9, 20.1, 0.0, 1e-3, -1e-3])
    W.case("unary_" + act.lower(), [node("u", "Unary", ["x"], {"kind": act, **({"alpha": 0.1} if act == "LeakyRelu" else {})}, ["y"])],
           {"x": x}, {}, {"y": fn(x)})
x = rnd(3, 17).abs() + 0.1
for act, fn in {"Sqrt": torch.sqrt, "Rsqrt": torch.rsqrt, "Log": torch.log}.items():
    W.case("unary_" + act.lower(), [node("u", "Unary", ["x"], {"kind": act}, ["y"])], {"x": x}, {}, {"y": fn(x)})
x = rnd(1, 4, 6, 6)
W.case("unary_softplus_beta2", [node("u", "Unary", ["x"], {"kind": "Softplus", "beta": 2.0, "threshold": 10.0}, ["y"])],
       {"x": x}, {}, {"y": F.softplus(x, beta=2.0, threshold=10.0)})
W.case("unary_elu_alpha", [node("u", "Unary", ["x"], {"kind": "Elu", "alpha": 0.7}, ["y"])],
       {"x": x}, {}, {"y": F.elu(x, alpha=0.7)})

# ---- Binary -------------------------------------------------------------------
BIN = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Max": torch.maximum, "Min": torch.minimum}
shape_pairs = [((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), (1, 3, 1, 1)), ((2, 3, 4, 5), (5,)),
               ((1, 3, 1, 5), (2, 1, 4, 1)), ((7,), (3, 1)), ((2, 16, 3, 3), (1, 16, 1, 1))]
for kind, fn in BIN.items():
    for i, (sa, sb) in enumerate(shape_pairs):
        a, b = rnd(*sa), rnd(*sb)
        if kind == "Div":
            b = b.sign() * (b.abs() + 0.5)
        W.case(f"binary_{kind.lower()}_{i}", [node("op", "Binary", ["a", "b"], {"kind": kind}, ["y"])],
               {"a": a, "b": b}, {}, {"y": fn(a, b)})
# Broadcast first operand of a non-commutative op, constant operand, fused activation.
a, b = rnd(1, 8, 1, 1), rnd(2, 8, 5, 5)
W.case("binary_sub_broadcast_first", [node("op", "Binary", ["a", "b"], {"kind": "Sub"}, ["y"])], {"a": a, "b": b}, {}, {"y": a - b})
a, c = rnd(2, 8, 5, 5), rnd(1, 8, 1, 1)
W.case("binary_mul_constant_relu", [node("op", "Binary", ["a", "c"], {"kind": "Mul", "activation": "Relu"}, ["y"])],
       {"a": a}, {"c": c}, {"y": F.relu(a * c)})

# ---- Reshape ------------------------------------------------------------------
x = rnd(2, 3, 4, 5)
W.case("reshape_infer", [node("r", "Reshape", ["x"], {"shape": [0, -1, 5]}, ["y"])], {"x": x}, {}, {"y": x.reshape(2, 12, 5)})
c, x = rnd(6, 4), rnd(3, 8)
W.case("reshape_constant", [node("r", "Reshape", ["c"], {"shape": [3, 8]}, ["r"]), node("add", "Binary", ["r", "x"], {"kind": "Add"}, ["y"])],
       {"x": x}, {"c": c}, {"y": c.reshape(3, 8) + x}, op="Reshape")
x = rnd(2, 6, 4)
W.case("reshape_then_relu", [node("r", "Reshape", ["x"], {"shape": [12, 4]}, ["r"]), node("u", "Unary", ["r"], {"kind": "Relu"}, ["y"])],
       {"x": x}, {}, {"y": F.relu(x.reshape(12, 4))}, op="Reshape")

W.finish()
