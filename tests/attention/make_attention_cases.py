"""Reference cases for the attention nodes, computed live with PyTorch.

Usage: /usr/bin/python3 make_attention_cases.py OUTDIR

Each reference is a small nn.Module written from the formulas of the reference
implementation it stands for, with that implementation's parameter names, so the
state-dict keys below are the ones a converter maps (docs/ops/attention.md):
  SamAttention          segment-anything Attention (q_proj, k_proj, v_proj, out_proj)
  FastLinearAttention   idiap/fast-transformers AttentionLayer + (Causal)LinearAttention
  PerformerAttention    lucidrains/performer-pytorch master Attention + FastAttention
  NormLinearAttention   OpenNLPLab/fairseq-evo NormLinearAttention / NormLocalAttention
  GAU, FLASH            lucidrains/FLASH-pytorch master
  LiteMLA               mit-han-lab/efficientvit LiteMLA
References run in float64 on the float32 inputs and weights. Every case is run by
attention_test.cpp with every kernel of its op; cases with a "step" file are also
run token by token through a one-token "step" entry point that carries the state.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
from refcase import CaseWriter, node  # noqa: E402

torch.manual_seed(0)
torch.set_grad_enabled(False)
torch.set_num_threads(2)
W = CaseWriter(sys.argv[1])
D64 = torch.float64


def rnd(*s, scale=1.0):
    return torch.randn(*s) * scale


def f32(t):
    return t.to(torch.float32)


def linear(i, o, bias=True):
    m = nn.Linear(i, o, bias=bias)
    nn.init.normal_(m.weight, std=i ** -0.5)
    if bias:
        nn.init.normal_(m.bias, std=0.1)
    return m


def proj_inputs(mod, names, key_input="k", value_input="v"):
    """Inputs 0-10 of a projected attention node from a module's four Linears."""
    q, k, v, o = names
    consts, ins = {}, ["q", key_input, value_input]
    for n in (q, k, v, o):
        lin = getattr(mod, n)
        consts[n + ".weight"] = lin.weight
        ins.append(n + ".weight")
        if lin.bias is not None:
            consts[n + ".bias"] = lin.bias
            ins.append(n + ".bias")
        else:
            ins.append(None)
    return ins, consts


def wcase(name, nodes, inputs, consts, outputs, tol=1e-4):
    """W.case with every floating tensor as float32 (modules ran in float64)."""
    cast = lambda d: {k: (f32(v) if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in d.items()}  # noqa: E731
    W.case(name, nodes, cast(inputs), cast(consts), cast(outputs), tol=tol)


def write_step(name, step_graph, tokens, states, out="y"):
    """A one-token entry point: `tokens` are sliced along dim 1 of the case inputs;
    `states` pairs each state input with the node output that updates it."""
    with open(os.path.join(W.outdir, name, "step.json"), "w") as f:
        json.dump({"graph": step_graph, "tokens": tokens, "states": states, "output": out}, f, indent=1)


def run64(mod, *args, **kw):
    return f32(mod.double()(*[a.double() if torch.is_tensor(a) else a for a in args], **kw))


# ---- MultiHeadAttention (segment-anything Attention) --------------------------------
class SamAttention(nn.Module):
    def __init__(self, dim, heads, downsample=1, bias=True):
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = (linear(dim, inner, bias) for _ in range(3))
        self.out_proj = linear(inner, dim, bias)

    def forward(self, q, k, v, causal=False, bias=None):
        b = q.shape[0]
        q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)
        sp = lambda t: t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = sp(q), sp(k), sp(v)
        attn = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if bias is not None:
            attn = attn + bias
        if causal:
            lq, lk = attn.shape[-2:]
            attn = attn.masked_fill(torch.ones(lq, lk, dtype=torch.bool).triu(lk - lq + 1), float("-inf"))
        out = attn.softmax(-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, out.shape[2], -1))


def mha_case(name, b, lq, dim, heads, causal=False, lk=None, downsample=1, bias=None, cross=False, qkv_bias=True,
             residual=False):
    lk = lk or lq
    mod = SamAttention(dim, heads, downsample, qkv_bias)
    x = rnd(b, lq, dim)
    inputs = {"q": x}
    if cross:
        keys, pe = rnd(b, lk, dim), rnd(b, lk, dim)
        inputs.update({"k": keys + pe, "v": keys})
        kin, vin = "k", "v"
        y = run64(mod, x, keys + pe, keys, causal=causal, bias=None if bias is None else bias.double())
    else:
        kin = vin = None
        y = run64(mod, x, x, x, causal=causal, bias=None if bias is None else bias.double())
    ins, consts = proj_inputs(mod, ("q_proj", "k_proj", "v_proj", "out_proj"), kin, vin)
    if bias is not None:
        inputs["bias"] = bias
        ins.append("bias")
    if residual:  # input 12: y = attention + residual
        inputs["r"] = rnd(b, lq, dim)
        ins += ([] if bias is not None else [None]) + ["r"]
        y = y + inputs["r"].double()
    wcase(name, [node("attn", "MultiHeadAttention", ins, {"num_heads": heads, "causal": causal}, ["y"])],
           inputs, consts, {"y": y})


