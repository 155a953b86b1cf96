"""Reference cases for the state-space ops and a small Mamba LM, computed live with PyTorch.

Usage: /usr/bin/python3 make_ssm_cases.py OUTDIR

Everything is computed in float64 from float32 inputs and weights, then stored as
float32, so the engine (f32 math) is compared with the exact answer of the same math:
  - the selective scan as a plain recurrence (mamba_ssm selective_scan_ref, one step
    at a time, with mamba_ssm's conv_state / ssm_state conventions);
  - S4D both by FFT convolution (models/s4/s4d.py) and by the recurrence (the s4 repo's
    step()); the two are checked against each other here before anything is written;
  - a MambaLMHeadModel-shaped module with the mamba_ssm key layout (tied and untied
    lm_head), weights written as one .npy per state-dict key.
Cases go to OUTDIR/<case>/ (tests/common/refcase.py); the LM models to OUTDIR/lm_<name>/.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "common"))
from refcase import CaseWriter, node  # noqa: E402

torch.manual_seed(0)
torch.set_grad_enabled(False)
OUT = sys.argv[1]
W = CaseWriter(OUT)
f64 = torch.float64


def f32(t):
    return t.to(torch.float32)


def rms(x, w, eps):
    x = x.to(f64)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w.to(f64) if w is not None else y


# ---- Mamba path (selective_scan_ref semantics) ------------------------------------------
def mamba_weights(di, n, r, k, conv_bias=True, dt_bias=True, d_skip=True):
    w = {
        "conv_w": torch.randn(di, 1, k) * 0.4,
        "x_proj": torch.randn(r + 2 * n, di) / math.sqrt(di),
        "dt_proj": torch.randn(di, r) / math.sqrt(r),
        # mamba's A init log(1..N), perturbed so that channels differ
        "A_log": torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1) + 0.2 * torch.randn(di, n),
    }
    if conv_bias:
        w["conv_b"] = torch.randn(di) * 0.1
    if dt_bias:
        # inverse softplus of dt in [1e-3, 0.1] as mamba initialises it, plus a few large values (softplus threshold)
        dt = torch.exp(torch.rand(di) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        b = dt + torch.log(-torch.expm1(-dt))
        b[:2] = torch.tensor([21.0, 3.0])[: min(2, di)]
        w["dt_b"] = b
    if d_skip:
        w["D"] = 1.0 + 0.3 * torch.randn(di)
    return w


def mamba_path(xz, w, conv_state=None, ssm_state=None, reverse=False):
    """xz [B, L, 2Di] (float64) -> y [B, L, Di] (gated), conv_state_out, ssm_state_out."""
    if reverse:
        y, _, _ = mamba_path(xz.flip(1), w)
        return y.flip(1), None, None
    bsz, L, two_di = xz.shape
    di = two_di // 2
    conv_w = w["conv_w"].to(f64)
    k = conv_w.shape[-1]
    x, z = xz[..., :di].transpose(1, 2), xz[..., di:]
    prev = conv_state.to(f64) if conv_state is not None else torch.zeros(bsz, di, k, dtype=f64)
    full = torch.cat([prev, x], -1)  # [B, Di, K + L]
    conv_state_out = full[..., -k:]
    cb = w["conv_b"].to(f64) if "conv_b" in w else None
    u = F.silu(F.conv1d(full[..., 1:], conv_w, cb, groups=di))  # first L outputs of the causal conv
    n = w["A_log"].shape[1]
    r = w["dt_proj"].shape[1]
    x_dbl = torch.einsum("bdl,jd->blj", u, w["x_proj"].to(f64))
    dt, Bm, Cm = torch.split(x_dbl, [r, n, n], dim=-1)
    delta = dt @ w["dt_proj"].to(f64).T
    if "dt_b" in w:
        delta = delta + w["dt_b"].to(f64)
    delta = F.softplus(delta)  # [B, L, Di]
    A = -torch.exp(w["A_log"].to(f64))
    h = ssm_state.to(f64).clone() if ssm_state is not None else torch.zeros(bsz, di, n, dtype=f64)
    ys = []
    for t in range(L):
        dA = torch.exp(delta[:, t, :, None] * A)
        h = dA * h + delta[:, t, :, None] * Bm[:, t, None, :] * u[:, :, t, None]
        ys.append((h * Cm[:, t, None, :]).sum(-1))
    y = torch.stack(ys, 1)
    if "D" in w:
        y = y + u.transpose(1, 2) * w["D"].to(f64)
    y = y * F.silu(z)
    return y, conv_state_out, h


WEIGHT_KEYS = ["conv_w", "conv_b", "x_proj", "dt_proj", "dt_b", "A_log", "D"]


def weight_inputs(w, prefix):
    return [prefix + k if k in w else None for k in WEIGHT_KEYS], {prefix + k: v for k, v in w.items()}


def mamba_case(name, bsz, L, di, n, r, k, states=False, state_outputs=False, hw=None, **wkw):
    w = mamba_weights(di, n, r, k, **wkw)
    shape = [bsz] + (list(hw) if hw else [L]) + [2 * di]
    xz = torch.randn(*shape)
    ins, consts = weight_inputs(w, "w.")
    inputs = {"xz": xz}
    cs = ss = None
    if states:
        cs = torch.randn(bsz, di, k)
        ss = torch.randn(bsz, di, n) * 0.5
        inputs["conv_state"] = cs
        inputs["ssm_state"] = ss
        ins = ins + ["conv_state", "ssm_state"]
    y, cso, sso = mamba_path(xz.to(f64).reshape(bsz, -1, 2 * di), w, cs, ss)
    outputs = {"y": f32(y).reshape(shape[:-1] + [di])}
    outs = ["y"]
    if state_outputs:
        outputs["conv_state_out"] = f32(cso)
        outputs["ssm_state_out"] = f32(sso)
        outs += ["conv_state_out", "ssm_state_out"]
    W.case(name, [node("scan", "MambaScan", ["xz"] + ins, {}, outs)], inputs, consts, outputs)


mamba_case("mamba_l1", 1, 1, 24, 16, 2, 4)
mamba_case("mamba_l3_batch2", 2, 3, 40, 4, 3, 4)
mamba_case("mamba_l257", 1, 257, 64, 16, 4, 4)
mamba_case("mamba_l4096", 1, 4096, 32, 8, 2, 4)
mamba_case("mamba_odd_state_k3", 1, 77, 20, 7, 2, 3)
mamba_case("mamba_state1_no_optional", 2, 70, 17, 1, 1, 4, conv_bias=False, dt_bias=False, d_skip=False)
mamba_case("mamba_feature_map", 1, None, 24, 16, 2, 4, hw=(5, 7))
mamba_case("mamba_states_l5", 2, 5, 24, 16, 2, 4, states=True, state_outputs=True)
mamba_case("mamba_states_step", 1, 1, 40, 16, 3, 4, states=True, state_outputs=True)
mamba_case("mamba_states_l200", 1, 200, 48, 16, 3, 4, states=True, state_outputs=True)
mamba_case("mamba_state_outputs_only", 1, 2, 24, 8, 2, 4, state_outputs=True)


# ---- Vision Mamba v2 bidirectional ------------------------------------------------------
def bimamba_case(name, bsz, hw, di, n, r, k, divide_out):
    wf, wb = mamba_weights(di, n, r, k), mamba_weights(di, n, r, k)
    shape = [bsz] + list(hw) + [2 * di]
    xz = torch.randn(*shape)
    flat = xz.to(f64).reshape(bsz, -1, 2 * di)
    yf, _, _ = mamba_path(flat, wf)
    yb, _, _ = mamba_path(flat, wb, reverse=True)  # own conv/x_proj/dt_proj/A/D on the flipped sequence, flipped back
    y = (yf + yb) * (0.5 if divide_out else 1.0)
    inf, cf = weight_inputs(wf, "f.")
    inb, cb = weight_inputs(wb, "b.")
    W.case(name, [node("bi", "BiMambaScan", ["xz"] + inf + inb, {"divide_out": divide_out}, ["y"])],
           {"xz": xz}, {**cf, **cb}, {"y": f32(y).reshape(shape[:-1] + [di])})


bimamba_case("bimamba_map_div2", 1, (7, 9), 24, 8, 2, 4, True)
bimamba_case("bimamba_seq_batch2", 2, (33,), 40, 16, 3, 4, False)
bimamba_case("bimamba_long", 1, (16, 20), 32, 16, 2, 4, True)


def vim_block_case(name, c, hw, n=8, expand=2):
    """A Vision Mamba v2 block as a segmentation backbone block on an NCHW feature map:
    x + out_proj(bimamba(in_proj(RMSNorm(x as NHWC)))) back in NCHW."""
    di, r = expand * c, math.ceil(c / 16)
    wf, wb = mamba_weights(di, n, r, 4), mamba_weights(di, n, r, 4)
    x = torch.randn(1, c, *hw)
    norm_w = 1 + 0.1 * torch.randn(c)
    in_w, out_w = torch.randn(2 * di, c) / math.sqrt(c), torch.randn(c, di) / math.sqrt(di)
    t = x.to(f64).permute(0, 2, 3, 1).reshape(1, -1, c)
    xz = rms(t, norm_w, 1e-5) @ in_w.to(f64).T
    y = (mamba_path(xz, wf)[0] + mamba_path(xz, wb, reverse=True)[0]) * 0.5
    out = x.to(f64) + (y @ out_w.to(f64).T).reshape(1, *hw, c).permute(0, 3, 1, 2)
    inf, cf = weight_inputs(wf, "f.")
    inb, cb = weight_inputs(wb, "b.")
    nodes = [node("to_nhwc", "Transpose", ["x"], {"perm": [0, 2, 3, 1]}),
             node("norm", "RMSNorm", ["to_nhwc", "norm.weight"], {"eps": 1e-5}),
             node("in_proj", "Linear", ["norm", "in_proj.weight"]),
             node("mixer", "BiMambaScan", ["in_proj"] + inf + inb, {"divide_out": True}),
             node("out_proj", "Linear", ["mixer", "out_proj.weight"]),
             node("to_nchw", "Transpose", ["out_proj"], {"perm": [0, 3, 1, 2]}),
             node("y", "Binary", ["x", "to_nchw"], {"kind": "Add"})]
    W.case(name, nodes, {"x": x}, {"norm.weight": norm_w, "in_proj.weight": in_w, "out_proj.weight": out_w, **cf, **cb},
           {"y": f32(out)}, op="BiMambaScan")


vim_block_case("vim_block_nchw", 48, (12, 10))


# ---- S4D --------------------------------------------------------------------------------
def s4d_params(h, n, complex_modes=True, out_linear=True):
    m = n // 2 if complex_modes else n
    p = {"log_dt": torch.rand(h) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)}
    if complex_modes:
        p["C"] = torch.view_as_real(torch.randn(h, m, dtype=torch.cfloat))
        p["log_A_real"] = torch.log(0.5 * torch.ones(h, m)) + 0.1 * torch.randn(h, m)
        p["A_imag"] = math.pi * torch.arange(m, dtype=torch.float32).repeat(h, 1)
    else:  # S4D-Real: A = -(1..N)
        p["C"] = torch.randn(h, m)
        p["log_A_real"] = torch.log(torch.arange(1, m + 1, dtype=torch.float32)).repeat(h, 1) + 0.1 * torch.randn(h, m)
    p["D"] = torch.randn(h)
    if out_linear:
        p["out_w"] = torch.randn(2 * h, h, 1) / math.sqrt(h)
        p["out_b"] = torch.randn(2 * h) * 0.1
    return p


def s4d_discrete(p):
    dt = torch.exp(p["log_dt"].to(f64))
    if "A_imag" in p:
        A = -torch.exp(p["log_A_real"].to(f64)) + 1j * p["A_imag"].to(f64)
        C = torch.view_as_complex(p["C"].to(f64).contiguous())
        factor = 2.0
    else:
        A = (-torch.exp(p["log_A_real"].to(f64))).to(torch.complex128)
        C = p["C"].to(f64).to(torch.complex128)
        factor = 1.0
    dtA = A * dt[:, None]
    return torch.exp(dtA), (torch.exp(dtA) - 1.0) / A, C, factor, dtA


def s4d_kernel(p, L):  # s4d.py S4DKernel.forward (real mode: no conjugate pair, factor 1)
    dA, dB, C, factor, dtA = s4d_discrete(p)
    K = dtA.unsqueeze(-1) * torch.arange(L, dtype=f64)
    return factor * torch.einsum("hn,hnl->hl", C * dB, torch.exp(K)).real


def s4d_fft(u, p):  # u [B, H, L] float64
    L = u.shape[-1]
    k = s4d_kernel(p, L)
    y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(k, n=2 * L), n=2 * L)[..., :L]
    return y + u * p["D"].to(f64)[:, None]


def s4d_recurrent(u, p, state=None):  # the s4 repo's step(): x = dA x + dB u, y = factor Re(C x)
    dA, dB, C, factor, _ = s4d_discrete(p)
    x = state if state is not None else torch.zeros(u.shape[0], *dA.shape, dtype=torch.complex128)
    ys = []
    for t in range(u.shape[-1]):
        x = dA * x + dB * u[:, :, t, None]
        ys.append(factor * (C * x).sum(-1).real)
    return torch.stack(ys, -1) + u * p["D"].to(f64)[:, None], x


def s4d_block_out(y, p):
    if "out_w" not in p:
        return y
    y = F.conv1d(F.gelu(y), p["out_w"].to(f64), p["out_b"].to(f64))
    return F.glu(y, dim=-2)


def s4d_case(name, bsz, h, n, L, complex_modes=True, transposed=True, out_linear=True, state=False, state_out=False):
    p = s4d_params(h, n, complex_modes, out_linear)
    u = torch.randn(bsz, h, L)
    m = n // 2 if complex_modes else n
    st = None
    if state:
        st = torch.randn(bsz, h, m, 2) if complex_modes else torch.randn(bsz, h, m)
    st_c = None
    if st is not None:
        st_c = torch.view_as_complex(st.to(f64)) if complex_modes else st.to(f64).to(torch.complex128)
    y_rec, x_last = s4d_recurrent(u.to(f64), p, st_c)
    if st is None:
        y_fft = s4d_fft(u.to(f64), p)
        err = (y_fft - y_rec).abs().max().item() / y_rec.abs().max().item()
        assert err < 1e-9, f"{name}: FFT and recurrence disagree by {err}"
    y = s4d_block_out(y_rec, p)
    inputs = {"u": u if transposed else u.transpose(1, 2).contiguous()}
    ins = ["u", "p.log_dt", "p.C", "p.log_A_real", "p.A_imag" if complex_modes else None, "p.D",
           "p.out_w" if out_linear else None, "p.out_b" if out_linear else None]
    if state:
        inputs["state"] = st
        ins.append("state")
    outs = {"y": f32(y if transposed else y.transpose(1, 2))}
    if state_out:
        if not state:
            ins.append(None)
        outs["state_out"] = f32(torch.view_as_real(x_last) if complex_modes else x_last.real)
    W.case(name, [node("s4d", "S4D", ins, {"transposed": transposed}, list(outs.keys()))],
           inputs, {"p." + k: v for k, v in p.items()}, outs)


s4d_case("s4d_l1", 1, 8, 64, 1)
s4d_case("s4d_l3", 2, 5, 16, 3)
s4d_case("s4d_l257", 1, 8, 64, 257)
s4d_case("s4d_l4096", 1, 6, 32, 4096)
s4d_case("s4d_l600_n4", 1, 7, 4, 600)
s4d_case("s4d_real_l257", 1, 6, 8, 257, complex_modes=False)
s4d_case("s4d_real_l4096", 1, 4, 16, 4096, complex_modes=False)
s4d_case("s4d_untransposed", 2, 5, 16, 40, transposed=False)
s4d_case("s4d_no_output_linear", 1, 6, 16, 100, out_linear=False)
s4d_case("s4d_state_l3", 2, 5, 16, 3, state=True, state_out=True)
s4d_case("s4d_state_l257", 1, 4, 64, 257, state=True, state_out=True)
s4d_case("s4d_real_state", 1, 4, 8, 33, complex_modes=False, state=True, state_out=True)
s4d_case("s4d_state_out_only", 1, 3, 8, 20, state_out=True)


# ---- RMSNorm and Embedding ----------------------------------------------------------------
x, r, wt = torch.randn(2, 5, 24), torch.randn(2, 5, 24), 1 + 0.2 * torch.randn(24)
W.case("rmsnorm_plain", [node("n", "RMSNorm", ["x", "w"], {"eps": 1e-5}, ["y"])], {"x": x}, {"w": wt},
       {"y": f32(rms(x, wt, 1e-5))})
W.case("rmsnorm_residual_sum", [node("n", "RMSNorm", ["x", "w", "r"], {"eps": 1e-6}, ["y", "s"])], {"x": x, "r": r},
       {"w": wt}, {"y": f32(rms(x + r, wt, 1e-6)), "s": x + r})
x2 = torch.randn(7, 1000) * 3
W.case("rmsnorm_no_weight", [node("n", "RMSNorm", ["x"], {"eps": 1e-5}, ["y"])], {"x": x2}, {}, {"y": f32(rms(x2, None, 1e-5))})
table = torch.randn(50, 16)
ids = torch.randint(0, 50, (2, 7))
W.case("embedding_i64", [node("e", "Embedding", ["ids", "t"], {}, ["y"])], {"ids": ids}, {"t": table}, {"y": table[ids]})
W.case("embedding_i32", [node("e", "Embedding", ["ids", "t"], {}, ["y"])], {"ids": ids[0].to(torch.int32)}, {"t": table},
       {"y": table[ids[0]]})
W.finish()


# ---- a MambaLMHeadModel-shaped module (mamba_ssm key layout) ----------------------------
class Mixer(nn.Module):
    def __init__(self, d_model, d_state=16, d_conv=4, expand=2):
        super().__init__()
        di, r = expand * d_model, math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(di, r + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d_model, bias=False)

    def forward(self, h):  # the non-fused path of mamba_simple.Mamba.forward, in float64
        w = {"conv_w": self.conv1d.weight, "conv_b": self.conv1d.bias, "x_proj": self.x_proj.weight,
             "dt_proj": self.dt_proj.weight, "dt_b": self.dt_proj.bias, "A_log": self.A_log, "D": self.D}
        y, _, _ = mamba_path(h @ self.in_proj.weight.to(f64).T, w)
        return y @ self.out_proj.weight.to(f64).T


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        return rms(x, self.weight, self.eps)


class Block(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.mixer, self.norm = Mixer(d_model), RMSNorm(d_model)

    def forward(self, hidden, residual):  # add -> norm -> mixer, residual in f32 (here f64)
        residual = hidden + residual if residual is not None else hidden
        return self.mixer(self.norm(residual)), residual


class MixerModel(nn.Module):
    def __init__(self, d_model, n_layer, vocab):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList([Block(d_model) for _ in range(n_layer)])
        self.norm_f = RMSNorm(d_model)

    def forward(self, ids):
        hidden, residual = self.embedding(ids).to(f64), None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        return self.norm_f(hidden + residual)


class MambaLMHeadModel(nn.Module):
    def __init__(self, d_model, n_layer, vocab, tie=True, pad_multiple=8):
        super().__init__()
        if vocab % pad_multiple:
            vocab += pad_multiple - vocab % pad_multiple
        self.backbone = MixerModel(d_model, n_layer, vocab)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        if tie:
            self.lm_head.weight = self.backbone.embedding.weight

    def forward(self, ids):
        return self.backbone(ids) @ self.lm_head.weight.to(f64).T


def randomise(model):
    # mamba-like init scales, then noise so that every tensor matters
    for name, p in model.named_parameters():
        if name.endswith("A_log") or name.endswith(".D") or "norm" in name:
            p.add_(0.1 * torch.randn_like(p))
        elif name.endswith("dt_proj.bias"):
            dt = torch.exp(torch.rand_like(p) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            p.copy_(dt + torch.log(-torch.expm1(-dt)))
        else:
            p.normal_(0, 1.0 / math.sqrt(p.shape[-1] if p.dim() > 1 else 1))


def write_lm(name, tie, L=37):
    model = MambaLMHeadModel(64, 3, 101, tie=tie)
    randomise(model)
    d = os.path.join(OUT, "lm_" + name)
    os.makedirs(d, exist_ok=True)
    sd = model.state_dict()
    keys = [k for k in sd if not (tie and k == "lm_head.weight")]  # a tied checkpoint may omit the head
    for k in keys:
        np.save(os.path.join(d, k + ".npy"), sd[k].numpy())
    torch.save(sd, os.path.join(d, "state_dict.pt"))  # for the converter's `--arch mamba` test later
    ids = torch.randint(0, 101, (2, L))
    np.save(os.path.join(d, "input_ids.npy"), ids.numpy())
    np.save(os.path.join(d, "logits.npy"), f32(model(ids)).numpy())
    with open(os.path.join(d, "keys.json"), "w") as f:
        json.dump(keys, f)


write_lm("tied", True)
write_lm("untied", False)
print("ssm cases written to", OUT)
