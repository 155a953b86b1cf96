#!/usr/bin/python3
"""The worked example of docs/converter.md: a user's own PyTorch model.

Defines TinySeg (three strided conv-BN-ReLU stages, a 1x1 classifier, bilinear
upsampling back to the input size), gives it seeded weights in place of
training, and writes into OUTDIR:
  tinyseg.pth       torch.save(model.state_dict()), what training scripts save
  check_in.npz      a reference input  {"image": [1, 3, 96, 128]}
  check_out.npz     PyTorch's output {"scores": ...} and, for finding the first
                    layer that differs, the outputs of named modules (hooks)
  street.png        a synthetic picture for `atrous run`

    /usr/bin/python3 docs/examples/convert/tinyseg.py /tmp/tinyseg
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class TinySeg(nn.Module):
    def __init__(self, classes=4, widths=(16, 32, 64)):
        super().__init__()
        self.stages = nn.ModuleList()
        c = 3
        for w in widths:
            self.stages.append(nn.Sequential(nn.Conv2d(c, w, 3, stride=2, padding=1, bias=False),
                                             nn.BatchNorm2d(w), nn.ReLU(inplace=True)))
            c = w
        self.classifier = nn.Conv2d(c, classes, 1)

    def forward(self, image):
        y = image
        for s in self.stages:
            y = s(y)
        return F.interpolate(self.classifier(y), size=image.shape[-2:], mode="bilinear", align_corners=False)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tinyseg"
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = TinySeg()
    with torch.no_grad():  # stand-in for training: non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    torch.save(model.state_dict(), os.path.join(out, "tinyseg.pth"))

    image = torch.randn(1, 3, 96, 128)
    captured = {}
    for name in ["stages.0.0", "stages.0.1", "stages.0.2", "stages.1.2", "stages.2.2", "classifier"]:
        dict(model.named_modules())[name].register_forward_hook(
            lambda _m, _i, o, name=name: captured.__setitem__(name, o.detach().clone().numpy()))
    with torch.no_grad():
        scores = model(image)
    np.savez(os.path.join(out, "check_in.npz"), image=image.numpy())
    np.savez(os.path.join(out, "check_out.npz"), scores=scores.numpy(), **captured)

    # A picture: sky on top, a road below, a tree on the left.
    h, w = 120, 160
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (90, 150, 220)
    img[h // 2:] = (90, 90, 90)
    img[30:100, 20:50] = (40, 120, 40)
    from PIL import Image
    Image.fromarray(img).save(os.path.join(out, "street.png"))
    print("wrote tinyseg.pth, check_in.npz, check_out.npz, street.png to", out)


if __name__ == "__main__":
    main()
