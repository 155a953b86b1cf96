#!/usr/bin/python3
"""Reference data for the segmentation tests, computed live with PyTorch.

Usage: /usr/bin/python3 make_seg_cases.py OUTDIR

OUTDIR/blocks/    refcase cases (tests/common/refcase.py): ASPP (torchvision's own
                  module), GCN blocks (k up to 21, larger than the map), Boundary
                  Refinement, GCN -> BR as in the network; BatchNorm as nodes.
OUTDIR/recipes/   state dicts (torch.save) of torchvision's deeplabv3_resnet50 /
                  deeplabv3_resnet101 and of GCN networks (gcn_net.py), with inputs and
                  reference outputs at several sizes; manifest.json lists them.
OUTDIR/labels/    label maps other tools write (4-bit and 8-bit indexed PNGs).
OUTDIR/images/    images in every format the CLI reads (PNG gray/RGB/RGBA, JPEG,
                  odd sizes, a corrupt file) and the reference class map of one of
                  them for the tiny GCN model (recipes/gcn_tiny).
Weights are random but seeded, with BatchNorm statistics away from 0/1.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
sys.path.insert(0, os.path.join(HERE, "..", "convert"))
sys.path.insert(0, HERE)
import roundtrip as rt  # noqa: E402
from gcn_net import GCNNet, GlobalConv, BoundaryRefine, SmallResNet, torchvision_backbone  # noqa: E402
from refcase import CaseWriter, node  # noqa: E402
from torchvision.models.segmentation.deeplabv3 import ASPP  # noqa: E402

torch.set_grad_enabled(False)
OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)


# ---- blocks -------------------------------------------------------------------
def conv_nodes(name, m, inp, out, consts, act=None):
    """nn.Conv2d -> Atrous Conv2d node (same padding on both sides, as PyTorch)."""
    ph, pw = m.padding
    attrs = {"stride_h": m.stride[0], "stride_w": m.stride[1], "pad_top": ph, "pad_bottom": ph, "pad_left": pw,
             "pad_right": pw, "dilation_h": m.dilation[0], "dilation_w": m.dilation[1], "groups": m.groups}
    if act:
        attrs["activation"] = act
    consts[name + ".weight"] = m.weight
    ins = [inp, name + ".weight"]
    if m.bias is not None:
        consts[name + ".bias"] = m.bias
        ins.append(name + ".bias")
    return [node(name, "Conv2d", ins, attrs, [out])]


def bn_nodes(name, m, inp, out, consts):
    for k in ("weight", "bias", "running_mean", "running_var"):
        consts[name + "." + k] = getattr(m, k)
    return [node(name, "BatchNorm", [inp] + [name + "." + k for k in ("weight", "bias", "running_mean", "running_var")],
                 {"eps": m.eps}, [out])]


def relu_node(name, inp, out):
    return node(name, "Unary", [inp], {"kind": "Relu"}, [out])


def add_node(name, a, b, out):
    return node(name, "Binary", [a, b], {"kind": "Add"}, [out])


def conv_bn_relu_seq(prefix, seq, inp, out, consts):
    """nn.Sequential(conv, bn, relu) named like PyTorch: <prefix>.0, .1, and the ReLU is <prefix>."""
    return (conv_nodes(prefix + ".0", seq[0], inp, prefix + ".0", consts) +
            bn_nodes(prefix + ".1", seq[1], prefix + ".0", prefix + ".1", consts) +
            [relu_node(prefix, prefix + ".1", out)])


def aspp_nodes(p, m, inp, out, consts):
    """torchvision ASPP -> nodes. Branch outputs are named after the modules."""
    nodes, branches = [], []
    n = len(m.convs)
    for i in range(n - 1):
        b = "%s.convs.%d" % (p, i)
        nodes += conv_bn_relu_seq(b, m.convs[i], inp, b, consts)
        branches.append(b)
    pool = m.convs[n - 1]  # AdaptiveAvgPool2d, conv, bn, relu; upsampled in forward
    b = "%s.convs.%d" % (p, n - 1)
    nodes.append(node(b + ".0", "GlobalPool", [inp], {"kind": "Avg"}, [b + ".0"]))
    nodes += conv_nodes(b + ".1", pool[1], b + ".0", b + ".1", consts)
    nodes += bn_nodes(b + ".2", pool[2], b + ".1", b + ".2", consts)
    nodes.append(relu_node(b + ".3", b + ".2", b + ".3"))
    nodes.append(node(b, "Resize", [b + ".3", inp], {"mode": "Bilinear"}, [b]))
    branches.append(b)
    nodes.append(node(p + ".cat", "Concat", branches, {"axis": 1}, [p + ".cat"]))
    nodes += conv_bn_relu_seq(p + ".project", m.project, p + ".cat", out, consts)
    return nodes


def gcn_nodes(p, m, inp, out, consts):
    return (conv_nodes(p + ".conv_l1", m.conv_l1, inp, p + ".conv_l1", consts) +
            conv_nodes(p + ".conv_l2", m.conv_l2, p + ".conv_l1", p + ".conv_l2", consts) +
            conv_nodes(p + ".conv_r1", m.conv_r1, inp, p + ".conv_r1", consts) +
            conv_nodes(p + ".conv_r2", m.conv_r2, p + ".conv_r1", p + ".conv_r2", consts) +
            [add_node(p, p + ".conv_l2", p + ".conv_r2", out)])


def br_nodes(p, m, inp, out, consts):
    return (conv_nodes(p + ".conv1", m.conv1, inp, p + ".conv1", consts) +
            [relu_node(p + ".relu", p + ".conv1", p + ".relu")] +
            conv_nodes(p + ".conv2", m.conv2, p + ".relu", p + ".conv2", consts) +
            [add_node(p, inp, p + ".conv2", out)])


def write_blocks(outdir):
    W = CaseWriter(outdir)
    rt.seed(0)

    def pre(c_in, c_out, consts):
        """A conv in front, as in a network: the block then gets blocked input."""
        m = rt.randomize_(nn.Conv2d(c_in, c_out, 3, padding=1), seed=7)
        return m, conv_nodes("pre", m, "x", "pre", consts, act="Relu")

    # ASPP on maps smaller than the rates (DeepLab's 12/24/36 on a 9x11 map) and on a
    # map the rates partly cover (6/12/18 on 33x29), torchvision's own module.
    for name, (h, w), rates, c_in, c_out in [("aspp_rates_beyond_map", (9, 11), (12, 24, 36), 48, 32),
                                              ("aspp_rates_partly_inside", (33, 29), (6, 12, 18), 40, 24)]:
        consts = {}
        aspp = rt.randomize_(ASPP(c_in, list(rates), c_out), seed=3).eval()
        pm, nodes = pre(8, c_in, consts)
        nodes += aspp_nodes("aspp", aspp, "pre", "y", consts)
        x = torch.randn(1, 8, h, w)
        y = aspp(torch.relu(pm(x)))
        W.case(name, nodes, {"x": x}, consts, {"y": y}, op="Conv2d")

    # GCN blocks: k = 3, 7, 15, 21 (21 > the 13-row map), channels not multiples of 16.
    for name, (h, w), c_in, c_out, k in [("gcn_k3", (12, 10), 16, 21, 3), ("gcn_k7", (19, 23), 24, 21, 7),
                                         ("gcn_k15", (32, 32), 64, 21, 15), ("gcn_k21_beyond_map", (13, 17), 32, 19, 21)]:
        consts = {}
        m = rt.randomize_(GlobalConv(c_in, c_out, k), seed=k)
        pm, nodes = pre(5, c_in, consts)
        nodes += gcn_nodes("gcm", m, "pre", "y", consts)
        x = torch.randn(1, 5, h, w)
        W.case(name, nodes, {"x": x}, consts, {"y": m(torch.relu(pm(x)))}, op="Conv2d")

    # Boundary Refinement alone (plain input: the block's first conv reads the graph input).
    consts = {}
    br = rt.randomize_(BoundaryRefine(21), seed=5)
    x = torch.randn(2, 21, 17, 15)
    W.case("br_plain_input", br_nodes("brm", br, "x", "y", consts), {"x": x}, consts, {"y": br(x)}, op="Conv2d")

    # GCN -> BR, as each stage of the network (blocked all the way through).
    consts = {}
    m = rt.randomize_(GlobalConv(32, 21, 15), seed=11)
    br = rt.randomize_(BoundaryRefine(21), seed=12)
    pm, nodes = pre(6, 32, consts)
    nodes += gcn_nodes("gcm", m, "pre", "gcm", consts) + br_nodes("brm", br, "gcm", "y", consts)
    x = torch.randn(1, 6, 24, 20)
    W.case("gcn_then_br", nodes, {"x": x}, consts, {"y": br(m(torch.relu(pm(x))))}, op="Conv2d")
    W.finish()


# ---- recipes --------------------------------------------------------------------
def save_sizes(d, model, sizes, output_names, seed):
    """Inputs and reference outputs at each size: inputs_<h>x<w>.npz / outputs_<h>x<w>.npz."""
    g = torch.Generator().manual_seed(seed)
    entries = []
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=g)
        outs = model(x)
        if isinstance(outs, dict):
            outs = [outs[k] for k in output_names]
        elif not isinstance(outs, (tuple, list)):
            outs = [outs]
        tag = "%dx%d" % (h, w)
        rt.save_npz(os.path.join(d, "inputs_%s.npz" % tag), {"image": x})
        rt.save_npz(os.path.join(d, "outputs_%s.npz" % tag), dict(zip(output_names, outs)))
        entries.append({"size": [h, w], "inputs": os.path.join(d, "inputs_%s.npz" % tag),
                        "outputs": os.path.join(d, "outputs_%s.npz" % tag)})
    return entries


def calibrate_(net, size=(49, 49), seed=0):
    """Random weights at unit scale, then BatchNorm running statistics measured on
    random inputs (as training would leave them): activations stay O(1) through 100
    layers and the output depends on the input, so a wrong layer shows."""
    rt.randomize_(net, seed=seed, scale=1.0)
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    net.train()
    net(torch.randn(2, 3, *size, generator=g))
    return net.eval()


def recipe_case(outdir, name, model, arch, conversions, seed=0, tolerance=1e-4):
    """One state dict (model.pth), converted once per entry of `conversions`
    ({"sets": [--set KEY=VALUE...], "sizes": [(h, w)...], "outputs": [graph output names]}),
    each checked at its sizes."""
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    model.eval()
    torch.save(model.state_dict(), os.path.join(d, "model.pth"))
    case = {"name": name, "arch": arch, "weights": os.path.join(d, "model.pth"), "conversions": []}
    for i, cv in enumerate(conversions):
        sub = os.path.join(d, "conv%d" % i)
        os.makedirs(sub, exist_ok=True)
        case["conversions"].append({"sets": list(cv.get("sets", [])), "output_names": cv["outputs"], "tolerance": tolerance,
                                    "sizes": save_sizes(sub, model, cv["sizes"], cv["outputs"], seed + i)})
    return case


def write_recipes(outdir, with_r101):
    from torchvision.models.segmentation import deeplabv3_resnet50, deeplabv3_resnet101
    cases = []
    rt.seed(0)
    # torchvision's own model, aux head included in the checkpoint (aux_loss=True).
    net = calibrate_(deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True), seed=1)
    cases.append(recipe_case(outdir, "deeplabv3_resnet50", net, "deeplabv3", [
        {"sizes": [(333, 517), (97, 129), (64, 64)], "outputs": ["out"]},
        # the same weights with the aux head converted as a second output
        {"sets": ["aux=true"], "sizes": [(81, 66)], "outputs": ["out", "aux"]}], seed=10))
    if with_r101:
        net = calibrate_(deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=7, aux_loss=False), seed=2)
        cases.append(recipe_case(outdir, "deeplabv3_resnet101", net, "deeplabv3", [{"sizes": [(73, 61)], "outputs": ["out"]}],
                                 seed=30))

    # GCN on torchvision's resnet18 (BasicBlock), k = 15 as in the paper, 21 classes.
    bb, widths = torchvision_backbone("resnet18")
    net = calibrate_(GCNNet(bb, widths, 21, k=15), seed=3)
    cases.append(recipe_case(outdir, "gcn_resnet18", net, "gcn", [{"sizes": [(160, 224), (127, 191)], "outputs": ["out"]}],
                             seed=40))

    # A tiny Bottleneck GCN with dilated layer3/layer4 and k = 21/15/9/5 per stage.
    bb = SmallResNet(planes=(8, 8, 16, 16), blocks=(1, 2, 1, 2), stem=8, replace_stride_with_dilation=(False, True, True))
    net = calibrate_(GCNNet(bb, bb.channels, 5, k=(21, 15, 9, 5)), seed=4)
    cases.append(recipe_case(outdir, "gcn_tiny_dilated", net, "gcn", [
        {"sets": ["replace_stride_with_dilation=[false,true,true]"], "sizes": [(67, 93), (48, 48)], "outputs": ["out"]}],
        seed=50))
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
    return cases


# ---- images for the CLI -----------------------------------------------------------
def write_images(outdir, recipes_dir):
    """Images in every format; the class map the tiny GCN model gives for one of them."""
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.RandomState(0)
    rgb = (rng.rand(37, 53, 3) * 255).astype(np.uint8)
    rgb[10:25, 12:40] = [200, 30, 30]
    Image.fromarray(rgb).save(os.path.join(outdir, "rgb_37x53.png"))
    Image.fromarray(rgb[:, :, 0]).save(os.path.join(outdir, "gray_37x53.png"))
    rgba = np.concatenate([rgb, np.full((37, 53, 1), 128, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(os.path.join(outdir, "rgba_37x53.png"))
    big = (rng.rand(101, 64, 3) * 255).astype(np.uint8)
    Image.fromarray(big).save(os.path.join(outdir, "photo_101x64.jpg"), quality=90)
    with open(os.path.join(outdir, "broken.png"), "wb") as f:  # a PNG signature, then garbage
        f.write(b"\x89PNG\r\n\x1a\n" + bytes(rng.randint(0, 256, 200).astype(np.uint8)))
    # Label maps as other tools write them: 4-bit indexed with a palette that repeats one
    # colour for every class (the indices are the labels, not the colours).
    ldir = os.path.join(os.path.dirname(outdir), "labels")
    os.makedirs(ldir, exist_ok=True)
    lab = rng.randint(0, 16, (13, 29)).astype(np.uint8)
    im = Image.fromarray(lab, "P")
    im.putpalette([0, 0, 0] * 16)
    im.save(os.path.join(ldir, "labels_4bit.png"), bits=4)
    np.save(os.path.join(ldir, "labels_4bit.npy"), lab.astype(np.int32))
    lab8 = rng.randint(0, 256, (9, 7)).astype(np.uint8)
    im = Image.fromarray(lab8, "P")
    im.putpalette([7, 7, 7] * 256)
    im.save(os.path.join(ldir, "labels_8bit.png"))
    np.save(os.path.join(ldir, "labels_8bit.npy"), lab8.astype(np.int32))
    with open(os.path.join(outdir, "notes.txt"), "w") as f:
        f.write("not an image\n")
    # Reference classes for rgb_37x53.png through the tiny GCN model's preprocessing
    # (x/255, ImageNet mean/std, RGB, no resize).
    d = os.path.join(recipes_dir, "gcn_tiny_dilated")
    bb = SmallResNet(planes=(8, 8, 16, 16), blocks=(1, 2, 1, 2), stem=8, replace_stride_with_dilation=(False, True, True))
    net = GCNNet(bb, bb.channels, 5, k=(21, 15, 9, 5)).eval()
    net.load_state_dict(torch.load(os.path.join(d, "model.pth")))
    x = torch.from_numpy(rgb).float().permute(2, 0, 1)[None] / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    scores = net((x - mean) / std)
    np.save(os.path.join(outdir, "rgb_37x53_classes.npy"), scores.argmax(1)[0].numpy().astype(np.int32))
    np.save(os.path.join(outdir, "rgb_37x53_scores.npy"), scores.numpy())


if __name__ == "__main__":
    write_blocks(os.path.join(OUT, "blocks"))
    write_recipes(os.path.join(OUT, "recipes"), with_r101=os.environ.get("ATROUS_SEG_R101", "1") == "1")
    write_images(os.path.join(OUT, "images"), os.path.join(OUT, "recipes"))
    print("wrote", OUT)
