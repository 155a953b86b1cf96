"""PyTorch baseline for tools/bench/ssm_bench.cpp: the same Mamba math in plain PyTorch.

The mixer is mamba_ssm's non-fused path (Mamba.forward "else" branch) with
selective_scan_ref, copied in spirit (no einops, no CUDA); blocks, norm_f and the
tied lm_head as MambaLMHeadModel. Random weights, float32, torch.set_num_threads(T).

    /usr/bin/python3 tools/bench/ssm_bench_torch.py [--threads 2] [--tokens 2048] [--runs 3]
        [--d-model 768] [--layers 24] [--vocab 50280] [--scan-only] [--mkldnn]

Debian's torch 1.13 is built with the generic (reference) BLAS, so its dense matmuls
run at ~2 GFLOP/s here. --mkldnn routes the four projections and the lm_head through
torch.utils.mkldnn (oneDNN, the library the engine uses), a much stronger baseline for
the same math; the scan stays selective_scan_ref.

Prints tokens/s of a whole-sequence forward (median of --runs) and the state updates/s
(batch·L·d_inner·d_state / time) of selective_scan_ref alone at d_inner = 2·d_model.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.mkldnn


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """mamba_ssm/ops/selective_scan_interface.py, real A, variable B and C (b, n, l)."""
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].float()
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    x = A.new_zeros((batch, dim, dstate))
    ys = []
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B.float(), u)
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, i].float()))
    y = torch.stack(ys, dim=2)
    out = y if D is None else y + u * D[:, None]
    if z is not None:
        out = out * F.silu(z)
    return out.to(dtype=dtype_in)


MKLDNN = False


def proj(lin, x2d):
    """x2d [M, in] -> [M, out] through the Linear (oneDNN with --mkldnn)."""
    if MKLDNN:
        if not hasattr(lin, "_mk"):
            lin._mk = torch.utils.mkldnn.MkldnnLinear(lin, torch.float)
        return lin._mk(x2d.contiguous().to_mkldnn()).to_dense()
    return lin(x2d)


class Mamba(nn.Module):
    def __init__(self, d_model, d_state=16, d_conv=4, expand=2):
        super().__init__()
        self.d_inner, self.d_state = expand * d_model, d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        # dt_proj's bias goes to the scan (delta_bias), not into the product
        self.dt_proj_nobias = nn.Linear(self.dt_rank, self.d_inner, bias=False)
        self.dt_proj_nobias.weight = self.dt_proj.weight

    def forward(self, hidden):  # mamba_simple.Mamba.forward, non-fused path
        b, L, _ = hidden.shape
        xz = proj(self.in_proj, hidden.reshape(b * L, -1)).t().reshape(-1, b, L).permute(1, 0, 2)
        A = -torch.exp(self.A_log.float())
        x, z = xz.chunk(2, dim=1)
        x = F.silu(self.conv1d(x)[..., :L])
        x_dbl = proj(self.x_proj, x.permute(0, 2, 1).reshape(b * L, -1))
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (proj(self.dt_proj_nobias, dt) if MKLDNN else dt @ self.dt_proj.weight.t()).t().reshape(-1, b, L).permute(1, 0, 2)
        B = B.reshape(b, L, -1).permute(0, 2, 1).contiguous()
        C = C.reshape(b, L, -1).permute(0, 2, 1).contiguous()
        y = selective_scan_ref(x, dt, A, B, C, self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        return proj(self.out_proj, y.permute(0, 2, 1).reshape(b * L, -1)).reshape(b, L, -1)


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Block(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.mixer, self.norm = Mamba(d_model), RMSNorm(d_model)

    def forward(self, hidden, residual):
        residual = hidden + residual if residual is not None else hidden
        return self.mixer(self.norm(residual)), residual


class MambaLM(nn.Module):
    def __init__(self, d_model, n_layer, vocab):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.layers = nn.ModuleList([Block(d_model) for _ in range(n_layer)])
        self.norm_f = RMSNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab, bias=False)
        self.lm_head.weight = self.embedding.weight  # tied

    def forward(self, ids):
        hidden, residual = self.embedding(ids), None
        for layer in self.layers:
            hidden, residual = layer(hidden, residual)
        h = self.norm_f(hidden + residual)
        return proj(self.lm_head, h.reshape(-1, h.shape[-1])).reshape(*h.shape[:-1], -1)


def median_time(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--vocab", type=int, default=50280)
    ap.add_argument("--scan-only", action="store_true")
    ap.add_argument("--mkldnn", action="store_true")
    a = ap.parse_args()
    global MKLDNN
    MKLDNN = a.mkldnn
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, projections via "
          f"{'torch.utils.mkldnn (oneDNN)' if MKLDNN else 'the default BLAS'}", flush=True)

    di, n, L = 2 * a.d_model, 16, a.tokens
    u, delta, z = torch.randn(1, di, L), torch.randn(1, di, L) * 0.5 - 4, torch.randn(1, di, L)
    B, C = torch.randn(1, n, L), torch.randn(1, n, L)
    A, D, bias = -torch.rand(di, n) * 16, torch.ones(di), torch.zeros(di)
    sec, _ = median_time(lambda: selective_scan_ref(u, delta, A, B, C, D, z, bias, True), a.runs)
    print(f"selective_scan_ref: batch 1, L {L}, d_inner {di}, d_state {n}: {sec * 1e3:.1f} ms, "
          f"{L * di * n / sec:.3e} state updates/s", flush=True)
    if a.scan_only:
        return

    model = MambaLM(a.d_model, a.layers, a.vocab).eval()
    params = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, a.vocab, (1, L))
    model(ids[:, :64])  # warm-up
    sec, times = median_time(lambda: model(ids), a.runs)
    print(f"model: d_model {a.d_model}, {a.layers} layers, vocab {a.vocab}, {params / 1e6:.1f}M parameters, "
          f"{L} tokens: median {sec:.2f} s ({', '.join(f'{t:.2f}' for t in times)}), {L / sec:.1f} tokens/s", flush=True)


if __name__ == "__main__":
    main()
