#!/usr/bin/python3
"""The GCN network's head with the default kernels and with some excluded, alternated.

    /usr/bin/python3 tools/bench/gcn_head_ab.py build/bin/atrous GCN.atrous ROUNDS [KERNEL,...]

Runs `atrous bench GCN.atrous --shape image=1,3,512,512 --json` (6 runs after 2 warm-ups)
with the default kernels and with `--exclude-kernel K` for each listed kernel (default
conv2d_spatial,boundary_refinement_fused: oneDNN's convolutions), in turn, ROUNDS
times. Each run's per-step medians are summed into the head (gcm*, brm*, up*, fuse* and
the reorders), its Boundary Refinement steps alone (brm*), and the rest (the backbone);
prints each round and the medians over rounds.
GCN.atrous: e.g. the model tools/bench/seg_bench.py converts into its --work folder.
"""
import json, statistics, subprocess, sys
atrous, model, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
excluded = (sys.argv[4] if len(sys.argv) > 4 else "conv2d_spatial,boundary_refinement_fused").split(",")
res = {"default": [], "excluded": []}
for r in range(rounds):
    for name, extra in (("default", []), ("excluded", [a for k in excluded for a in ("--exclude-kernel", k)])):
        out = subprocess.run([atrous, "bench", model, "--shape", "image=1,3,512,512", "--runs", "6", "--warmup", "2", "--json"] + extra,
                             capture_output=True, text=True, check=True).stdout
        j = json.loads(out)
        head = back = br = 0.0
        head_flop = 0.0
        for s in j["steps"]:
            n = s["node"]
            if n.startswith("brm"):
                br += s["median_s"]
            if n.startswith(("gcm", "brm", "up", "fuse")) or (n == "-" and s["op"] == "Reorder"):
                head += s["median_s"]
                head_flop += s["gflop"]
            else:
                back += s["median_s"]
        res[name].append((j["latency_s"]["median"] * 1e3, head * 1e3, back * 1e3, br * 1e3))
        print(f"round {r} {name}: latency {j['latency_s']['median']*1e3:.1f} ms, head {head*1e3:.1f} ms ({head_flop/head:.0f} GFLOP/s), "
              f"brm* {br*1e3:.1f} ms, backbone {back*1e3:.1f} ms", flush=True)
print("excluded: " + ", ".join(excluded))
for name, v in res.items():
    print(f"{name}: median latency {statistics.median(x[0] for x in v):.1f} ms, head {statistics.median(x[1] for x in v):.1f} ms, "
          f"brm* {statistics.median(x[3] for x in v):.1f} ms, backbone {statistics.median(x[2] for x in v):.1f} ms")
