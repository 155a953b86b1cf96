#!/usr/bin/python3
"""Writes a large state dict (default 10 Linear layers of 8000 x 8000 f32, 2.56 GB)
as OUTDIR/large.pth and OUTDIR/large.safetensors, plus OUTDIR/large.json, a
--arch graph config for it. Used to measure the converter's peak memory
(docs/converter.md, "Large checkpoints"):

    /usr/bin/python3 tests/convert/make_large_checkpoint.py /tmp/large
    /usr/bin/time -v atrous convert --arch graph --config /tmp/large/large.json \\
        /tmp/large/large.pth -o /tmp/large/large.atrous
    rm -r /tmp/large

Not a ctest test: it needs ~8 GB of disk and a few GB of memory for torch.save.
"""
import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roundtrip as rt  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/large"
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 10
width = int(sys.argv[3]) if len(sys.argv) > 3 else 8000
os.makedirs(out, exist_ok=True)

g = torch.Generator().manual_seed(0)
sd = collections.OrderedDict()
for i in range(layers):
    sd["layers.%d.weight" % i] = torch.empty(width, width).uniform_(-1e-2, 1e-2, generator=g)
    sd["layers.%d.bias" % i] = torch.zeros(width)
torch.save(sd, os.path.join(out, "large.pth"))
rt.save_safetensors(sd, os.path.join(out, "large.safetensors"))
config = {
    "name": "large_mlp",
    "vars": {"width": {"shape_of": "layers.0.weight", "axis": 1}},
    "inputs": [{"name": "x", "shape": [-1, "$width"]}],
    "nodes": [{"repeat": {"prefix": "layers.{i}", "count": "auto", "input": "x", "as": "y", "nodes": [
        {"op": "Linear", "params": "{prefix}", "attrs": {"activation": "Relu"}, "inputs": ["{prev}"]}]}}],
    "outputs": ["y"],
}
with open(os.path.join(out, "large.json"), "w") as f:
    json.dump(config, f, indent=1)
total = sum(t.numel() * t.element_size() for t in sd.values())
print("wrote %d tensors, %.2f GB, to %s" % (len(sd), total / 1e9, out))
