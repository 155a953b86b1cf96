"""Writing reference cases for the C++ tests.

A case is a folder holding `case.json` (a graph in the JSON form of
engine/src/builder/graph_json.h plus test settings) and .npy files for the
graph inputs, the constants and the expected outputs. The C++ side builds the
graph, runs it with every kernel of the op under test, and compares.

    w = CaseWriter(outdir)
    w.case("conv_basic", graph, inputs={"x": x}, constants={"w": w}, outputs={"y": y})
"""
import json
import os

import numpy as np


class CaseWriter:
    def __init__(self, outdir):
        self.outdir = outdir
        os.makedirs(outdir, exist_ok=True)
        self.names = []

    def case(self, name, nodes, inputs, constants, outputs, op=None, tol=1e-4, shapes=None):
        """nodes: list of {"name", "op", "attrs", "inputs", "outputs"}; op: the op whose kernels are iterated."""
        assert name not in self.names, name
        self.names.append(name)
        d = os.path.join(self.outdir, name)
        os.makedirs(d, exist_ok=True)

        def arr(t):
            if hasattr(t, "detach"):
                t = t.detach().cpu().numpy()
            return np.ascontiguousarray(t)

        graph = {
            "inputs": [{"name": k, "dtype": dtype_of(arr(v)), "shape": list((shapes or {}).get(k, arr(v).shape))}
                       for k, v in inputs.items()],
            "nodes": nodes,
            "outputs": list(outputs.keys()),
        }
        for group in (inputs, constants, outputs):
            for k, v in group.items():
                np.save(os.path.join(d, safe(k) + ".npy"), arr(v))
        meta = {
            "graph": graph,
            "op": op or nodes[-1]["op"],
            "tol": tol,
            "inputs": list(inputs.keys()),
            "constants": list(constants.keys()),
            "outputs": list(outputs.keys()),
        }
        with open(os.path.join(d, "case.json"), "w") as f:
            json.dump(meta, f, indent=1)

    def finish(self):
        with open(os.path.join(self.outdir, "index.json"), "w") as f:
            json.dump(sorted(self.names), f, indent=1)


def safe(name):
    return name.replace("/", "_").replace(":", "_")


def dtype_of(a):
    return {"float32": "f32", "int64": "i64", "int32": "i32", "uint8": "u8", "float16": "f16"}[str(a.dtype)]


def node(name, op, inputs, attrs=None, outputs=None):
    return {"name": name, "op": op, "attrs": attrs or {}, "inputs": inputs, "outputs": outputs or [name]}
