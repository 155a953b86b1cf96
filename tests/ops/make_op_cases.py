"""Reference cases for the basic ops, computed live with PyTorch.

Usage: /usr/bin/python3 make_op_cases.py OUTDIR
Each case is checked by op_cases_test.cpp against every kernel of its op.
Shapes are deliberately awkward: size 1, odd sizes, channel counts that are not
multiples of 16, strides, dilations larger than the map, groups and depthwise.
Cases that put a convolution before or after the op under test make oneDNN hand
it (or take from it) a blocked layout, as in a real network.
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
# conv2d_spatial (few output channels, vectorised over columns): 64-column tiles read in
# place (one kernel column, inside the map) or from a padded copy (wider kernels, edges,
# the tail tile); input channels in L1 sub-chunks and L2 chunks, partial sums through the
# output; output blocks of up to 6 channels; rows whose taps all read padding.
conv_case("conv_narrow_kx1_tail_res_relu", 2, 37, 23, 70, 21, (15, 1), pad=(7, 0, 7, 0), residual=True, act="Relu")
conv_case("conv_narrow_1xk_dilated_nobias", 1, 9, 6, 33, 5, (1, 7), pad=(0, 9, 0, 9), dil=(1, 3), bias=False)
conv_case("conv_narrow_3x3_channel_chunks", 1, 160, 4, 700, 21, 3, pad=(1, 1, 1, 1), residual=True)
conv_case("conv_narrow_padding_rows", 1, 4, 5, 17, 3, 3, pad=(6, 2, 6, 0), residual=True)
conv_case("conv_narrow_47_1x3", 2, 10, 3, 48, 47, (1, 3), pad=(0, 1, 0, 1))
conv_case("conv_narrow_33_dilated_asym", 1, 12, 19, 16, 33, (3, 5), pad=(2, 4, 3, 1), dil=(2, 2), act="Relu")
conv_case("conv_narrow_single_output", 1, 7, 9, 129, 1, (5, 3), pad=(2, 1, 2, 1))
conv_case("conv_residual", 1, 16, 9, 9, 16, 3, pad=(1, 1, 1, 1), residual=True)
# Padding beyond the kernel's reach with a bias and a residual: oneDNN 2.6 drops the bias
# from the rows that read only padding (conv2d_onednn adds it to the residual first).
conv_case("conv_pad_beyond_kernel_residual", 1, 32, 5, 17, 32, 3, pad=(3, 1, 3, 1), residual=True)
conv_case("conv_pad_beyond_kernel_residual_w", 2, 16, 6, 5, 16, (1, 3), pad=(0, 4, 2, 3), residual=True, act="Relu")
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


# conv2d_pointwise: a ResNet bottleneck's end, a 1x1 conv adding a residual on NHWC maps
# (both produced by oneDNN convolutions), its output read by another convolution:
#   a = conv3x3(x), r = conv1x1(x) (the skip), b = act(conv1x1(a) + bias + r), y = conv3x3(b)
# Pixels not in 6s or 48s (tiles and blocks with tails), input channels not in 16s.
def bottleneck_end(name, n, c, h, w, mid, o, act=None, bias=True):
    x = rnd(n, c, h, w)
    wa = rnd(mid, c, 3, 3, scale=(1.0 / (c * 9)) ** 0.5)
    wr = rnd(o, c, 1, 1, scale=(1.0 / c) ** 0.5)
    wb = rnd(o, mid, 1, 1, scale=(1.0 / mid) ** 0.5)
    bb = rnd(o) if bias else None
    wy = rnd(8, o, 3, 3, scale=(1.0 / (o * 9)) ** 0.5)
    a = F.conv2d(x, wa, None, padding=1)
    r = F.conv2d(x, wr, None)
    b = F.conv2d(a, wb, bb) + r
    if act:
        b = ACT[act](b)
    y = F.conv2d(b, wy, None, padding=1)
    same = {"pad_top": 1, "pad_left": 1, "pad_bottom": 1, "pad_right": 1}
    nodes = [node("conv_a", "Conv2d", ["x", "wa", None], same, ["a"]),
             node("conv_r", "Conv2d", ["x", "wr", None], {}, ["r"]),
             node("conv_b", "Conv2d", ["a", "wb", "bb" if bias else None, "r"], {"activation": act} if act else {}, ["b"]),
             node("conv_y", "Conv2d", ["b", "wy", None], same, ["y"])]
    consts = {"wa": wa, "wr": wr, "wb": wb, "wy": wy}
    if bias:
        consts["bb"] = bb
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="Conv2d")


# pixels 442 = 9 blocks of 48 + 10 (tiles 6 + 4), 99 (48, 48, 3), 35 (6·5 + 5), 49 (48 + 1),
# 494 (10·48 + 6 + 6 + 2)
bottleneck_end("conv_pointwise_residual_relu", 2, 24, 13, 17, 40, 128, act="Relu")
bottleneck_end("conv_pointwise_residual_nobias", 1, 32, 9, 11, 300, 64, bias=False)
bottleneck_end("conv_pointwise_tail5", 1, 16, 5, 7, 20, 192, act="Relu")
bottleneck_end("conv_pointwise_tail1", 1, 16, 7, 7, 33, 64)
bottleneck_end("conv_pointwise_tail2_b2", 2, 16, 13, 19, 17, 64, act="Relu")

# ---- BoundaryRefinement ---------------------------------------------------------
# y = x + conv2(relu(conv1(x))), "same" padding: as a node of its own (both kernels), and
# as the Conv2d → ReLU → Conv2d → Add it is fused from (with the fused kernel allowed).
def br_case(name, n, c, h, w, m, k1, k2, b1=True, b2=True, separate=False):
    k1h, k1w = (k1, k1) if isinstance(k1, int) else k1
    k2h, k2w = (k2, k2) if isinstance(k2, int) else k2
    x = rnd(n, c, h, w)
    w1 = rnd(m, c, k1h, k1w, scale=(1.0 / (c * k1h * k1w)) ** 0.5)
    w2 = rnd(c, m, k2h, k2w, scale=(1.0 / (m * k2h * k2w)) ** 0.5)
    bias1 = rnd(m) if b1 else None
    bias2 = rnd(c) if b2 else None
    t = F.relu(F.conv2d(x, w1, bias1, padding=(k1h // 2, k1w // 2)))
    y = x + F.conv2d(t, w2, bias2, padding=(k2h // 2, k2w // 2))
    consts = {"w1": w1, "w2": w2}
    if b1:
        consts["b1"] = bias1
    if b2:
        consts["b2"] = bias2
    if separate:
        def same(k):
            return {"pad_top": k[0] // 2, "pad_bottom": k[0] // 2, "pad_left": k[1] // 2, "pad_right": k[1] // 2}
        nodes = [node("conv1", "Conv2d", ["x", "w1", "b1" if b1 else None], same((k1h, k1w)), ["c1"]),
                 node("relu", "Unary", ["c1"], {"kind": "Relu"}, ["r1"]),
                 node("conv2", "Conv2d", ["r1", "w2", "b2" if b2 else None], same((k2h, k2w)), ["c2"]),
                 node("add", "Binary", ["x", "c2"], {"kind": "Add"}, ["y"])]
    else:
        nodes = [node("br", "BoundaryRefinement", ["x", "w1", "w2", "b1" if b1 else None, "b2" if b2 else None], {},
                      ["y"])]
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="BoundaryRefinement")


br_case("br_gcn_21", 1, 21, 37, 70, 21, 3, 3)                        # tiles of 64 and a 6-column tail
br_case("br_tall_map", 1, 5, 150, 17, 7, 3, 3, b1=False)             # strips, bands, conv1 rows carried over
br_case("br_kernels_5x3_3x5", 2, 9, 23, 33, 13, (5, 3), (3, 5), b2=False)
br_case("br_1x1_then_7x7", 1, 3, 19, 40, 47, 1, 7)
br_case("br_wide_several_tiles", 1, 21, 11, 300, 21, 3, 3)          # four full 64-column tiles and a tail
br_case("br_wide_k5_b2", 2, 9, 9, 260, 13, (3, 5), (5, 3), b1=False)
br_case("br_one_row", 1, 4, 1, 20, 2, 3, 3)
br_case("br_narrow_map_ref", 1, 6, 9, 10, 6, 3, 3)                   # under 16 columns: the reference kernel
br_case("br_16_channels_ref", 1, 16, 7, 18, 5, 3, 3)                 # 16 channels: the reference kernel
br_case("br_from_convs", 1, 21, 29, 35, 21, 3, 3, separate=True)
br_case("br_from_convs_nobias", 2, 11, 18, 66, 19, 5, 3, b1=False, b2=False, separate=True)

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


# ---- shared: a 3x3 conv in front of an op, so oneDNN hands it a blocked layout ----
def pre_conv(inp, out, c_in, c_out, consts, name="pre"):
    """Adds the weights to consts; returns (node, torch function)."""
    wt = rnd(c_out, c_in, 3, 3, scale=(1.0 / (c_in * 9)) ** 0.5)
    b = rnd(c_out)
    consts[name + ".w"] = wt
    consts[name + ".b"] = b
    pads = {"pad_top": 1, "pad_left": 1, "pad_bottom": 1, "pad_right": 1}
    return node(name, "Conv2d", [inp, name + ".w", name + ".b"], pads, [out]), lambda t: F.conv2d(t, wt, b, padding=1)


def post_conv(inp, out, c_in, c_out, consts, name="post"):
    """A 1x1 conv after the op, so its output may stay blocked."""
    wt = rnd(c_out, c_in, 1, 1, scale=(1.0 / c_in) ** 0.5)
    consts[name + ".w"] = wt
    return node(name, "Conv2d", [inp, name + ".w", None], {}, [out]), lambda t: F.conv2d(t, wt)


# ---- ConvTranspose2d ----------------------------------------------------------
def deconv_case(name, n, c, h, w, o, k, stride=(1, 1), pad=(0, 0, 0, 0), out_pad=(0, 0), dil=(1, 1), groups=1,
                bias=True, act=None, before=False, after=False):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rnd(n, c, h, w)
    wt = rnd(c, o // groups, kh, kw, scale=(1.0 / (c // groups * kh * kw)) ** 0.5)
    b = rnd(o) if bias else None
    consts = {"w": wt}
    if bias:
        consts["b"] = b
    nodes, src, xin = [], "x", x
    if before:
        cn, cf = pre_conv("x", "xc", c, c, consts)
        nodes.append(cn)
        src, xin = "xc", cf(x)
    pt, pl, pb, pr = pad
    if pt == pb and pl == pr:
        y = F.conv_transpose2d(xin, wt, b, stride=stride, padding=(pt, pl), output_padding=out_pad, groups=groups,
                               dilation=dil)
    else:  # crop the unpadded result: drop pad_top/left rows, keep output_pad extra zero rows at the end
        full = F.conv_transpose2d(xin, wt, None, stride=stride, groups=groups, dilation=dil)
        full = F.pad(full, (0, out_pad[1], 0, out_pad[0]))
        y = full[:, :, pt:full.shape[2] - pb, pl:full.shape[3] - pr]
        if bias:
            y = y + b.view(1, -1, 1, 1)
    attrs = {"stride_h": stride[0], "stride_w": stride[1], "pad_top": pt, "pad_left": pl, "pad_bottom": pb,
             "pad_right": pr, "output_pad_h": out_pad[0], "output_pad_w": out_pad[1], "dilation_h": dil[0],
             "dilation_w": dil[1], "groups": groups}
    if act:
        attrs["activation"] = act
        if act == "LeakyRelu":
            attrs["act_alpha"] = 0.1
        y = ACT[act](y)
    nodes.append(node("deconv", "ConvTranspose2d", [src, "w", "b" if bias else None], attrs, ["d" if after else "y"]))
    if after:
        qn, qf = post_conv("d", "y", o, 8, consts)
        nodes.append(qn)
        y = qf(y)
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="ConvTranspose2d")


deconv_case("deconv_k2_s2", 1, 32, 5, 7, 16, 2, stride=(2, 2))
deconv_case("deconv_k3_s2_p1_op1", 2, 17, 6, 5, 20, 3, stride=(2, 2), pad=(1, 1, 1, 1), out_pad=(1, 1))
deconv_case("deconv_k4_s2_p1", 1, 8, 7, 9, 8, 4, stride=(2, 2), pad=(1, 1, 1, 1))
deconv_case("deconv_outpad_beyond_pad", 1, 6, 4, 5, 10, 3, stride=(2, 2), out_pad=(1, 1))
deconv_case("deconv_dilated", 1, 16, 6, 6, 16, 3, pad=(2, 2, 2, 2), dil=(2, 2))
deconv_case("deconv_dilated_stride_outpad", 1, 5, 5, 4, 7, 3, stride=(2, 3), pad=(1, 1, 1, 1), out_pad=(1, 2), dil=(2, 2))
deconv_case("deconv_groups", 1, 12, 5, 6, 18, 3, stride=(2, 2), pad=(1, 1, 1, 1), out_pad=(1, 1), groups=3)
deconv_case("deconv_depthwise", 2, 16, 5, 5, 16, 4, stride=(2, 2), pad=(1, 1, 1, 1), groups=16)
deconv_case("deconv_asym_pad", 1, 9, 5, 6, 11, (3, 4), stride=(2, 3), pad=(1, 0, 2, 1))
deconv_case("deconv_1x1_nobias", 1, 33, 3, 4, 40, 1, bias=False)
for act in ["Relu", "Gelu", "Silu", "LeakyRelu"]:
    deconv_case("deconv_act_" + act.lower(), 1, 6, 4, 5, 10, 3, stride=(2, 2), pad=(1, 1, 1, 1), out_pad=(1, 1), act=act)
    # kernel = stride, no padding: the GEMM kernel too, whose activation pass is bias_activate_row's
    # (vectorised GELU, SiLU, ReLU; rows of 4 x 9 x 5 = 180 floats: full vectors and a masked tail)
    deconv_case("deconv_k2s2_act_" + act.lower(), 1, 8, 9, 5, 12, 2, stride=(2, 2), act=act)
deconv_case("deconv_after_conv", 1, 24, 6, 7, 20, 2, stride=(2, 2), before=True)
deconv_case("deconv_between_convs", 1, 20, 5, 5, 24, 3, stride=(2, 2), pad=(1, 1, 1, 1), out_pad=(1, 1), before=True,
            after=True)


# ---- BatchNorm ----------------------------------------------------------------
def bn_params(c):
    return rnd(c).abs() + 0.5, rnd(c), rnd(c) * 0.3, rnd(c).abs() + 0.5


def bn_case(name, shape, eps=1e-5):
    x = rnd(*shape)
    g, b, m, v = bn_params(shape[1])
    y = F.batch_norm(x, m, v, g, b, False, 0.0, eps)
    W.case(name, [node("bn", "BatchNorm", ["x", "g", "b", "m", "v"], {"eps": eps}, ["y"])], {"x": x},
           {"g": g, "b": b, "m": m, "v": v}, {"y": y})


bn_case("bn_rank2", (5, 24))
bn_case("bn_rank3", (2, 17, 9))
bn_case("bn_rank4", (2, 19, 5, 7), eps=1e-3)
bn_case("bn_rank5", (1, 3, 2, 3, 4))
bn_case("bn_rank6", (1, 4, 2, 1, 3, 2))


def bn_after_conv_relu(name, then_conv):
    # conv+relu cannot absorb the BN (the activation sits between), so BN reads a blocked tensor.
    x = rnd(2, 20, 6, 5)
    consts = {}
    cn, cf = pre_conv("x", "c", 20, 20, consts)
    cn["attrs"]["activation"] = "Relu"
    g, b, m, v = bn_params(20)
    consts.update({"g": g, "b": b, "m": m, "v": v})
    y = F.batch_norm(F.relu(cf(x)), m, v, g, b, False, 0.0, 1e-5)
    nodes = [cn, node("bn", "BatchNorm", ["c", "g", "b", "m", "v"], {}, ["n" if then_conv else "y"])]
    if then_conv:
        qn, qf = post_conv("n", "y", 20, 12, consts)
        nodes.append(qn)
        y = qf(y)
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="BatchNorm")


bn_after_conv_relu("bn_after_conv_relu", False)
bn_after_conv_relu("bn_between_convs", True)


# ---- Linear -------------------------------------------------------------------
def linear_case(name, xshape, n, bias=True, act=None, unary=None):
    k = xshape[-1]
    x = rnd(*xshape)
    wt = rnd(n, k, scale=(1.0 / k) ** 0.5)
    b = rnd(n) if bias else None
    y = F.linear(x, wt, b)
    attrs = {}
    if act:
        attrs["activation"] = act
        y = ACT[act](y)
    consts = {"w": wt}
    if bias:
        consts["b"] = b
    nodes = [node("fc", "Linear", ["x", "w", "b" if bias else None], attrs, ["h" if unary else "y"])]
    if unary:  # folded into the Linear at plan time
        nodes.append(node("act", "Unary", ["h"], {"kind": unary}, ["y"]))
        y = ACT[unary](y)
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="Linear")


linear_case("linear_2d", (7, 33), 20)
linear_case("linear_3d_nobias", (2, 5, 64), 48, bias=False)
linear_case("linear_1d", (17,), 9)
linear_case("linear_k1", (4, 1), 3)
linear_case("linear_wide", (3, 300), 257)
for act in ["Relu", "Gelu", "GeluTanh", "Silu", "Tanh"]:
    linear_case("linear_act_" + act.lower(), (2, 3, 24), 19, act=act)
linear_case("linear_then_gelu", (6, 40), 32, unary="Gelu")
linear_case("linear_act_softplus", (3, 16), 8, act="Softplus")  # no oneDNN post-op: reference


# ---- MatMul -------------------------------------------------------------------
def matmul_case(name, sa, sb, ta=False, tb=False, alpha=1.0, const=""):
    a, b = rnd(*sa), rnd(*sb)
    ea = a.transpose(-1, -2) if ta else a
    eb = b.transpose(-1, -2) if tb else b
    y = alpha * torch.matmul(ea, eb)
    inputs = {k: v for k, v in (("a", a), ("b", b)) if k not in const}
    consts = {k: v for k, v in (("a", a), ("b", b)) if k in const}
    W.case(name, [node("mm", "MatMul", ["a", "b"], {"transpose_a": ta, "transpose_b": tb, "alpha": alpha}, ["y"])],
           inputs, consts, {"y": y})


matmul_case("matmul_2d", (5, 7), (7, 3))
matmul_case("matmul_batched", (2, 3, 5, 7), (2, 3, 7, 4))
matmul_case("matmul_broadcast_a1", (2, 1, 5, 7), (2, 3, 7, 4))
matmul_case("matmul_broadcast_rank", (4, 5, 6), (6, 3))
matmul_case("matmul_broadcast_both", (2, 1, 3, 4), (1, 5, 4, 6))
matmul_case("matmul_ta", (3, 7, 5), (3, 7, 4), ta=True)
matmul_case("matmul_tb_alpha", (1, 4, 17, 16), (1, 4, 17, 16), tb=True, alpha=0.25)
matmul_case("matmul_ta_tb", (2, 6, 5), (2, 3, 6), ta=True, tb=True, alpha=-1.5)
matmul_case("matmul_const_b", (2, 4, 7), (7, 9), const="b")
matmul_case("matmul_const_b_tb", (6, 33), (20, 33), tb=True, const="b")
matmul_case("matmul_const_a", (3, 8), (2, 8, 5), const="a")
matmul_case("matmul_m1_n1", (1, 9), (9, 1))


# ---- LayerNorm ----------------------------------------------------------------
def layernorm_case(name, shape, axis=-1, weight=True, bias=True, eps=1e-5, before=False):
    x = rnd(*shape) * 2 + 0.5
    ax = axis % len(shape)
    d = shape[ax]
    wt, b = rnd(d), rnd(d)
    view = [1] * len(shape)
    view[ax] = d
    consts, nodes = {}, []
    src, xin = "x", x
    if before:
        cn, cf = pre_conv("x", "xc", shape[1], shape[1], consts)
        nodes.append(cn)
        src, xin = "xc", cf(x)
    u = xin.mean(ax, keepdim=True)
    var = ((xin - u) ** 2).mean(ax, keepdim=True)
    y = (xin - u) / torch.sqrt(var + eps)
    if weight:
        y = y * wt.view(view)
        consts["w"] = wt
    if bias:
        y = y + b.view(view)
        consts["b"] = b
    if ax == len(shape) - 1:  # cross-check the hand-written formula with PyTorch's own
        ref = F.layer_norm(xin, (d,), wt if weight else None, b if bias else None, eps)
        assert torch.allclose(ref, y, atol=1e-5), name
    nodes.append(node("ln", "LayerNorm", [src, "w" if weight else None, "b" if bias else None], {"axis": axis, "eps": eps}, ["y"]))
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="LayerNorm")


layernorm_case("layernorm_last", (2, 7, 33))
layernorm_case("layernorm_last_plain", (5, 64), weight=False, bias=False, eps=1e-6)
layernorm_case("layernorm_weight_only", (3, 20), bias=False)
layernorm_case("layernorm_bias_only", (3, 20), weight=False)
layernorm_case("layernorm_axis_is_last", (2, 3, 24), axis=2)
layernorm_case("layernorm_rank1", (37,))
layernorm_case("layernorm2d", (2, 24, 5, 7), axis=1, eps=1e-6)
layernorm_case("layernorm2d_wide_map", (1, 32, 13, 11), axis=1, eps=1e-6)
layernorm_case("layernorm2d_no_affine", (1, 17, 3, 4), axis=1, weight=False, bias=False)
layernorm_case("layernorm2d_after_conv", (1, 20, 6, 7), axis=1, eps=1e-6, before=True)


# ---- Concat -------------------------------------------------------------------
def concat_case(name, shapes, axis, dtype=torch.float32):
    xs = [rnd(*s) if dtype == torch.float32 else torch.randint(-50, 50, s, dtype=dtype) for s in shapes]
    names = [f"x{i}" for i in range(len(xs))]
    W.case(name, [node("cat", "Concat", names, {"axis": axis}, ["y"])], dict(zip(names, xs)), {}, {"y": torch.cat(xs, axis)})


concat_case("concat_channels", [(1, 5, 4, 6), (1, 16, 4, 6), (1, 3, 4, 6)], 1)
concat_case("concat_last", [(2, 3, 5), (2, 3, 1)], -1)
concat_case("concat_axis0", [(1, 7), (3, 7), (2, 7)], 0)
concat_case("concat_neg_axis", [(2, 4, 3, 5), (2, 4, 1, 5)], -2)
concat_case("concat_single", [(2, 9, 3)], 1)
concat_case("concat_i64", [(2, 3), (2, 4)], 1, dtype=torch.int64)


def concat_of_convs(name, then_conv, plain_input=False):
    # DeepLab's ASPP: parallel convs (blocked outputs) -> concat -> 1x1 projection
    x = rnd(1, 16, 7, 9)
    consts = {}
    n1, f1 = pre_conv("x", "c1", 16, 24, consts, "conv1")
    n2, f2 = pre_conv("x", "c2", 16, 40, consts, "conv2")
    nodes = [n1, n2]
    names = ["c1", "c2"] + (["x"] if plain_input else [])
    parts = [f1(x), f2(x)] + ([x] if plain_input else [])
    y = torch.cat(parts, 1)
    nodes.append(node("cat", "Concat", names, {"axis": 1}, ["cat" if then_conv else "y"]))
    if then_conv:
        qn, qf = post_conv("cat", "y", y.shape[1], 8, consts)
        nodes.append(qn)
        y = qf(y)
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="Concat")


concat_of_convs("concat_convs_to_output", False)
concat_of_convs("concat_convs_to_conv", True)
concat_of_convs("concat_convs_and_input", True, plain_input=True)


def after_deconvs(name, op, make, channels=(24,)):
    # Deconvolutions hand over oneDNN's channel-blocked layout (nChw16c) with
    # channel counts that are not multiples of 16; `make` adds the op under test.
    x = rnd(1, 16, 5, 6)
    consts = {}
    outs = []
    nodes = []
    for i, co in enumerate(channels):
        wt = rnd(16, co, 3, 3, scale=(1.0 / 144) ** 0.5)
        consts[f"dw{i}"] = wt
        attrs = {"stride_h": 2, "stride_w": 2, "pad_top": 1, "pad_left": 1, "pad_bottom": 1, "pad_right": 1,
                 "output_pad_h": 1, "output_pad_w": 1}
        nodes.append(node(f"deconv{i}", "ConvTranspose2d", ["x", f"dw{i}", None], attrs, [f"d{i}"]))
        outs.append(F.conv_transpose2d(x, wt, None, stride=2, padding=1, output_padding=1))
    more, z = make(outs, consts)
    nodes += more
    qn, qf = post_conv("z", "y", z.shape[1], 8, consts)
    nodes.append(qn)
    W.case(name, nodes, {"x": x}, consts, {"y": qf(z)}, op=op)


after_deconvs("concat_deconvs", "Concat",
              lambda d, c: ([node("cat", "Concat", ["d0", "d1"], {"axis": 1}, ["z"])], torch.cat(d, 1)), channels=(24, 20))
after_deconvs("pool_after_deconv", "Pool2d",
              lambda d, c: ([node("pool", "Pool2d", ["d0"], {"kind": "Avg", "kernel_h": 3, "kernel_w": 3, "stride_h": 2,
                                                               "stride_w": 2, "pad_top": 1, "pad_left": 1, "pad_bottom": 1,
                                                               "pad_right": 1, "count_include_pad": False}, ["z"])],
                            F.avg_pool2d(d[0], 3, 2, 1, count_include_pad=False)))
after_deconvs("resize_after_deconv", "Resize",
              lambda d, c: ([node("rs", "Resize", ["d0"], {"mode": "Bilinear", "out_h": 15, "out_w": 17}, ["z"])],
                            F.interpolate(d[0], size=(15, 17), mode="bilinear", align_corners=False)), channels=(20,))


def bn_after_deconv(d, c):
    g, b, m, v = bn_params(24)
    c.update({"g": g, "b": b, "m": m, "v": v})
    return [node("bn", "BatchNorm", ["d0", "g", "b", "m", "v"], {}, ["z"])], F.batch_norm(d[0], m, v, g, b, False, 0.0, 1e-5)


after_deconvs("bn_after_deconv", "BatchNorm", bn_after_deconv)
after_deconvs("global_pool_after_deconv", "GlobalPool",
              lambda d, c: ([node("gp", "GlobalPool", ["d0"], {"kind": "Max"}, ["z"])], d[0].amax((2, 3), keepdim=True)),
              channels=(20,))


# ---- Slice --------------------------------------------------------------------
def slice_case(name, x, axes, starts, ends, steps, expect, before=False):
    attrs = {"axes": axes, "starts": starts, "ends": ends}
    if steps is not None:
        attrs["steps"] = steps
    consts, nodes, src = {}, [], "x"
    if before:
        cn, cf = pre_conv("x", "xc", x.shape[1], 20, consts)
        nodes.append(cn)
        src = "xc"
        expect = expect(cf(x))
    else:
        expect = expect(x)
    nodes.append(node("sl", "Slice", [src], attrs, ["y"]))
    W.case(name, nodes, {"x": x}, consts, {"y": expect}, op="Slice")


x = rnd(2, 7, 9, 5)
slice_case("slice_two_axes", x, [1, 2], [1, -5], [6, 100], [2, 1], lambda t: t[:, 1:6:2, -5:100])
slice_case("slice_negative", x, [-1], [-3], [-1], None, lambda t: t[..., -3:-1])
slice_case("slice_step_last", x, [3, 0], [0, 1], [5, 2], [3, 1], lambda t: t[1:2, :, :, 0:5:3])
slice_case("slice_clamped", x, [2], [-100], [4], [1], lambda t: t[:, :, -100:4])
slice_case("slice_every_axis", rnd(3, 4, 5), [0, 1, 2], [1, 0, 4], [3, 4, 5], [1, 3, 1], lambda t: t[1:3, 0:4:3, 4:5])
slice_case("slice_i64", torch.randint(-9, 9, (4, 6), dtype=torch.int64), [1], [1], [5], [2], lambda t: t[:, 1:5:2])
slice_case("slice_after_conv", rnd(1, 8, 6, 6), [1, 3], [3, 1], [19, 6], [1, 2], lambda t: t[:, 3:19, :, 1:6:2], before=True)


# ---- Pool2d -------------------------------------------------------------------
def pool_case(name, shape, kind, k, s, pad=(0, 0, 0, 0), ceil=False, cip=True, before=False, after=False):
    x = rnd(*shape)
    kh, kw = (k, k) if isinstance(k, int) else k
    sh, sw = (s, s) if isinstance(s, int) else s
    pt, pl, pb, pr = pad
    consts, nodes, src, xin = {}, [], "x", x
    if before:
        cn, cf = pre_conv("x", "xc", shape[1], shape[1], consts)
        nodes.append(cn)
        src, xin = "xc", cf(x)
    if pt == pb and pl == pr:
        if kind == "Max":
            y = F.max_pool2d(xin, (kh, kw), (sh, sw), (pt, pl), ceil_mode=ceil)
        else:
            y = F.avg_pool2d(xin, (kh, kw), (sh, sw), (pt, pl), ceil_mode=ceil, count_include_pad=cip)
    else:  # asymmetric padding: pad explicitly (floor mode only, where that is exact)
        assert not ceil
        if kind == "Max":
            y = F.max_pool2d(F.pad(xin, (pl, pr, pt, pb), value=-float("inf")), (kh, kw), (sh, sw))
        else:
            total = F.avg_pool2d(F.pad(xin, (pl, pr, pt, pb)), (kh, kw), (sh, sw))
            if cip:
                y = total
            else:
                real = F.avg_pool2d(F.pad(torch.ones_like(xin), (pl, pr, pt, pb)), (kh, kw), (sh, sw))
                y = total / real
    attrs = {"kind": kind, "kernel_h": kh, "kernel_w": kw, "stride_h": sh, "stride_w": sw, "pad_top": pt, "pad_left": pl,
             "pad_bottom": pb, "pad_right": pr, "ceil_mode": ceil, "count_include_pad": cip}
    nodes.append(node("pool", "Pool2d", [src], attrs, ["p" if after else "y"]))
    if after:
        qn, qf = post_conv("p", "y", shape[1], 8, consts)
        nodes.append(qn)
        y = qf(y)
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="Pool2d")


pool_case("pool_max_stem", (1, 16, 15, 17), "Max", 3, 2, (1, 1, 1, 1))
pool_case("pool_max_ceil", (2, 5, 10, 11), "Max", 3, 2, ceil=True)
pool_case("pool_max_ceil_pad", (1, 3, 10, 9), "Max", 3, 2, (1, 1, 1, 1), ceil=True)
pool_case("pool_max_ceil_last_dropped", (1, 4, 5, 7), "Max", 2, 2, (1, 1, 1, 1), ceil=True)
pool_case("pool_avg_same_cip", (1, 20, 6, 7), "Avg", 3, 1, (1, 1, 1, 1))
pool_case("pool_avg_same_nocip", (1, 20, 6, 7), "Avg", 3, 1, (1, 1, 1, 1), cip=False)
pool_case("pool_avg_k2s2_odd", (2, 33, 7, 7), "Avg", 2, 2)
pool_case("pool_avg_ceil_cip_clipped", (1, 6, 10, 12), "Avg", 3, 2, (1, 1, 1, 1), ceil=True)  # oneDNN declines
pool_case("pool_avg_ceil_nocip", (1, 6, 10, 12), "Avg", 3, 2, (1, 1, 1, 1), ceil=True, cip=False)
pool_case("pool_avg_ceil_cip_fits", (1, 6, 9, 11), "Avg", 3, 2, (1, 1, 1, 1), ceil=True)
pool_case("pool_avg_ceil_nopad", (1, 3, 8, 10), "Avg", 3, 2, ceil=True)  # oneDNN declines (no padding to clip to)
pool_case("pool_max_asym", (1, 7, 8, 9), "Max", (3, 2), (2, 1), (1, 0, 0, 1))
pool_case("pool_avg_asym_cip", (1, 7, 8, 9), "Avg", (3, 2), (2, 1), (1, 0, 0, 1))
pool_case("pool_avg_asym_nocip", (1, 7, 8, 9), "Avg", (3, 2), (2, 1), (0, 1, 1, 0), cip=False)
pool_case("pool_rect_kernel", (1, 5, 9, 6), "Max", (3, 1), 1, (1, 0, 1, 0))
pool_case("pool_max_after_conv", (1, 20, 9, 10), "Max", 3, 2, (1, 1, 1, 1), before=True)
pool_case("pool_avg_ceil_cip_clipped_after_conv", (1, 20, 10, 12), "Avg", 3, 2, (1, 1, 1, 1), ceil=True, before=True,
          after=True)  # oneDNN declines: pool2d_ref behind an inserted reorder
pool_case("pool_avg_between_convs", (1, 24, 9, 10), "Avg", 2, 2, ceil=True, cip=False, before=True, after=True)


# ---- GlobalPool ---------------------------------------------------------------
def global_pool_case(name, shape, kind, before=False, after=False):
    x = rnd(*shape)
    consts, nodes, src, xin = {}, [], "x", x
    if before:
        cn, cf = pre_conv("x", "xc", shape[1], shape[1], consts)
        nodes.append(cn)
        src, xin = "xc", cf(x)
    y = xin.mean((2, 3), keepdim=True) if kind == "Avg" else xin.amax((2, 3), keepdim=True)
    nodes.append(node("gp", "GlobalPool", [src], {"kind": kind}, ["g" if after else "y"]))
    if after:
        qn, qf = post_conv("g", "y", shape[1], 12, consts)
        nodes.append(qn)
        y = qf(y)
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="GlobalPool")


global_pool_case("global_avg", (2, 19, 7, 5), "Avg")
global_pool_case("global_max", (1, 33, 4, 9), "Max")
global_pool_case("global_avg_1x1", (1, 8, 1, 1), "Avg")
global_pool_case("global_avg_after_conv", (1, 20, 9, 11), "Avg", before=True)
global_pool_case("global_max_between_convs", (2, 32, 6, 5), "Max", before=True, after=True)


# ---- Resize -------------------------------------------------------------------
def resize_case(name, shape, mode, size=None, ac=False, like=None, scale=None, before=False, after=False):
    x = rnd(*shape)
    consts, nodes, src, xin = {}, [], "x", x
    inputs = {"x": x}
    if before:
        cn, cf = pre_conv("x", "xc", shape[1], shape[1], consts)
        nodes.append(cn)
        src, xin = "xc", cf(x)
    attrs = {"mode": mode, "align_corners": ac}
    ins = [src]
    if size:
        attrs["out_h"], attrs["out_w"] = size
        out = size
    elif like:
        inputs["like"] = rnd(*like)
        ins.append("like")
        out = like[-2:]
    else:
        attrs["scale_h"], attrs["scale_w"] = scale
        # the engine maps coordinates with in/out sizes, so compare against PyTorch given the size
        out = (int(shape[2] * scale[0]), int(shape[3] * scale[1]))
    if mode == "Nearest":
        y = F.interpolate(xin, size=tuple(out), mode="nearest")
    else:
        y = F.interpolate(xin, size=tuple(out), mode="bilinear", align_corners=ac)
    nodes.append(node("rs", "Resize", ins, attrs, ["r" if after else "y"]))
    if after:
        qn, qf = post_conv("r", "y", shape[1], 8, consts)
        nodes.append(qn)
        y = qf(y)
    W.case(name, nodes, inputs, consts, {"y": y}, op="Resize")


resize_case("resize_bilinear_up", (1, 5, 7, 9), "Bilinear", size=(16, 20))
resize_case("resize_bilinear_up_ac", (1, 5, 7, 9), "Bilinear", size=(16, 20), ac=True)
resize_case("resize_bilinear_down", (2, 3, 17, 13), "Bilinear", size=(6, 5))
resize_case("resize_bilinear_down_ac", (2, 3, 17, 13), "Bilinear", size=(6, 5), ac=True)
resize_case("resize_bilinear_nonint", (1, 4, 6, 7), "Bilinear", size=(10, 11))
resize_case("resize_bilinear_x8", (1, 21, 5, 4), "Bilinear", size=(40, 32))
resize_case("resize_bilinear_to_1x1", (1, 3, 5, 6), "Bilinear", size=(1, 1))
resize_case("resize_bilinear_to_1x1_ac", (1, 3, 5, 6), "Bilinear", size=(1, 1), ac=True)
resize_case("resize_bilinear_from_1x1", (1, 17, 1, 1), "Bilinear", size=(5, 7))
resize_case("resize_bilinear_like", (1, 6, 5, 6), "Bilinear", like=(1, 1, 13, 15))
resize_case("resize_bilinear_scale", (1, 3, 6, 5), "Bilinear", scale=(1.5, 2.5))
# resize_rows: bands of 64 output rows, source rows reused between output rows, tails.
resize_case("resize_bilinear_up_bands_ac", (1, 3, 40, 37), "Bilinear", size=(130, 75), ac=True)
resize_case("resize_bilinear_down_bands", (2, 2, 150, 70), "Bilinear", size=(70, 33))
resize_case("resize_nearest_x2", (1, 6, 5, 7), "Nearest", size=(10, 14))
resize_case("resize_nearest_x3_x2", (2, 4, 5, 7), "Nearest", size=(15, 14))
resize_case("resize_nearest_x4_x1", (1, 3, 3, 4), "Nearest", size=(12, 4))
resize_case("resize_nearest_down", (1, 3, 9, 8), "Nearest", size=(4, 3))
resize_case("resize_nearest_nonint", (1, 3, 5, 6), "Nearest", size=(7, 11))
resize_case("resize_nearest_scale", (1, 3, 4, 5), "Nearest", scale=(2.0, 3.0))
resize_case("resize_nearest_like", (1, 3, 4, 5), "Nearest", like=(2, 9, 11))
resize_case("resize_bilinear_after_conv", (1, 20, 6, 7), "Bilinear", size=(23, 25), before=True)
# oneDNN declines align_corners: the reference kernel reads the conv's output through an inserted reorder
resize_case("resize_bilinear_ac_after_conv", (1, 20, 6, 7), "Bilinear", size=(11, 13), ac=True, before=True, after=True)
resize_case("resize_bilinear_between_convs", (1, 24, 6, 7), "Bilinear", size=(12, 14), before=True, after=True)
resize_case("resize_nearest_between_convs", (1, 16, 5, 6), "Nearest", size=(10, 12), before=True, after=True)


def deeplab_image_pool():
    # ASPP image pooling: conv -> global avg -> 1x1 conv -> bilinear back to the conv's size -> concat -> 1x1
    x = rnd(1, 16, 9, 11)
    consts = {}
    cn, cf = pre_conv("x", "c", 16, 20, consts, "conv")
    gn = node("gap", "GlobalPool", ["c"], {"kind": "Avg"}, ["g"])
    pn, pf = post_conv("g", "gc", 20, 12, consts, "pool_conv")
    rn = node("up", "Resize", ["gc", "c"], {"mode": "Bilinear"}, ["u"])
    kn = node("cat", "Concat", ["c", "u"], {"axis": 1}, ["cat"])
    qn, qf = post_conv("cat", "y", 32, 8, consts, "project")
    c = cf(x)
    u = F.interpolate(pf(c.mean((2, 3), keepdim=True)), size=c.shape[-2:], mode="bilinear", align_corners=False)
    y = qf(torch.cat([c, u], 1))
    W.case("resize_deeplab_image_pool", [cn, gn, pn, rn, kn, qn], {"x": x}, consts, {"y": y}, op="Resize")


deeplab_image_pool()


# ---- Softmax ------------------------------------------------------------------
def softmax_case(name, shape, axis, scale=1.0):
    x = rnd(*shape) * scale
    W.case(name, [node("sm", "Softmax", ["x"], {"axis": axis}, ["y"])], {"x": x}, {}, {"y": torch.softmax(x, axis)})


softmax_case("softmax_last", (2, 5, 33), -1)
softmax_case("softmax_axis1", (2, 19, 4, 5), 1)
softmax_case("softmax_axis0", (7, 3), 0)
softmax_case("softmax_large_values", (3, 40), -1, scale=60.0)
softmax_case("softmax_1d", (17,), 0)
softmax_case("softmax_axis1_wide_map", (1, 10, 13, 11), 1)
softmax_case("softmax_attention", (1, 4, 17, 17), -1, scale=4.0)


# ---- Transpose ----------------------------------------------------------------
def transpose_case(name, x, perm):
    W.case(name, [node("t", "Transpose", ["x"], {"perm": perm}, ["y"])], {"x": x}, {}, {"y": x.permute(*perm).contiguous()})


transpose_case("transpose_nchw_to_nhwc", rnd(2, 19, 5, 7), [0, 2, 3, 1])
transpose_case("transpose_nhwc_to_nchw", rnd(2, 5, 7, 19), [0, 3, 1, 2])
transpose_case("transpose_2d_partial_tiles", rnd(33, 47), [1, 0])
transpose_case("transpose_identity", rnd(3, 4, 5), [0, 1, 2])
transpose_case("transpose_rank5", rnd(2, 3, 4, 5, 6), [4, 2, 0, 3, 1])
transpose_case("transpose_size1_dims", rnd(1, 5, 1, 7), [2, 3, 0, 1])
transpose_case("transpose_heads", rnd(1, 4, 16, 8), [0, 2, 1, 3])
# Several 64 × 64 tiles of 16 × 16 blocks with partial blocks on both edges, and a
# transposed pair with a batch dim between them (transpose_avx512's paths).
transpose_case("transpose_nchw_to_nhwc_large", rnd(2, 131, 9, 17), [0, 2, 3, 1])
transpose_case("transpose_outer_pair", rnd(37, 5, 3, 70), [3, 1, 2, 0])
transpose_case("transpose_i64", torch.randint(-99, 99, (3, 4, 5), dtype=torch.int64), [2, 0, 1])
# Short output rows (transpose_gather's blocks): SAM's mask pixels from the nesting of two
# 2×2 stride-2 upscalings to row-major order, and a block of 273 with a ragged last gather.
transpose_case("transpose_mask_pixels", rnd(1, 3, 9, 11, 2, 2, 2, 2), [0, 1, 2, 4, 6, 3, 5, 7])
transpose_case("transpose_short_rows_ragged", rnd(3, 7, 13, 3), [0, 2, 1, 3])


# ---- Argmax -------------------------------------------------------------------
def argmax_case(name, x, axis, keepdims, before=False):
    consts, nodes, src, xin = {}, [], "x", x
    if before:
        cn, cf = pre_conv("x", "xc", x.shape[1], 21, consts)
        nodes.append(cn)
        src, xin = "xc", cf(x)
    y = torch.argmax(xin, axis, keepdim=keepdims)
    nodes.append(node("am", "Argmax", [src], {"axis": axis, "keepdims": keepdims}, ["y"]))
    W.case(name, nodes, {"x": x}, consts, {"y": y}, op="Argmax")


argmax_case("argmax_classes", rnd(2, 7, 5, 6), 1, False)
argmax_case("argmax_keepdims", rnd(2, 7, 5, 6), 1, True)
argmax_case("argmax_last", rnd(3, 4, 70), -1, False)
argmax_case("argmax_axis0", rnd(5, 9), 0, True)
argmax_case("argmax_ties", torch.randint(0, 3, (2, 6, 9, 8)).float(), 1, False)  # many ties: the first index wins
argmax_case("argmax_ties_last", torch.randint(0, 2, (4, 33)).float(), -1, False)
argmax_case("argmax_after_conv", rnd(1, 8, 7, 9), 1, False, before=True)

W.finish()