mha_case("mha_len1", 1, 1, 32, 2)
mha_case("mha_len7_causal_b2_head16", 2, 7, 48, 3, causal=True)
pad = torch.zeros(2, 1, 1, 64)
pad[1, 0, 0, 50:] = float("-inf")  # key padding of the second batch item
mha_case("mha_len64_padmask_b2_head32", 2, 64, 64, 2, bias=pad)
mha_case("mha_cross_sam_downsample2_head16", 1, 7, 64, 2, lk=64, downsample=2, cross=True)
mha_case("mha_cross_causal_cache", 2, 5, 32, 2, lk=70, causal=True, cross=True, qkv_bias=False)
mha_case("mha_len1000_causal_head64", 1, 1000, 64, 1, causal=True)
mha_case("mha_len1000_bias2d_head32", 1, 1000, 64, 2, bias=rnd(1000, 1000))
mha_case("mha_len600_b2_tiles", 2, 600, 96, 3, bias=rnd(3, 600, 600))
mha_case("mha_len333_b2_residual", 2, 333, 64, 2, residual=True)
mha_case("mha_len70_causal_bias_residual", 1, 70, 32, 2, causal=True, bias=rnd(2, 70, 70), residual=True)
mha_case("mha_len4097_causal_head17", 1, 4097, 34, 1, downsample=2, causal=True)


# ---- LinearAttention (fast-transformers) ----------------------------------------------
def elu1(x):
    return F.elu(x) + 1


def linear_attention_math(q, k, v, causal, eps, fq=elu1, fk=elu1, den_eps_qsum=0.0, no_den=False):
    """q, k [N, H, L, D], v [N, H, L, M]: the quadratic form of the linear attention."""
    Q, K = fq(q), fk(k)
    A = Q @ K.transpose(-1, -2)
    if causal:
        A = A.tril()
    num = A @ v
    if no_den:
        return num
    den = A.sum(-1, keepdim=True) + eps + den_eps_qsum * Q.sum(-1, keepdim=True)
    return num / den


class FastLinearAttention(nn.Module):
    """fast-transformers AttentionLayer(LinearAttention or CausalLinearAttention)."""

    def __init__(self, d_model, n_heads, d_keys=None, d_values=None):
        super().__init__()
        d_keys = d_keys or d_model // n_heads
        d_values = d_values or d_model // n_heads
        self.h = n_heads
        self.query_projection = linear(d_model, d_keys * n_heads)
        self.key_projection = linear(d_model, d_keys * n_heads)
        self.value_projection = linear(d_model, d_values * n_heads)
        self.out_projection = linear(d_values * n_heads, d_model)

    def forward(self, x, causal, keys=None, values=None):
        n, l, _ = x.shape
        keys = x if keys is None else keys
        values = keys if values is None else values
        sp = lambda t: t.reshape(n, t.shape[1], self.h, -1).transpose(1, 2)  # noqa: E731  (N, L, H, E) -> (N, H, L, E)
        q, k, v = sp(self.query_projection(x)), sp(self.key_projection(keys)), sp(self.value_projection(values))
        out = linear_attention_math(q, k, v, causal, 1e-6)
        return self.out_projection(out.transpose(1, 2).reshape(n, l, -1))


def state_step_graph(op, attrs, ins, state_names, state_shapes, nout):
    g = {"inputs": [{"name": "q", "dtype": "f32", "shape": [-1, 1, -1]}] +
         [{"name": s, "dtype": "f32", "shape": list(sh)} for s, sh in zip(state_names, state_shapes)],
         "nodes": [node("attn", op, ins + state_names, attrs, ["y"] + [s + "_out" for s in state_names])],
         "outputs": ["y"] + [s + "_out" for s in state_names]}
    return g


def lin_case(name, b, l, dim, heads, causal, step=False):
    mod = FastLinearAttention(dim, heads)
    x = rnd(b, l, dim)
    y = run64(mod, x, causal)
    ins, consts = proj_inputs(mod, ("query_projection", "key_projection", "value_projection", "out_projection"), None, None)
    attrs = {"num_heads": heads, "causal": causal}
    wcase(name, [node("attn", "LinearAttention", ins, attrs, ["y"])], {"q": x}, consts, {"y": y})
    if step:
        d = dim // heads
        write_step(name, state_step_graph("LinearAttention", attrs, ins, ["state_kv", "state_z"], [(b, heads, d, d), (b, heads, d)], 3),
                   ["q"], {"state_kv": "state_kv_out", "state_z": "state_z_out"})


