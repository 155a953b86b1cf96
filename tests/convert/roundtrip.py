#!/usr/bin/python3
"""Round-trip harness for `atrous convert`: PyTorch reference -> files -> engine.

Run with /usr/bin/python3 (Debian's python3-torch). A family's case script
builds a seeded PyTorch model, then calls write_case(), which writes into
OUTDIR/<case>/:

    model.pth           torch.save(model.state_dict())
    model.safetensors   the same tensors, written by hand (8-byte header length,
                        JSON header, raw little-endian data)
    config.json         the recipe config (for --arch graph: the network)
    inputs.npz          the fixed inputs, named after the graph inputs
    outputs.npz         the reference outputs, named after the graph outputs, plus
                        reference intermediates named after modules (forward hooks),
                        which `--check` uses to find the first diverging node

and write_manifest() lists the cases in OUTDIR/manifest.json. The C++ side
(tests/convert/convert_roundtrip_test.cpp) converts every weight file of every
case with `atrous convert`, runs the engine and compares (f32: max abs error
<= 1e-4 x max |reference|), then repeats the conversion with --check. A new
family adds a case script (or a function here in make_convert_cases.py) and
no C++: see docs/converter.md, "Round-trip tests".

    import roundtrip as rt
    rt.seed(0)
    net = MyNet().eval(); rt.randomize_(net, seed=1)
    case = rt.write_case(out, "mynet", net, {"x": torch.randn(1, 3, 32, 32)},
                         arch="graph", config=MY_JSON, output_names=["y"],
                         intermediates=["backbone.conv1", "backbone.bn1"])
    rt.write_manifest(out, [case])
"""
import collections
import json
import os
import struct

import numpy as np
import torch

ST_CODES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
            torch.uint8: "U8", torch.bool: "BOOL"}


def seed(s):
    """Seeds torch and numpy (the reference must be the same on every run)."""
    torch.manual_seed(s)
    np.random.seed(s)


def randomize_(model, seed=0, scale=0.5):
    """Deterministic, non-trivial parameters and buffers: normal weights scaled by
    1/sqrt(fan-in), BatchNorm statistics away from 0/1 so a missed BN shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (scale / max(1.0, fan_in) ** 0.5))
            if name.endswith("weight") and p.dim() == 1:  # norm scales around 1
                p.add_(1.0)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model


def raw_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_pth(state_dict, path):
    torch.save(state_dict, path)


def save_safetensors(state_dict, path, metadata=None):
    """The safetensors format in a few lines: u64 header length, JSON header
    (name -> dtype, shape, [begin, end) in the data), header padded with spaces
    to 8 bytes, then the tensors' bytes back to back."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in state_dict.items():
        b = raw_bytes(t)
        header[name] = {"dtype": ST_CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def to_numpy(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        if t.dtype in (torch.float16, torch.bfloat16, torch.float64):
            t = t.float()
        return np.ascontiguousarray(t.numpy())
    return np.ascontiguousarray(t)


def save_npz(path, arrays):
    """name -> tensor/array; names may contain dots ("blocks.0.mlp.fc1")."""
    np.savez(path, **{k: to_numpy(v) for k, v in arrays.items()})


def run_with_hooks(model, inputs, modules=()):
    """Runs model(*inputs.values()) under no_grad; returns (outputs as a tuple,
    {module name: its output}) for the named modules (first tensor of a tuple output)."""
    captured = collections.OrderedDict()
    named = dict(model.named_modules())
    handles = []
    for m in modules:
        if m not in named:
            raise KeyError("no module %r in the model" % m)

        def hook(_mod, _inp, out, m=m):
            if isinstance(out, (tuple, list)):
                out = out[0]
            captured[m] = out.detach().clone()
        handles.append(named[m].register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(*inputs.values())
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, (tuple, list)):
        out = (out,)
    return tuple(out), captured


def write_case(outdir, name, model, inputs, arch, config, output_names, intermediates=(), sets=(),
               dtypes=("f32",), tolerance=None, state_dict=None):
    """Writes one round-trip case (see the module docstring) and returns its manifest entry.

    inputs: {graph input name: tensor}, passed positionally to model.forward.
    config: the recipe config (dict), written as config.json.
    output_names: graph output names, one per model output.
    intermediates: module names whose outputs are reference intermediates.
    sets: extra --set KEY=VALUE for the conversion.
    dtypes: --dtype values to convert with (each checked with its default tolerance).
    state_dict: what to save (default model.state_dict()).
    """
    model.eval()
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    sd = state_dict if state_dict is not None else model.state_dict()
    save_pth(sd, os.path.join(d, "model.pth"))
    save_safetensors(sd, os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    outs, inter = run_with_hooks(model, inputs, intermediates)
    if len(outs) != len(output_names):
        raise ValueError("%s: the model returns %d outputs, %d names given" % (name, len(outs), len(output_names)))
    save_npz(os.path.join(d, "inputs.npz"), inputs)
    refs = collections.OrderedDict(zip(output_names, outs))
    refs.update(inter)
    save_npz(os.path.join(d, "outputs.npz"), refs)
    return {
        "name": name,
        "arch": arch,
        "config": os.path.join(d, "config.json"),
        "weights": [os.path.join(d, "model.pth"), os.path.join(d, "model.safetensors")],
        "inputs": os.path.join(d, "inputs.npz"),
        "outputs": os.path.join(d, "outputs.npz"),
        "output_names": list(output_names),
        "intermediates": list(intermediates),
        "sets": list(sets),
        "dtypes": list(dtypes),
        "tolerance": tolerance,
    }


def write_manifest(outdir, cases, extra=None):
    doc = {"cases": cases}
    if extra:
        doc.update(extra)
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(doc, f, indent=1)
