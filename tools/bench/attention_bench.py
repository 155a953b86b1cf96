"""PyTorch side of attention_bench: the same math as the engine's attention nodes.

Usage (normally run by build/bin/attention_bench):
  /usr/bin/python3 attention_bench.py --n 1024,4096 --variants softmax,linear --threads 2 [--causal] [--budget 30]
Prints one line per measurement: "TORCH <variant> <n> <ms> <peak MiB>", where the
peak is the growth of the measuring process's peak RSS (a fresh process per
measurement). A variant stops growing n once a run took longer than --budget
seconds or when its memory estimate exceeds 12 GiB ("skip" in the table).
Shapes as attention_bench.cpp: batch 1, 8 heads x 64 (dim 512); the formulas are
those of make_attention_cases.py (softmax per head, so that only one n x n score
matrix exists at a time). Debian's torch does its matmuls with the reference BLAS
here (about 2 GFLOP/s), which is what these numbers measure.
"""
import argparse
import math
import resource
import subprocess
import sys
import time

DIM, HEADS, HD = 512, 8, 64


def run_one(variant, n, causal, threads):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    g = torch.Generator().manual_seed(0)
    r = lambda *s, scale=1.0: torch.randn(*s, generator=g) * scale  # noqa: E731
    ws = [(r(DIM, DIM, scale=DIM ** -0.5), r(DIM, scale=0.1)) for _ in range(4)]

    def heads(t):
        return t.view(1, n, HEADS, HD).transpose(1, 2)

    def merge(t):
        return t.transpose(1, 2).reshape(1, n, DIM)

    if variant in ("litemla", "litemla0"):  # litemla0: no scales
        side = 1
        while (2 * side) ** 2 <= n:
            side *= 2
        x = r(1, DIM, side, n // side)
        groups = 2 if variant == "litemla" else 1
        wqkv, wproj = r(3 * DIM, DIM, 1, 1, scale=DIM ** -0.5), r(DIM, groups * DIM, 1, 1, scale=DIM ** -0.5)
        wdw, wpw = r(3 * DIM, 1, 5, 5, scale=0.2), r(3 * DIM, HD, 1, 1, scale=0.125)
    else:
        x = r(1, n, DIM)
    if variant == "performer":
        pm = r(266, HD)
    if variant == "flash":
        ln = (r(DIM, scale=0.1), r(DIM, scale=0.1))
        wh, bh = r(4 * DIM, DIM, scale=DIM ** -0.5), r(4 * DIM, scale=0.1)
        wqk, bqk = r(128, DIM, scale=DIM ** -0.5), r(128, scale=0.1)
        gamma, beta = r(4, 128, scale=0.5), r(4, 128, scale=0.1)
        wo, bo = r(DIM, 2 * DIM, scale=1 / 32), r(DIM, scale=0.1)
        relpos = r(32, scale=0.05)

    def forward():
        if variant in ("litemla", "litemla0"):
            qkv = F.conv2d(x, wqkv)
            if variant == "litemla":
                agg = F.conv2d(F.conv2d(qkv, wdw, padding=2, groups=3 * DIM), wpw, groups=3 * HEADS)
                qkv = torch.cat([qkv, agg], 1)
            multi = qkv.reshape(1, -1, 3 * HD, n)
            q, k, v = F.relu(multi[:, :, :HD]), F.relu(multi[:, :, HD:2 * HD]), multi[:, :, 2 * HD:]
            v = F.pad(v, (0, 0, 0, 1), value=1.0)
            out = (v @ k.transpose(-1, -2)) @ q
            out = out[:, :, :-1] / (out[:, :, -1:] + 1e-15)
            return F.conv2d(out.reshape(1, -1, x.shape[2], x.shape[3]), wproj)
        if variant == "flash":
            gsz = 256
            xn = F.layer_norm(x, (DIM,), ln[0], ln[1])
            v, gate = F.silu(F.linear(xn, wh, bh)).chunk(2, -1)
            z = F.silu(F.linear(xn, wqk, bqk))
            qq, lq, qk_, lk = (z[..., None, :] * gamma + beta).unbind(-2)
            pad = (-n) % gsz
            qq, qk_, lq, lk, v2 = (F.pad(t, (0, 0, 0, pad)).reshape(1, -1, gsz, t.shape[-1]) for t in (qq, qk_, lq, lk, v))
            idx = torch.arange(gsz)
            sim = qq @ qk_.transpose(-1, -2) / gsz + relpos[(idx[:, None] - idx[None, :]).clamp(-15, 15) + 15]
            attn = F.relu(sim) ** 2
            if causal:
                attn = attn.masked_fill(torch.ones(gsz, gsz, dtype=torch.bool).triu(1), 0.0)
            quad = attn @ v2
            if causal:
                kv = (lk.transpose(-1, -2) @ v2 / gsz).cumsum(1)
                kv = F.pad(kv, (0, 0, 0, 0, 1, -1))
                lin = lq @ kv
            else:
                lin = lq @ torch.einsum("bgnd,bgne->bde", lk, v2)[:, None] / n
            out = (quad + lin).reshape(1, -1, 2 * DIM)[:, :n]
            return F.linear(gate * out, wo, bo) + x
        q, k, v = (F.linear(x, w, b) for w, b in ws[:3])
        q, k, v = heads(q), heads(k), heads(v)
        if variant == "softmax":
            outs = []
            for h in range(HEADS):
                s = q[:, h] @ k[:, h].transpose(-1, -2) / math.sqrt(HD)
                if causal:
                    s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
                outs.append(s.softmax(-1) @ v[:, h])
            o = torch.stack(outs, 1)
        elif variant in ("linear", "performer", "transnormer"):
            if variant == "linear":
                q, k = F.elu(q) + 1, F.elu(k) + 1
            elif variant == "transnormer":
                q, k = F.elu(q), F.elu(k)
            else:
                c = HD ** -0.25

                def phi(t, is_q):
                    dd = (c * t) @ pm.t()
                    diag = (t ** 2).sum(-1, keepdim=True) / 2 * c * c
                    mx = dd.amax(-1, keepdim=True) if is_q else dd.amax((-1, -2), keepdim=True)
                    return 266 ** -0.5 * (torch.exp(dd - diag - mx) + 1e-4)
                q, k = phi(q, True), phi(k, False)
            if causal:  # chunked prefix form (the quadratic form is n^2)
                o = torch.empty_like(v)
                kv = torch.zeros(1, HEADS, q.shape[-1], HD)
                z = torch.zeros(1, HEADS, q.shape[-1])
                for c0 in range(0, n, 128):
                    qc, kc, vc = q[:, :, c0:c0 + 128], k[:, :, c0:c0 + 128], v[:, :, c0:c0 + 128]
                    a = (qc @ kc.transpose(-1, -2)).tril()
                    num = a @ vc + qc @ kv
                    if variant == "transnormer":
                        o[:, :, c0:c0 + 128] = num
                    else:
                        den = a.sum(-1) + (qc * z[:, :, None]).sum(-1)
                        o[:, :, c0:c0 + 128] = num / (den[..., None] + 1e-6)
                    kv = kv + kc.transpose(-1, -2) @ vc
                    z = z + kc.sum(-2)
            else:
                kv = k.transpose(-1, -2) @ v
                o = q @ kv
                if variant != "transnormer":
                    o = o / (q @ k.sum(-2)[..., None] + (1e-6 if variant == "linear" else 0.0))
        o = merge(o)
        if variant == "transnormer":
            o = F.layer_norm(o, (DIM,))
        return F.linear(o, *ws[3])

    forward()  # warm-up
    t0 = time.perf_counter()
    forward()
    ms = (time.perf_counter() - t0) * 1e3
    return ms


def estimate_bytes(variant, n):
    if variant == "softmax":
        return 3 * n * n * 4  # one head's scores, mask and softmax
    return 64 * n * DIM * 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1024,4096,16384,65536")
    ap.add_argument("--variants", default="softmax,linear,performer,transnormer,flash,litemla")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--budget", type=float, default=30.0)
    ap.add_argument("--one", nargs=2)
    a = ap.parse_args()
    if a.one:
        import torch  # noqa: F401  (loaded before the baseline)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        ms = run_one(a.one[0], int(a.one[1]), a.causal, a.threads)
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024.0
        print(f"{ms:.1f} {peak:.1f}")
        return
    for v in a.variants.split(","):
        stop = None
        for n in (int(s) for s in a.n.split(",")):
            if stop is None and estimate_bytes(v, n) > 12 * 2 ** 30:
                stop = "mem"
            if stop:
                print(f"TORCH {v} {n} skip({stop}) -", flush=True)
                continue
            cmd = [sys.executable, __file__, "--one", v, str(n), "--threads", str(a.threads)] + (["--causal"] if a.causal else [])
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=max(60, 10 * a.budget)).stdout.split()
            except subprocess.TimeoutExpired:
                out = []
            if len(out) != 2:
                print(f"TORCH {v} {n} failed -", flush=True)
                stop = "fail"
                continue
            print(f"TORCH {v} {n} {out[0]} {out[1]}", flush=True)
            if float(out[0]) > a.budget * 1e3:
                stop = "time"


if __name__ == "__main__":
    main()
