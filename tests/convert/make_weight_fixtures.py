#!/usr/bin/python3
"""Writes the weight-reader test fixtures into OUTDIR.

Run with /usr/bin/python3 (the one with torch). Deterministic: seeded, and
the files depend only on torch/numpy versions.

Good fixtures are written by torch.save itself (and safetensors by hand, in
the format's few lines). For each one, manifest.json lists the tensors the C++
reader must return, in order, each with a raw file of the expected dense
little-endian bytes in the reported dtype (f64 -> f32, i16/i8 -> i32,
bool -> u8), plus expected conversions computed by numpy/torch as independent
references. Hostile fixtures are listed with the text their error must contain.
"""
import collections
import io
import json
import os
import pickle
import shutil
import struct
import sys
import zipfile

import numpy as np
import torch

OUT = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
EXPECTED = "expected"
manifest = {"good": {}, "bad": {}, "conversions": []}


def path(name):
    return os.path.join(OUT, name)


def reported(t):
    """(dtype name, bytes) as the C++ reader reports tensor t."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return "bf16", t.view(torch.int16).numpy().tobytes()
    a = t.numpy()
    table = {
        torch.float64: ("f32", np.float32), torch.float32: ("f32", np.float32),
        torch.float16: ("f16", np.float16), torch.int64: ("i64", np.int64),
        torch.int32: ("i32", np.int32), torch.int16: ("i32", np.int32),
        torch.int8: ("i32", np.int32), torch.uint8: ("u8", np.uint8), torch.bool: ("u8", np.uint8),
    }
    name, np_type = table[t.dtype]
    return name, a.astype(np_type).tobytes()


def write_expected(fixture, key, data):
    fname = "%s/%s__%s.bin" % (EXPECTED, fixture.replace("/", "_"), key.replace("/", "_"))
    with open(path(fname), "wb") as f:
        f.write(data)
    return fname


def expect(fixture, tensors, description=(), stored=None):
    """Records that `fixture` must yield exactly `tensors` (name -> torch tensor), in order."""
    entries = []
    for name, t in tensors.items():
        dtype, data = reported(t)
        e = {"name": name, "dtype": dtype, "shape": list(t.shape), "data": write_expected(fixture, name, data)}
        if stored is not None:
            e["stored"] = stored[name]
        entries.append(e)
    manifest["good"][fixture] = {"tensors": entries, "description": list(description)}


def expect_conversion(fixture, name, to, data):
    manifest["conversions"].append(
        {"fixture": fixture, "name": name, "to": to, "data": write_expected(fixture, name + "__as_" + to, data)})


def bad(fixture, *contains, code=None):
    manifest["bad"][fixture] = {"contains": list(contains), "code": code}


# ------------------------------------------------------------------ torch.save fixtures

def all_dtypes():
    g = torch.Generator().manual_seed(1)
    return collections.OrderedDict([
        ("f32", torch.randn(3, 4, generator=g)),
        ("f16", torch.randn(5, generator=g).half()),
        ("bf16", torch.randn(2, 3, generator=g).bfloat16()),
        ("f64", torch.randn(2, 2, generator=g).double()),
        ("i64", torch.tensor([-3, 0, 7, 2**40], dtype=torch.int64)),
        ("i32", torch.tensor([-5, 6], dtype=torch.int32)),
        ("i16", torch.tensor([-300, 257], dtype=torch.int16)),
        ("i8", torch.tensor([-128, 127], dtype=torch.int8)),
        ("u8", torch.tensor([0, 255, 7], dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("scalar", torch.tensor(1.5)),
        ("empty", torch.zeros(0, 3)),
    ])


def torch_fixtures():
    torch.manual_seed(0)
    sd = all_dtypes()
    torch.save(sd, path("basic.pth"))
    expect("basic.pth", sd, ["basic.pth", "top-level state dict", "12 tensors"],
           stored={k: k if k not in ("scalar", "empty") else "f32" for k in sd})

    # Independent references for conversions: numpy rounds f32/f64 -> f16
    # correctly; torch rounds f32 -> bf16 to nearest even.
    expect_conversion("basic.pth", "f32", "f16", sd["f32"].numpy().astype(np.float16).tobytes())
    expect_conversion("basic.pth", "f32", "bf16", sd["f32"].bfloat16().view(torch.int16).numpy().tobytes())
    expect_conversion("basic.pth", "f64", "f16", sd["f64"].numpy().astype(np.float16).tobytes())
    expect_conversion("basic.pth", "f64", "bf16", sd["f64"].bfloat16().view(torch.int16).numpy().tobytes())
    expect_conversion("basic.pth", "f16", "f32", sd["f16"].float().numpy().tobytes())
    expect_conversion("basic.pth", "bf16", "f32", sd["bf16"].float().numpy().tobytes())
    expect_conversion("basic.pth", "i32", "i64", sd["i32"].numpy().astype(np.int64).tobytes())
    expect_conversion("basic.pth", "u8", "i32", sd["u8"].numpy().astype(np.int32).tobytes())
    expect_conversion("basic.pth", "i8", "i64", sd["i8"].numpy().astype(np.int64).tobytes())
    expect_conversion("basic.pth", "i32", "f32", sd["i32"].numpy().astype(np.float32).tobytes())

    # A training checkpoint: the state dict sits under 'model' next to other things.
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 2))
    msd = net.state_dict()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(2, 3, 7, 7)).sum().backward()
    opt.step()
    torch.save({"epoch": 3, "model": msd, "optimizer": opt.state_dict(), "best": 0.5, "arch": "toy"},
               path("nested.pth"))
    expect("nested.pth", msd, ["state dict under 'model'"])

    # A plain nn.Module state dict: carries `_metadata` (set through BUILD).
    torch.save(msd, path("module.pth"))
    expect("module.pth", msd, ["top-level state dict", "9 tensors"])
    # Same, with pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL, SHORT_BINUNICODE).
    torch.save(msd, path("protocol4.pth"), pickle_protocol=4)
    expect("protocol4.pth", msd, ["top-level state dict"])

    # nn.DataParallel: every key starts with "module.".
    dp = collections.OrderedDict(("module." + k, v) for k, v in msd.items())
    torch.save(dp, path("dataparallel.pth"))
    expect("dataparallel.pth", msd, ["'module.' prefix removed"])

    # Only some keys prefixed: names are kept as they are.
    partial = collections.OrderedDict([("module.a", torch.ones(2)), ("b", torch.zeros(1))])
    torch.save(partial, path("partial_prefix.pth"))
    expect("partial_prefix.pth", partial, ["top-level state dict"])

    # Lightning-style: 'state_dict' wins over a 'model' entry that is not a dict of tensors.
    small = collections.OrderedDict([("w", torch.randn(2, 2)), ("b", torch.randn(2))])
    torch.save({"model": "resnet18", "state_dict": small, "epoch": 1}, path("lightning.pth"))
    expect("lightning.pth", small, ["state dict under 'state_dict'"])

    # Non-tensor leaves inside the state dict are skipped.
    mixed = collections.OrderedDict([("w", torch.arange(6.0).reshape(2, 3)), ("n", 5), ("cfg", {"a": 1}),
                                     ("note", "x"), ("flag", True), ("none", None), ("fs", [1.0, 2.5]),
                                     ("big", 2**62), ("neg", -(2**33)), ("v", torch.ones(1))])
    torch.save(mixed, path("mixed_leaves.pth"))
    expect("mixed_leaves.pth", collections.OrderedDict([("w", mixed["w"]), ("v", mixed["v"])]),
           ["2 tensors", "8 non-tensor entries skipped"])

    # Parameters (torch._utils._rebuild_parameter).
    p = torch.nn.Parameter(torch.randn(3))
    q = torch.nn.Parameter(torch.randn(2, 2), requires_grad=False)
    torch.save({"p": p, "q": q}, path("param.pth"))
    expect("param.pth", {"p": p, "q": q}, ["2 tensors"])

    # Shared storage: tied weights, views, non-contiguous and expanded tensors.
    w = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3
    shared = collections.OrderedDict([
        ("a", w), ("tied", w), ("row", w[1]), ("cols", w[:, 2:5]), ("strided", w[::2, ::3]),
        ("t", w.t()), ("elem", w[3, 5]), ("expanded", torch.tensor([1.0, 2.0, 3.0]).expand(4, 3)),
        ("h", w.half()[1:, ::2]),
    ])
    torch.save(shared, path("shared.pth"))
    expect("shared.pth", shared, ["9 tensors"])

    # The same checkpoints re-zipped with deflate: libzip decompresses and seeks by reading.
    for src, dst, tensors in (("shared.pth", "shared_deflated.pth", shared), ("basic.pth", "basic_deflated.pth", sd)):
        with zipfile.ZipFile(path(src)) as zin, zipfile.ZipFile(path(dst), "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                zout.writestr(info.filename, zin.read(info.filename))
        expect(dst, tensors, [dst])

    # Large enough that reading it whole would show in the peak RSS (32 MiB per tensor).
    big = collections.OrderedDict([("small", torch.arange(4.0)), ("big", torch.full((2048, 4096), 0.5))])
    torch.save(big, path("big.pth"))
    write_safetensors("big.safetensors", big)

    # A sharded PyTorch checkpoint with an index.
    os.makedirs(path("pt_sharded"), exist_ok=True)
    torch.save({"x": torch.ones(2)}, path("pt_sharded/part1.bin"))
    torch.save({"y": torch.zeros(3, dtype=torch.int64)}, path("pt_sharded/part2.bin"))
    with open(path("pt_sharded/pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": {"x": "part1.bin", "y": "part2.bin"}}, f)
    expect("pt_sharded/pytorch_model.bin.index.json",
           collections.OrderedDict([("x", torch.ones(2)), ("y", torch.zeros(3, dtype=torch.int64))]),
           ["shard index", "2 files"])


# ------------------------------------------------------------------ safetensors (by hand)

ST_CODES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
            torch.uint8: "U8", torch.bool: "BOOL"}


def raw_bytes(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(fname, tensors, metadata=None, header_override=None, tail=b""):
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        b = raw_bytes(t)
        header[name] = {"dtype": ST_CODES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = header_override if header_override is not None else json.dumps(header)
    hb = text.encode() if isinstance(text, str) else text
    hb += b" " * (-len(hb) % 8)  # the format pads the header to 8 bytes with spaces
    with open(path(fname), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs) + tail)


def safetensors_fixtures():
    sd = all_dtypes()
    write_safetensors("basic.safetensors", sd, metadata={"format": "pt"})
    expect("basic.safetensors", sd, ["safetensors file", "12 tensors"])

    os.makedirs(path("sharded"), exist_ok=True)
    g = torch.Generator().manual_seed(2)
    s1 = collections.OrderedDict([("embed.weight", torch.randn(4, 3, generator=g)),
                                  ("layer.0.weight", torch.randn(3, 3, generator=g).half())])
    s2 = collections.OrderedDict([("layer.1.weight", torch.randn(3, 3, generator=g).bfloat16()),
                                  ("head.bias", torch.randn(2, generator=g))])
    write_safetensors("sharded/model-00001-of-00002.safetensors", s1)
    write_safetensors("sharded/model-00002-of-00002.safetensors", s2)
    wm = {k: "model-00001-of-00002.safetensors" for k in s1}
    wm.update({k: "model-00002-of-00002.safetensors" for k in s2})
    with open(path("sharded/model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f, indent=2)
    both = collections.OrderedDict(list(s1.items()) + list(s2.items()))
    expect("sharded/model.safetensors.index.json", both, ["shard index", "2 files"])

    # Hostile headers. Each names the tensor it lies about.
    two = collections.OrderedDict([("a", torch.ones(2, 2)), ("b", torch.ones(3))])
    hdr = lambda a, b: json.dumps({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": a},
                                   "b": {"dtype": "F32", "shape": [3], "data_offsets": b}})
    write_safetensors("st_past_end.safetensors", two, header_override=hdr([0, 16], [16, 2016]))
    bad("st_past_end.safetensors", "st_past_end.safetensors", "tensor 'b'", "past the end")
    write_safetensors("st_overlap.safetensors", two, header_override=json.dumps(
        {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
         "b": {"dtype": "F32", "shape": [3], "data_offsets": [4, 16]}}))
    bad("st_overlap.safetensors", "tensor 'b'", "overlaps tensor 'a'")
    write_safetensors("st_wrong_length.safetensors", two, header_override=hdr([0, 12], [12, 24]))
    bad("st_wrong_length.safetensors", "tensor 'a'", "hold 12 bytes but F32 [2, 2] needs 16")
    write_safetensors("st_reversed.safetensors", two, header_override=hdr([16, 0], [16, 28]))
    bad("st_reversed.safetensors", "tensor 'a'", "end before they begin")
    write_safetensors("st_bad_dtype.safetensors", two, header_override=json.dumps(
        {"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}))
    bad("st_bad_dtype.safetensors", "tensor 'a'", "F8_E4M3", "not supported", code="unsupported")
    write_safetensors("st_negative_shape.safetensors", two, header_override=json.dumps(
        {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 16]}}))
    bad("st_negative_shape.safetensors", "tensor 'a'", "shape holds -1")
    write_safetensors("st_huge_shape.safetensors", two, header_override=json.dumps(
        {"a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}}))
    bad("st_huge_shape.safetensors", "tensor 'a'", "too many elements")
    write_safetensors("st_duplicate.safetensors", two, header_override=
                      '{"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, '
                      '"a": {"dtype": "F32", "shape": [3], "data_offsets": [16, 28]}}')
    bad("st_duplicate.safetensors", "tensor 'a' twice")
    write_safetensors("st_bad_json.safetensors", two, header_override='{"a": {"dtype": "F32", ')
    bad("st_bad_json.safetensors", "st_bad_json.safetensors", "not valid JSON")
    write_safetensors("st_missing_offsets.safetensors", two, header_override=json.dumps(
        {"a": {"dtype": "F32", "shape": [2, 2]}}))
    bad("st_missing_offsets.safetensors", "tensor 'a'", "data_offsets")
    with open(path("st_header_too_long.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", 10**6) + b'{"a": {}}')
    bad("st_header_too_long.safetensors", "header length 1000000 is larger than the rest of the file")
    with open(path("st_header_huge.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", 2**63 + 5) + b'{"a": {}}')
    bad("st_header_huge.safetensors", "header length", "larger than the rest of the file")

    # Index files a stranger could write.
    os.makedirs(path("bad_index"), exist_ok=True)
    write_safetensors("bad_index/one.safetensors", collections.OrderedDict([("x", torch.ones(2))]))
    write_safetensors("bad_index/dup.safetensors", collections.OrderedDict([("x", torch.zeros(2))]))
    with open(path("bad_index/missing.index.json"), "w") as f:
        json.dump({"weight_map": {"x": "one.safetensors", "ghost": "one.safetensors"}}, f)
    bad("bad_index/missing.index.json", "tensor 'ghost'", "does not hold it")
    with open(path("bad_index/escape.index.json"), "w") as f:
        json.dump({"weight_map": {"x": "../basic.safetensors"}}, f)
    bad("bad_index/escape.index.json", "'../basic.safetensors'", "not a path inside the index's folder")
    with open(path("bad_index/absent.index.json"), "w") as f:
        json.dump({"weight_map": {"x": "nowhere.safetensors"}}, f)
    bad("bad_index/absent.index.json", "nowhere.safetensors", "no such file", code="not found")
    with open(path("bad_index/dup.index.json"), "w") as f:
        json.dump({"weight_map": {"x": "one.safetensors", "y": "dup.safetensors"}}, f)
    bad("bad_index/dup.index.json", "tensor 'x' appears in both", "one.safetensors", "dup.safetensors")
    with open(path("bad_index/not_index.json"), "w") as f:
        json.dump({"hello": 1}, f)
    bad("bad_index/not_index.json", "weight_map", "not a shard index")


# ------------------------------------------------------------------ hostile torch files

class FakeStorage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class FakeTensor:
    """Pickles exactly as torch.save pickles a tensor, with any metadata we like."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (self.storage, self.offset, tuple(self.size), tuple(self.stride), False, collections.OrderedDict()))


class TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def fake_checkpoint(fname, obj, storages, folder="archive", pkl=None):
    if pkl is None:
        buf = io.BytesIO()
        TorchLikePickler(buf, protocol=2).dump(obj)
        pkl = buf.getvalue()
    with zipfile.ZipFile(path(fname), "w", zipfile.ZIP_STORED) as z:
        z.writestr(folder + "/data.pkl", pkl)
        for key, data in storages.items():
            z.writestr(folder + "/data/" + key, data)
        z.writestr(folder + "/version", "3\n")


class EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('echo pwned')",))


class EvilSystem:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def hostile_torch_fixtures():
    f4 = struct.pack("<4f", 1, 2, 3, 4)
    st = FakeStorage(torch.FloatStorage, "0", 4)

    # A crafted but honest checkpoint: the fake writer itself must be right.
    fake_checkpoint("fake_ok.pth", {"w": FakeTensor(st, 1, [3], [1])}, {"0": f4})
    expect("fake_ok.pth", {"w": torch.tensor([2.0, 3.0, 4.0])}, ["1 tensors"])

    # Code execution attempts, in the forms pickle writes them.
    fake_checkpoint("evil_os_system.pth", None, {}, pkl=b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.")
    bad("evil_os_system.pth", "pickle in", "evil_os_system.pth",
        "global 'os.system' is not allowed (only tensors, dicts, lists and numbers can be read)", code="unsupported")
    fake_checkpoint("evil_eval_protocol4.pth", None, {}, pkl=pickle.dumps(EvilEval(), protocol=4))
    bad("evil_eval_protocol4.pth", "global 'builtins.eval' is not allowed", code="unsupported")
    fake_checkpoint("evil_exec_protocol2.pth", None, {}, pkl=pickle.dumps(EvilEval(), protocol=2))
    bad("evil_exec_protocol2.pth", "global '__builtin__.eval' is not allowed", code="unsupported")
    # Hidden among real tensors, written by torch.save itself.
    torch.save({"w": torch.ones(2), "payload": EvilSystem()}, path("evil_in_state_dict.pth"))
    bad("evil_in_state_dict.pth", "global 'posix.system' is not allowed", code="unsupported")

    # Metadata that lies about the storage.
    fake_checkpoint("view_out_of_bounds.pth", {"w": FakeTensor(st, 0, [10], [1])}, {"0": f4})
    bad("view_out_of_bounds.pth", "tensor 'w'", "reaches element 9 but storage '0' holds 4 elements")
    fake_checkpoint("offset_out_of_bounds.pth", {"w": FakeTensor(st, 4, [1], [1])}, {"0": f4})
    bad("offset_out_of_bounds.pth", "tensor 'w'", "reaches element 4")
    fake_checkpoint("stride_out_of_bounds.pth", {"w": FakeTensor(st, 0, [2, 2], [3, 1])}, {"0": f4})
    bad("stride_out_of_bounds.pth", "tensor 'w'", "reaches element 4")
    fake_checkpoint("negative_stride.pth", {"w": FakeTensor(st, 3, [4], [-1])}, {"0": f4})
    bad("negative_stride.pth", "tensor 'w'", "negative stride -1")
    fake_checkpoint("negative_size.pth", {"w": FakeTensor(st, 0, [-4], [1])}, {"0": f4})
    bad("negative_size.pth", "tensor 'w'", "negative dimension")
    fake_checkpoint("overflow_view.pth", {"w": FakeTensor(st, 0, [2**40, 2**40], [2**40, 1])}, {"0": f4})
    bad("overflow_view.pth", "tensor 'w'")
    fake_checkpoint("missing_storage.pth", {"w": FakeTensor(FakeStorage(torch.FloatStorage, "7", 4), 0, [4], [1])},
                    {"0": f4})
    bad("missing_storage.pth", "storage '7' has no archive entry 'archive/data/7'")
    fake_checkpoint("short_storage.pth", {"w": FakeTensor(FakeStorage(torch.FloatStorage, "0", 8), 0, [4], [1])},
                    {"0": f4})
    bad("short_storage.pth", "tensor 'w'", "should hold 8 f32 elements but its entry has 16 bytes")
    fake_checkpoint("expand_bomb.pth", {"w": FakeTensor(st, 0, [2**20, 2**20], [0, 0])}, {"0": f4})
    bad("expand_bomb.pth", "tensor 'w'", "would expand to more than")
    fake_checkpoint("size_stride_mismatch.pth", {"w": FakeTensor(st, 0, [2, 2], [1])}, {"0": f4})
    bad("size_stride_mismatch.pth", "size has 2 dims but stride has 1")

    # Structure problems.
    good = open(path("basic.pth"), "rb").read()
    with zipfile.ZipFile(path("basic.pth")) as z:
        pkl_name = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
        pkl = z.read(pkl_name)
    fake_checkpoint("pickle_truncated.pth", None, {}, pkl=pkl[: len(pkl) // 2])
    bad("pickle_truncated.pth", "pickle in", "truncated")
    fake_checkpoint("pickle_no_stop.pth", None, {}, pkl=pkl[:-1])
    bad("pickle_no_stop.pth", "pickle ends without a STOP opcode")
    for frac in (0.1, 0.5, 0.9):
        cut = int(len(good) * frac)
        with open(path("truncated_%d.pth" % int(frac * 100)), "wb") as f:
            f.write(good[:cut])
        bad("truncated_%d.pth" % int(frac * 100), "cannot read the zip archive", "truncated or damaged")
    with open(path("truncated_eocd.pth"), "wb") as f:
        f.write(good[:-10])
    bad("truncated_eocd.pth", "truncated_eocd.pth", "truncated or damaged")

    # Central directory damage: signature overwritten; an entry's local-header offset pointing past the end.
    eocd = good.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack_from("<I", good, eocd + 16)[0]
    damaged = bytearray(good)
    damaged[cd_offset:cd_offset + 4] = b"XXXX"
    with open(path("corrupt_cd_signature.pth"), "wb") as f:
        f.write(damaged)
    bad("corrupt_cd_signature.pth", "cannot read the zip archive", "truncated or damaged")
    damaged = bytearray(good)
    struct.pack_into("<I", damaged, cd_offset + 42, len(good) + 1000)  # relative offset of local header
    with open(path("corrupt_cd_offset.pth"), "wb") as f:
        f.write(damaged)
    bad("corrupt_cd_offset.pth", "corrupt_cd_offset.pth", "damaged")
    damaged = bytearray(good)
    struct.pack_into("<I", damaged, eocd + 12, 0xFFFFFF00)  # central directory size
    zip64 = good.rfind(b"PK\x06\x06")  # torch writes zip64 end records; libzip prefers them
    if zip64 >= 0:
        struct.pack_into("<Q", damaged, zip64 + 40, 0xFFFFFF00)
    with open(path("corrupt_cd_size.pth"), "wb") as f:
        f.write(damaged)
    bad("corrupt_cd_size.pth", "cannot read the zip archive")

    # Formats we do not read, each with its own advice.
    torch.save({"w": torch.ones(2)}, path("legacy.pth"), _use_new_zipfile_serialization=False)
    bad("legacy.pth", "legacy.pth", "legacy torch.save format",
        "re-save with torch.save(..., _use_new_zipfile_serialization=True)", code="unsupported")
    torch.save([torch.ones(2), torch.zeros(3)], path("list_top.pth"))
    bad("list_top.pth", "top-level object is a list, not a dict")
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path("no_state_dict.pth"))
    bad("no_state_dict.pth", "no state dict found", "'epoch', 'optimizer'")
    torch.save(torch.nn.Linear(2, 2), path("whole_model.pth"))
    bad("whole_model.pth", "global 'torch.nn.modules.linear.Linear' is not allowed",
        "save model.state_dict() instead", code="unsupported")
    torch.save({"c": torch.ones(2, dtype=torch.complex64)}, path("complex.pth"))
    bad("complex.pth", "tensor storage type 'torch.ComplexFloatStorage' is not supported", code="unsupported")
    with open(path("plain.pkl"), "wb") as f:
        pickle.dump({"w": [1.0, 2.0]}, f, protocol=2)
    bad("plain.pkl", "a bare Python pickle, not a torch.save checkpoint", code="unsupported")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path("torchscript.pt"))
    bad("torchscript.pt", "TorchScript archive", code="unsupported")
    with zipfile.ZipFile(path("plain.zip"), "w") as z:
        z.writestr("readme.txt", "hello")
    bad("plain.zip", "not written by torch.save")
    with open(path("garbage.bin"), "wb") as f:
        f.write(bytes(range(7, 200)))
    bad("garbage.bin", "garbage.bin", "not a PyTorch checkpoint (zip), a safetensors file or a shard index")
    open(path("empty.pth"), "wb").close()
    bad("empty.pth", "empty.pth", "file is empty")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, EXPECTED))
    torch_fixtures()
    safetensors_fixtures()
    hostile_torch_fixtures()
    with open(path("manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print("wrote %d good and %d bad fixtures to %s" % (len(manifest["good"]), len(manifest["bad"]), OUT))


if __name__ == "__main__":
    main()
