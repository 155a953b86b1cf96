#!/usr/bin/python3
"""Trains the shapes demo model (models/shapes_gcn.atrous) on CPU in a few minutes.

The network is the `gcn` recipe's (tests/segmentation/gcn_net.py): a small
Bottleneck ResNet whose layer3 and layer4 use dilated 3x3 convolutions instead of
strides (output stride 8), a GCN block (k = 15) + Boundary Refinement on every stage,
and the upsampling path with BR blocks to full resolution. It learns to label the
synthetic scenes of shapes_data.py (background, circle, square, triangle, star).

    /usr/bin/python3 models/train_shapes_gcn.py --out /tmp/shapes [--steps 1500] [--threads 2]
    build/bin/atrous convert --arch gcn --config models/shapes_gcn.json /tmp/shapes/shapes_gcn.pth -o models/shapes_gcn.atrous

With --atrous PATH (the CLI) the script converts the weights itself, into --model.
Seeds are fixed; on two otherwise idle cores a step takes ~0.1 s (the defaults: ~6 minutes).
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "segmentation"))
import shapes_data  # noqa: E402
from gcn_net import GCNNet, SmallResNet  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


PLANES = (16, 32, 48, 64)
BLOCKS = (1, 2, 2, 1)


def build_model(planes=PLANES, blocks=BLOCKS):
    backbone = SmallResNet(planes=tuple(planes), blocks=tuple(blocks), stem=24,
                           replace_stride_with_dilation=(False, True, True))
    return GCNNet(backbone, backbone.channels, len(shapes_data.CLASSES), k=15)


def to_input(x_uint8):
    """[B, H, W, 3] uint8 -> normalised [B, 3, H, W], as the model file's preprocessing does."""
    x = torch.from_numpy(x_uint8).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


def miou(pred, gt, n):
    cm = np.bincount(gt.ravel() * n + pred.ravel(), minlength=n * n).reshape(n, n)
    iou = np.diag(cm) / np.maximum(cm.sum(0) + cm.sum(1) - np.diag(cm), 1)
    present = (cm.sum(0) + cm.sum(1)) > 0
    return iou[present].mean(), iou


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the weights (shapes_gcn.pth)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--train-scenes", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle schedule)")
    ap.add_argument("--planes", type=int, nargs=4, default=list(PLANES), help="Bottleneck widths of layer1..4")
    ap.add_argument("--blocks", type=int, nargs=4, default=list(BLOCKS), help="blocks in layer1..4")
    ap.add_argument("--init", help="start from these weights (a shapes_gcn.pth) instead of random ones: fine-tuning")
    ap.add_argument("--crop-range", type=int, nargs=2, metavar=("MIN", "MAX"),
                    help="train each batch on random crops MIN..MAX pixels high and (independently) wide of the "
                         "--size scenes: the model meets non-square sizes that are not multiples of its stride, "
                         "as in the held-out set")
    ap.add_argument("--atrous", help="the atrous CLI: convert the weights with it")
    ap.add_argument("--model", default=os.path.join(HERE, "shapes_gcn.atrous"), help="model file written with --atrous")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    rng = np.random.RandomState(a.seed)
    xs, ys = shapes_data.make_batch(rng, a.train_scenes, a.size, a.size)
    vx, vy = shapes_data.make_batch(np.random.RandomState(a.seed + 999), 64, a.size, a.size)
    if a.crop_range:  # validate at an odd, non-square size of the range
        vh, vw = min(a.size, a.crop_range[1]) - 5, (a.crop_range[0] + a.crop_range[1]) // 2 + 1
        vx, vy = np.ascontiguousarray(vx[:, :vh, :vw]), np.ascontiguousarray(vy[:, :vh, :vw])
    print("generated %d training scenes in %.0f s" % (len(xs), time.time() - t0), flush=True)

    model = build_model(a.planes, a.blocks).to(memory_format=torch.channels_last)  # faster oneDNN training on CPU
    if a.init:
        model.load_state_dict(torch.load(a.init))
        print("initialised from", a.init, flush=True)
    print("parameters: %d (%.2f MB as f32)" % (sum(p.numel() for p in model.parameters()),
                                               4e-6 * sum(p.numel() for p in model.parameters())), flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.1)
    n = len(shapes_data.CLASSES)
    # Classes are unbalanced (background ~75%): weight the loss a little towards shapes.
    weights = torch.tensor([0.5] + [1.0] * (n - 1))
    t1 = time.time()
    for step in range(a.steps):
        idx = rng.randint(0, len(xs), a.batch)
        bx, by = xs[idx], ys[idx]
        if a.crop_range:
            ch, cw = (min(int(v), a.size) for v in rng.randint(a.crop_range[0], a.crop_range[1] + 1, 2))
            oy, ox = rng.randint(a.size - ch + 1), rng.randint(a.size - cw + 1)
            bx, by = bx[:, oy:oy + ch, ox:ox + cw], by[:, oy:oy + ch, ox:ox + cw]
        k = rng.randint(4)  # rotations and flips: shapes have no orientation
        bx, by = np.rot90(bx, k, axes=(1, 2)), np.rot90(by, k, axes=(1, 2))
        if rng.rand() < 0.5:
            bx, by = bx[:, :, ::-1], by[:, :, ::-1]
        x = to_input(np.ascontiguousarray(bx)).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(np.ascontiguousarray(by)).long()
        model.train()
        loss = F.cross_entropy(model(x), y, weight=weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == a.steps - 1:
            model.eval()
            with torch.no_grad():
                pred = torch.cat([model(to_input(vx[i:i + 16])).argmax(1) for i in range(0, len(vx), 16)]).numpy()
            m, _ = miou(pred, vy, n)
            print("step %5d  loss %.4f  val MIoU %.4f  %.0f s" % (step, loss.item(), m, time.time() - t1), flush=True)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(to_input(vx[i:i + 16])).argmax(1) for i in range(0, len(vx), 16)]).numpy()
    m, per = miou(pred, vy, n)
    print("final val MIoU %.4f (per class %s), training %.0f s" % (m, " ".join("%.3f" % v for v in per), time.time() - t1))
    pth = os.path.join(a.out, "shapes_gcn.pth")
    torch.save(model.state_dict(), pth)
    print("wrote", pth)
    if a.atrous:
        cmd = [a.atrous, "convert", "--arch", "gcn", "--config", os.path.join(HERE, "shapes_gcn.json"), pth, "-o", a.model]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