lin_case("linear_len1", 1, 1, 32, 2, False)
lin_case("linear_len7_causal_b2_head16", 2, 7, 48, 3, True, step=True)
lin_case("linear_len64_b2_head32", 2, 64, 64, 2, False)
lin_case("linear_len64_causal_head64", 1, 64, 128, 2, True, step=True)
lin_case("linear_len1000_causal_head17", 1, 1000, 51, 3, True, step=True)
lin_case("linear_len1000_head64", 2, 1000, 64, 1, False)
lin_case("linear_len4097_causal_head32", 1, 4097, 64, 2, True)


def lin_cross_case(name, b, lq, lk, dim, heads, d_keys, d_values):
    """Non-causal cross attention: separate key and value inputs of another length, and
    value heads wider than key heads."""
    mod = FastLinearAttention(dim, heads, d_keys, d_values)
    x, keys, values = rnd(b, lq, dim), rnd(b, lk, dim), rnd(b, lk, dim)
    y = run64(mod, x, False, keys, values)
    ins, consts = proj_inputs(mod, ("query_projection", "key_projection", "value_projection", "out_projection"), "k", "v")
    wcase(name, [node("attn", "LinearAttention", ins, {"num_heads": heads, "causal": False}, ["y"])],
          {"q": x, "k": keys, "v": values}, consts, {"y": y})


lin_cross_case("linear_cross_lq300_lk700_b2_dk16_dv24", 2, 300, 700, 64, 3, 16, 24)


# ---- PerformerAttention (performer-pytorch master) ------------------------------------
def orthogonal_matrix_chunk(cols):
    q, _ = torch.linalg.qr(torch.randn((cols, cols)), mode="reduced")
    return q.t()


def gaussian_orthogonal_random_matrix(nb_rows, nb_columns, scaling=0):
    blocks = [orthogonal_matrix_chunk(nb_columns) for _ in range(nb_rows // nb_columns)]
    rem = nb_rows - (nb_rows // nb_columns) * nb_columns
    if rem > 0:
        blocks.append(orthogonal_matrix_chunk(nb_columns)[:rem])
    final = torch.cat(blocks)
    mult = torch.randn((nb_rows, nb_columns)).norm(dim=1) if scaling == 0 else math.sqrt(float(nb_columns)) * torch.ones((nb_rows,))
    return torch.diag(mult) @ final


def softmax_kernel(data, projection_matrix, is_query, eps=1e-4, per_token_keys=False):
    data_normalizer = data.shape[-1] ** -0.25
    ratio = projection_matrix.shape[0] ** -0.5
    data_dash = torch.einsum("...id,...jd->...ij", data_normalizer * data, projection_matrix.type_as(data))
    diag_data = ((data ** 2).sum(-1) / 2.0 * data_normalizer ** 2).unsqueeze(-1)
    if is_query or per_token_keys:
        return ratio * (torch.exp(data_dash - diag_data - torch.amax(data_dash, dim=-1, keepdim=True)) + eps)
    return ratio * (torch.exp(data_dash - diag_data - torch.amax(data_dash, dim=(-1, -2), keepdim=True)) + eps)


class FastAttention(nn.Module):
    def __init__(self, dim_heads, nb_features=None, causal=False):
        super().__init__()
        nb_features = nb_features or int(dim_heads * math.log(dim_heads))
        self.causal = causal
        self.register_buffer("projection_matrix", gaussian_orthogonal_random_matrix(nb_features, dim_heads))

    def forward(self, q, k, v, per_token_keys=False):
        q = softmax_kernel(q, self.projection_matrix, True)
        k = softmax_kernel(k, self.projection_matrix, False, per_token_keys=per_token_keys)
        if not self.causal:  # linear_attention: no eps
            D_inv = 1.0 / torch.einsum("...nd,...d->...n", q, k.sum(dim=-2))
            context = torch.einsum("...nd,...ne->...de", k, v)
            return torch.einsum("...de,...nd,...n->...ne", context, q, D_inv)
        # causal_linear_attention(_noncuda): k_cumsum + eps on every feature, inclusive
        return linear_attention_math(q, k, v, True, 0.0, fq=lambda t: t, fk=lambda t: t, den_eps_qsum=1e-6)


class PerformerSelfAttention(nn.Module):
    def __init__(self, dim, heads, dim_head, causal, nb_features=None, qkv_bias=False):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.fast_attention = FastAttention(dim_head, nb_features, causal)
        self.to_q, self.to_k, self.to_v = (linear(dim, inner, qkv_bias) for _ in range(3))
        self.to_out = linear(inner, dim, True)

    def forward(self, x, per_token_keys=False):
        b, n, _ = x.shape
        sp = lambda t: t.reshape(b, n, self.heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = sp(self.to_q(x)), sp(self.to_k(x)), sp(self.to_v(x))
        out = self.fast_attention(q, k, v, per_token_keys)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


def performer_case(name, b, l, dim, heads, dim_head, causal, per_token=False, nb_features=None, step=False, x_scale=1.0,
                   ramp=None):
    mod = PerformerSelfAttention(dim, heads, dim_head, causal, nb_features)
    x = rnd(b, l, dim, scale=x_scale)
    if ramp is not None:  # token scales rising from ramp[0] to ramp[1]: later key blocks raise the head's max
        x = x * torch.linspace(ramp[0], ramp[1], l, dtype=x.dtype).reshape(1, l, 1)
    y = run64(mod, x, per_token)
    ins, consts = proj_inputs(mod, ("to_q", "to_k", "to_v", "to_out"), None, None)
    pm = "fast_attention.projection_matrix"
    consts[pm] = f32(mod.fast_attention.projection_matrix)
    attrs = {"num_heads": heads, "causal": causal, "key_max": "PerToken" if per_token else "PerHead"}
    wcase(name, [node("attn", "PerformerAttention", ins + [pm], attrs, ["y"])], {"q": x}, consts, {"y": y})
    if step:
        m = consts[pm].shape[0]
        write_step(name, state_step_graph("PerformerAttention", attrs, ins + [pm], ["state_kv", "state_z"],
                                          [(b, heads, m, dim_head), (b, heads, m)], 3),
                   ["q"], {"state_kv": "state_kv_out", "state_z": "state_z_out"})


performer_case("performer_len1", 1, 1, 32, 2, 16, False)
performer_case("performer_len7_b2_head16", 2, 7, 32, 2, 16, False)
performer_case("performer_len64_causal_b2_head32_pertoken", 2, 64, 64, 2, 32, True, per_token=True, step=True)
performer_case("performer_len64_causal_head64", 1, 64, 64, 1, 64, True, x_scale=0.5)
performer_case("performer_len1000_b2_head17", 2, 1000, 40, 2, 17, False)
performer_case("performer_len1000_causal_head16_pertoken", 1, 1000, 32, 2, 16, True, per_token=True, step=True)
performer_case("performer_len4097_causal_head16", 1, 4097, 32, 2, 16, True)
performer_case("performer_len600_b2_head32_pertoken", 2, 600, 64, 2, 32, False, per_token=True)
performer_case("performer_len1500_head32_rising", 1, 1500, 64, 2, 32, False, ramp=(0.3, 1.5))
performer_case("performer_len700_causal_head32_rising", 1, 700, 64, 2, 32, True, ramp=(0.3, 1.5))


# ---- NormAttention (TransNormer, fairseq-evo) ------------------------------------------
class SimpleRMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.d, self.eps = d, eps

    def forward(self, x):
        return x / (x.norm(2, dim=-1, keepdim=True) * self.d ** -0.5 + self.eps)


class RMSNorm(SimpleRMSNorm):
    def __init__(self, d, eps=1e-8):
        super().__init__(d, eps)
        self.scale = nn.Parameter(1 + 0.1 * torch.randn(d))

    def forward(self, x):
        return self.scale * super().forward(x)


class GatedRMSNorm(RMSNorm):
    def __init__(self, d, eps=1e-8):
        super().__init__(d, eps)
        self.gate = nn.Parameter(torch.randn(d))

    def forward(self, x):
        return super().forward(x) * torch.sigmoid(self.gate * x)


class NormLinearAttention(nn.Module):
    """fairseq-evo NormLinearAttention (block_size 0) or NormLocalAttention.forward_chunk,
    batch-first; heads contiguous slices of E."""

    def __init__(self, e, heads, norm, block=0, act="elu"):
        super().__init__()
        self.h, self.block, self.act = heads, block, act
        self.q_proj, self.k_proj, self.v_proj = (linear(e, e) for _ in range(3))
        self.out_proj = linear(e, e)
        self.norm_type = norm
        if norm == "LayerNorm":
            self.layer_norm = nn.LayerNorm(e)
            nn.init.normal_(self.layer_norm.weight, 1.0, 0.1)
            nn.init.normal_(self.layer_norm.bias, 0.0, 0.1)
        elif norm == "RMSNorm":
            self.layer_norm = RMSNorm(e)
        elif norm == "GatedRMSNorm":
            self.gated_rms_norm = GatedRMSNorm(e)
        else:
            self.layer_norm = SimpleRMSNorm(e, 1e-4)

    def forward(self, x, causal):
        b, l, e = x.shape
        sp = lambda t: t.view(b, l, self.h, -1).transpose(1, 2)  # noqa: E731
        act = {"elu": F.elu, "relu": F.relu}[self.act]
        if self.block == 0:
            q, k, v = act(sp(self.q_proj(x))), act(sp(self.k_proj(x))), sp(self.v_proj(x))
            if causal:
                out = ((q @ k.transpose(-1, -2)).tril()) @ v
            else:
                out = q @ (k.transpose(-1, -2) @ v)
        else:
            d = e // self.h
            q, k, v = sp(self.q_proj(x) * d ** -0.5), sp(self.k_proj(x)), sp(self.v_proj(x))
            pad = (-l) % self.block
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
            g = (l + pad) // self.block
            q, k, v = (t.reshape(b, self.h, g, self.block, -1) for t in (q, k, v))
            prob = act(q @ k.transpose(-1, -2))
            if causal:
                prob = prob.masked_fill(torch.ones(self.block, self.block, dtype=torch.bool).triu(1), 0)
            out = (prob @ v).reshape(b, self.h, l + pad, -1)[:, :, :l]
        out = out.transpose(1, 2).reshape(b, l, e)
        out = self.gated_rms_norm(out) if self.norm_type == "GatedRMSNorm" else self.layer_norm(out)
        return self.out_proj(out)


def norm_case(name, b, l, e, heads, causal, norm="LayerNorm", block=0, act="elu", step=False):
    mod = NormLinearAttention(e, heads, norm, block, act)
    x = rnd(b, l, e)
    y = run64(mod, x, causal)
    ins, consts = proj_inputs(mod, ("q_proj", "k_proj", "v_proj", "out_proj"), None, None)
    eps = {"LayerNorm": 1e-5, "RMSNorm": 1e-8, "GatedRMSNorm": 1e-8, "SimpleRMSNorm": 1e-4}[norm]
    if norm == "LayerNorm":
        consts.update({"layer_norm.weight": mod.layer_norm.weight, "layer_norm.bias": mod.layer_norm.bias})
        ins += ["layer_norm.weight", "layer_norm.bias"]
    elif norm == "RMSNorm":
        consts["layer_norm.scale"] = mod.layer_norm.scale
        ins += ["layer_norm.scale", None]
    elif norm == "GatedRMSNorm":
        consts.update({"gated_rms_norm.scale": mod.gated_rms_norm.scale, "gated_rms_norm.gate": mod.gated_rms_norm.gate})
        ins += ["gated_rms_norm.scale", "gated_rms_norm.gate"]
    else:
        ins += [None, None]
    attrs = {"num_heads": heads, "causal": causal, "block_size": block, "act": {"elu": "Elu", "relu": "Relu"}[act],
             "norm": norm, "norm_eps": eps}
    wcase(name, [node("attn", "NormAttention", ins, attrs, ["y"])], {"q": x}, consts, {"y": y})
    if step:
        d = e // heads
        write_step(name, state_step_graph("NormAttention", attrs, ins, ["state_kv"], [(b, heads, d, d)], 2),
                   ["q"], {"state_kv": "state_kv_out"})


norm_case("norm_len1", 1, 1, 32, 2, False)
norm_case("norm_len7_causal_b2_rms_head16", 2, 7, 48, 3, True, norm="RMSNorm", step=True)
norm_case("norm_len64_simplerms_head32", 2, 64, 64, 2, False, norm="SimpleRMSNorm")
norm_case("norm_len1000_causal_head64", 1, 1000, 128, 2, True, step=True)
norm_case("norm_len4097_causal_head17", 1, 4097, 34, 2, True)
norm_case("norm_block32_len7", 1, 7, 32, 2, False, norm="GatedRMSNorm", block=32, act="relu")
norm_case("norm_block32_len100_causal_b2", 2, 100, 64, 4, True, norm="GatedRMSNorm", block=32, act="relu")
norm_case("norm_block64_len1000", 1, 1000, 64, 2, False, norm="GatedRMSNorm", block=64, act="relu")


# ---- GatedAttentionUnit (FLASH-pytorch master: GAU and FLASH) --------------------------
class ScaleNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.scale, self.eps = dim ** -0.5, eps
        self.g = nn.Parameter(torch.ones(1) * 1.3)

    def forward(self, x):
        norm = torch.norm(x, dim=-1, keepdim=True) * self.scale
        return x / norm.clamp(min=self.eps) * self.g


class T5RelativePositionBias(nn.Module):
    def __init__(self, scale, causal=False, num_buckets=32, max_distance=128):
        super().__init__()
        self.scale, self.causal, self.num_buckets, self.max_distance = scale, causal, num_buckets, max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, 1)

    @staticmethod
    def _relative_position_bucket(relative_position, causal=True, num_buckets=32, max_distance=128):
        ret = 0
        n = -relative_position
        if not causal:
            num_buckets //= 2
            ret += (n < 0).long() * num_buckets
            n = torch.abs(n)
        else:
            n = torch.max(n, torch.zeros_like(n))
        max_exact = num_buckets // 2
        is_small = n < max_exact
        val_if_large = max_exact + (torch.log(n.float() / max_exact) / math.log(max_distance / max_exact) *
                                    (num_buckets - max_exact)).long()
        val_if_large = torch.min(val_if_large, torch.full_like(val_if_large, num_buckets - 1))
        ret += torch.where(is_small, n, val_if_large)
        return ret

    def forward(self, x):
        i, j = x.shape[-2:]
        rel_pos = torch.arange(j)[None, :] - torch.arange(i)[:, None]
        bucket = self._relative_position_bucket(rel_pos, causal=self.causal, num_buckets=self.num_buckets,
                                                max_distance=self.max_distance)
        return self.relative_attention_bias(bucket)[..., 0] * self.scale


class OffsetScale(nn.Module):
    def __init__(self, dim, heads=1):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(heads, dim) * 0.5)  # upstream: std 0.02; larger to exercise relu²
        self.beta = nn.Parameter(torch.randn(heads, dim) * 0.1)

    def forward(self, x):
        return (torch.einsum("... d, h d -> ... h d", x, self.gamma) + self.beta).unbind(dim=-2)


def laplace(x):
    mu, std = math.sqrt(0.5), math.sqrt((4 * math.pi) ** -1)
    return (1 + torch.special.erf((x - mu) / (std * math.sqrt(2)))) * 0.5


def relu2(x):
    return F.relu(x) ** 2


class GAU(nn.Module):
    def __init__(self, dim, qk=32, expansion=2.0, causal=False, laplace_attn=False, norm="LayerNorm"):
        super().__init__()
        hidden = int(expansion * dim)
        self.causal, self.attn_fn = causal, laplace if laplace_attn else relu2
        self.norm = nn.LayerNorm(dim) if norm == "LayerNorm" else ScaleNorm(dim)
        self.to_hidden = nn.Sequential(linear(dim, hidden * 2), nn.SiLU())
        self.to_qk = nn.Sequential(linear(dim, qk), nn.SiLU())
        self.offsetscale = OffsetScale(qk, heads=2)
        self.to_out = nn.Sequential(linear(hidden, dim), nn.Dropout(0.0))
        self.rel_pos_bias = T5RelativePositionBias(scale=dim ** 0.5, causal=causal)
        nn.init.normal_(self.rel_pos_bias.relative_attention_bias.weight, std=0.05)

    def forward(self, x):
        n = x.shape[-2]
        normed_x = self.norm(x)
        v, gate = self.to_hidden(normed_x).chunk(2, dim=-1)
        q, k = self.offsetscale(self.to_qk(normed_x))
        sim = torch.einsum("b i d, b j d -> b i j", q, k)
        sim = sim + self.rel_pos_bias(sim)
        attn = self.attn_fn(sim / n)
        if self.causal:
            attn = attn.masked_fill(torch.ones((n, n), dtype=torch.bool).triu(1), 0.0)
        out = torch.einsum("b i j, b j d -> b i d", attn, v) * gate
        return self.to_out(out) + x


class FLASH(nn.Module):
    def __init__(self, dim, group_size=256, qk=32, expansion=2.0, causal=False, laplace_attn=False, norm="LayerNorm",
                 shift_tokens=False, reduce_group_non_causal_attn=True):
        super().__init__()
        hidden = int(expansion * dim)
        self.group_size, self.causal, self.shift_tokens = group_size, causal, shift_tokens
        self.reduce = reduce_group_non_causal_attn
        self.attn_fn = laplace if laplace_attn else relu2
        self.norm = nn.LayerNorm(dim) if norm == "LayerNorm" else ScaleNorm(dim)
        self.rel_pos_bias = T5RelativePositionBias(qk ** 0.5, causal=causal)
        nn.init.normal_(self.rel_pos_bias.relative_attention_bias.weight, std=0.05)
        self.to_hidden = nn.Sequential(linear(dim, hidden * 2), nn.SiLU())
        self.to_qk = nn.Sequential(linear(dim, qk), nn.SiLU())
        self.qk_offset_scale = OffsetScale(qk, heads=4)
        self.to_out = linear(hidden, dim)

    def forward(self, x):
        b, n, g = x.shape[0], x.shape[-2], self.group_size
        normed_x = self.norm(x)
        if self.shift_tokens:
            x_shift, x_pass = normed_x.chunk(2, dim=-1)
            x_shift = F.pad(x_shift, (0, 0, 1, -1), value=0.0)
            normed_x = torch.cat((x_shift, x_pass), dim=-1)
        v, gate = self.to_hidden(normed_x).chunk(2, dim=-1)
        quad_q, lin_q, quad_k, lin_k = self.qk_offset_scale(self.to_qk(normed_x))
        padding = (-n) % g
        mask = torch.ones((b, n), dtype=torch.bool)
        if padding > 0:
            quad_q, quad_k, lin_q, lin_k, v = (F.pad(t, (0, 0, 0, padding), value=0.0) for t in (quad_q, quad_k, lin_q, lin_k, v))
            mask = F.pad(mask, (0, padding), value=False)
        quad_q, quad_k, lin_q, lin_k, v = (t.reshape(b, -1, g, t.shape[-1]) for t in (quad_q, quad_k, lin_q, lin_k, v))
        mask = mask.reshape(b, -1, 1, g)
        sim = torch.einsum("... i d, ... j d -> ... i j", quad_q, quad_k) / g
        sim = sim + self.rel_pos_bias(sim)
        attn = self.attn_fn(sim)
        attn = attn.masked_fill(~mask, 0.0)
        if self.causal:
            attn = attn.masked_fill(torch.ones((g, g), dtype=torch.bool).triu(1), 0.0)
        quad_out = torch.einsum("... i j, ... j d -> ... i d", attn, v)
        if self.causal:
            lin_kv = torch.einsum("b g n d, b g n e -> b g d e", lin_k, v) / g
            lin_kv = lin_kv.cumsum(dim=1)
            lin_kv = F.pad(lin_kv, (0, 0, 0, 0, 1, -1), value=0.0)
            lin_out = torch.einsum("b g d e, b g n d -> b g n e", lin_kv, lin_q)
        else:
            eq = "b d e" if self.reduce else "b g d e"
            lin_kv = torch.einsum(f"b g n d, b g n e -> {eq}", lin_k, v) / n
            lin_out = torch.einsum(f"b g n d, {eq} -> b g n e", lin_q, lin_kv)
        out = (quad_out + lin_out).reshape(b, -1, quad_out.shape[-1])[:, :n]
        return self.to_out(gate * out) + x


def gau_case(name, b, l, dim, causal=False, group=0, qk=32, norm="LayerNorm", laplace_attn=False, shift=False, reduce=True):
    if group == 0:
        mod = GAU(dim, qk, causal=causal, laplace_attn=laplace_attn, norm=norm)
        os_name, out_w, out_b = "offsetscale", "to_out.0.weight", "to_out.0.bias"
        scale = dim ** 0.5
    else:
        mod = FLASH(dim, group, qk, causal=causal, laplace_attn=laplace_attn, norm=norm, shift_tokens=shift,
                    reduce_group_non_causal_attn=reduce)
        os_name, out_w, out_b = "qk_offset_scale", "to_out.weight", "to_out.bias"
        scale = qk ** 0.5
    x = rnd(b, l, dim)
    y = run64(mod, x)
    sd = {k: f32(v) for k, v in mod.state_dict().items()}
    norm_ins = ["norm.weight", "norm.bias"] if norm == "LayerNorm" else ["norm.g", None]
    rp = "rel_pos_bias.relative_attention_bias.weight"
    ins = ["q"] + norm_ins + ["to_hidden.0.weight", "to_hidden.0.bias", "to_qk.0.weight", "to_qk.0.bias",
                              os_name + ".gamma", os_name + ".beta", out_w, out_b, rp]
    consts = {k: sd[k] for k in ins[1:] if k is not None}
    attrs = {"group_size": group, "causal": causal, "norm": norm, "laplace_attn": laplace_attn, "shift_tokens": shift,
             "reduce_group_non_causal": reduce, "rel_pos_scale": scale}
    wcase(name, [node("gau", "GatedAttentionUnit", ins, attrs, ["y"])], {"q": x}, consts, {"y": y})


gau_case("gau_len1", 1, 1, 16)
gau_case("gau_len7_causal_b2", 2, 7, 24, causal=True, qk=16)
gau_case("gau_len64_scalenorm_laplace", 1, 64, 32, norm="ScaleNorm", laplace_attn=True)
gau_case("gau_len1000_causal", 1, 1000, 32, causal=True)
gau_case("flash_len1_g16", 1, 1, 16, group=16)
gau_case("flash_len7_causal_g16_partial", 2, 7, 24, causal=True, group=16, qk=16)
gau_case("flash_len64_causal_g16", 1, 64, 32, causal=True, group=16)
gau_case("flash_len100_g32_noreduce", 2, 100, 32, group=32, reduce=False)
gau_case("flash_len300_b3_g64", 3, 300, 32, group=64)  # the threads' sums per batch item, a partial group
gau_case("flash_len1000_g256_shift_scalenorm", 1, 1000, 32, group=256, shift=True, norm="ScaleNorm")
gau_case("flash_len1000_causal_g256_laplace", 1, 1000, 32, causal=True, group=256, laplace_attn=True)
gau_case("flash_len4097_causal_g256", 1, 4097, 32, causal=True, group=256)


# ---- LiteMLA (EfficientViT) ----------------------------------------------------------
class LiteMLA(nn.Module):
    def __init__(self, cin, cout, dim=8, scales=(5,), eps=1e-15, proj_bias=False):
        super().__init__()
        heads = cin // dim
        total = heads * dim
        self.dim, self.eps = dim, eps
        self.qkv = nn.Module()
        self.qkv.conv = nn.Conv2d(cin, 3 * total, 1, bias=False)
        self.aggreg = nn.ModuleList([nn.Sequential(
            nn.Conv2d(3 * total, 3 * total, s, padding=s // 2, groups=3 * total, bias=False),
            nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False)) for s in scales])
        self.proj = nn.Module()
        self.proj.conv = nn.Conv2d(total * (1 + len(scales)), cout, 1, bias=proj_bias)

    def forward(self, x):
        qkv = self.qkv.conv(x)
        multi = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        B, _, H, W_ = multi.shape
        qkv = multi.reshape(B, -1, 3 * self.dim, H * W_)
        q, k, v = qkv[:, :, :self.dim], qkv[:, :, self.dim:2 * self.dim], qkv[:, :, 2 * self.dim:]
        q, k = F.relu(q), F.relu(k)
        if H * W_ > self.dim:  # relu_linear_att
            v = F.pad(v, (0, 0, 0, 1), mode="constant", value=1)
            out = (v @ k.transpose(-1, -2)) @ q
            out = out[:, :, :-1] / (out[:, :, -1:] + self.eps)
        else:  # relu_quadratic_att
            att = k.transpose(-1, -2) @ q
            att = att / (att.sum(dim=2, keepdim=True) + self.eps)
            out = v @ att
        return self.proj.conv(out.reshape(B, -1, H, W_))


def mla_case(name, b, cin, h, w, dim, scales=(5,), cout=None, proj_bias=False):
    cout = cout or cin
    mod = LiteMLA(cin, cout, dim, scales, proj_bias=proj_bias)
    for p in mod.parameters():
        nn.init.normal_(p, std=p[0].numel() ** -0.5)
    x = rnd(b, cin, h, w)
    y = run64(mod, x)
    sd = {k: f32(v) for k, v in mod.state_dict().items()}
    ins = ["q", "qkv.conv.weight", "proj.conv.weight", "proj.conv.bias" if proj_bias else None]
    for i in range(len(scales)):
        ins += [f"aggreg.{i}.0.weight", f"aggreg.{i}.1.weight"]
    consts = {k: sd[k] for k in ins[1:] if k is not None}
    wcase(name, [node("mla", "LiteMLA", ins, {"dim": dim, "scales": list(scales)}, ["y"])], {"q": x}, consts, {"y": y})


mla_case("litemla_1x1_quadratic", 1, 16, 1, 1, 8)
mla_case("litemla_2x3_quadratic_b2", 2, 16, 2, 3, 8, proj_bias=True)
mla_case("litemla_7x1_head8", 1, 16, 7, 1, 8, scales=())
mla_case("litemla_8x8_head16_scales35", 2, 32, 8, 8, 16, scales=(3, 5), cout=24, proj_bias=True)
mla_case("litemla_32x32_head32", 1, 64, 32, 32, 32)  # 1024 tokens: lite_mla_banded pads the qkv rows to 1040
mla_case("litemla_17x241_head16", 1, 32, 17, 241, 16)
# depthwise kernels wider than the map (7 on 5 x 3), and 3 + 7 on 9 x 70 columns (a 64-column
# tile and a tail of 6, in lite_mla_gemm's AVX-512 depthwise)
mla_case("litemla_5x3_scale7", 1, 16, 5, 3, 8, scales=(7,))
mla_case("litemla_9x70_scales37", 1, 32, 9, 70, 16, scales=(3, 7), proj_bias=True)
# one head (3 aggregation groups over 2 threads: lite_mla_gemm splits each group's columns
# in two), dim 12 (narrow_gemm's 8-row tile and a 4-row tail), 1403 tokens (a column tail)
mla_case("litemla_23x61_onehead_dim12", 1, 12, 23, 61, 12, scales=(5,))
# lite_mla_banded: two batch items of two 26- and 14-row bands (20 columns), two scales
# whose halos cross the band edge; and rows wider than a band's 512 tokens (one-row bands,
# every depthwise row from a neighbouring band)
mla_case("litemla_b2_40x20_scales53", 2, 32, 40, 20, 16, scales=(5, 3), proj_bias=True)
mla_case("litemla_3x600_head8", 1, 16, 3, 600, 8, scales=(5,))
# lite_mla_banded without scales: two batch items of 13-, 13- and 4-row bands of 40
# columns, 2 heads of 8 (each task all three bands: the products prefetch into the next);
# and 24 x 48 (1152 tokens, 72 cache lines: the qkv map's rows padded to 73), one batch
# item, so each head's bands split into two ranges (11 | 11 + 2 rows), 528-token bands
# (eight 64-token blocks and a tail of 16)
mla_case("litemla_b2_30x40_noscales", 2, 16, 30, 40, 8, scales=(), proj_bias=True)
mla_case("litemla_24x48_noscales_padded", 1, 16, 24, 48, 8, scales=())

W.finish()
