#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (AddressSanitizer + UBSan) in
# build-fuzz/, makes seed corpora from the test models and fixtures, and runs
# each target for SECONDS (default 60). Crashes land in build-fuzz/crashes/<target>/;
# keep each as a regression input in tests/security/regressions/<name>/
# (fuzz_npy -> npy/, ...), which security_test replays on every test run.
#   tools/fuzz.sh [SECONDS] [TARGET...]
# ATROUS_FUZZ_ARGS adds libFuzzer flags, e.g. "-fork=1 -ignore_crashes=1" to keep
# going after a crash and collect every crashing input of a long run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(fuzz_model fuzz_weights fuzz_pickle fuzz_image fuzz_npy fuzz_prompt)

source "$ROOT/tools/setup.sh"
PACKAGES+=(clang libclang-rt-dev)
install_packages

B="$ROOT/build-fuzz"
mkdir -p "$B"
cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DATROUS_FUZZ=ON -DATROUS_BUILD_TESTS=OFF > "$B/cmake.log" 2>&1 || { cat "$B/cmake.log"; exit 1; }
cmake --build "$B" -j"$(nproc)" --target "${TARGETS[@]}" make_seeds

# Seed corpora.
C="$B/corpus"
mkdir -p "$C"/{fuzz_model,fuzz_weights,fuzz_pickle,fuzz_image,fuzz_npy,fuzz_prompt} "$B/crashes"
PY=/usr/bin/python3
if [ ! -f "$C/.seeded" ]; then
  $PY "$ROOT/tests/ops/make_op_cases.py" "$B/op_cases" > /dev/null
  ASAN_OPTIONS=detect_leaks=0 "$B/bin/make_seeds" "$B/op_cases" "$C/fuzz_model"
  cp "$ROOT"/models/*.atrous "$C/fuzz_model/" 2>/dev/null || true
  $PY "$ROOT/tests/convert/make_weight_fixtures.py" "$B/weight_fixtures" > /dev/null
  find "$B/weight_fixtures" -name '*.pth' -o -name '*.safetensors' | head -200 | xargs -r cp -t "$C/fuzz_weights/"
  $PY - "$B/weight_fixtures" "$C/fuzz_pickle" <<'PYEOF'
import sys, zipfile, pathlib
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for i, p in enumerate(sorted(src.rglob("*.pth"))):
    try:
        with zipfile.ZipFile(p) as z:
            for n in z.namelist():
                if n.endswith("data.pkl"):
                    (dst / f"{i}_{p.stem}.pkl").write_bytes(z.read(n))
    except zipfile.BadZipFile:
        pass
PYEOF
  $PY - "$C/fuzz_image" "$C/fuzz_npy" <<'PYEOF'
import sys, pathlib, numpy as np
from PIL import Image
img, npy = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rng = np.random.default_rng(0)
for i, (w, h, mode) in enumerate([(7, 5, "RGB"), (16, 9, "L"), (3, 3, "RGBA"), (33, 17, "P"), (1, 1, "LA")]):
    a = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "TGA"):
        try:
            a.save(img / f"{i}.{fmt.lower()}", fmt)
        except (OSError, ValueError):
            pass
for i, arr in enumerate([np.zeros((2, 3), np.float32), np.arange(10, dtype=np.int64), np.ones((1, 3, 4, 4)),
                         np.array([True, False]), np.zeros((0,), np.float16), np.float32(3.0)]):
    np.save(npy / f"{i}.npy", arr)
PYEOF
  touch "$C/.seeded"
fi
# Prompts: "W,H[,S]" then p X,Y[,L] / b X0,Y0,X1,Y1 / m N lines (tools/fuzz/targets.h), plus the regression inputs.
if [ -z "$(ls -A "$C/fuzz_prompt")" ]; then
  printf '640,480\np 320,240\n' > "$C/fuzz_prompt/point"
  printf '640,480,1024\np 10.5,20.25,0\np 600,400,1\nb 100,50,300,200\n' > "$C/fuzz_prompt/points_box"
  printf '1000,10\nb 0,0,1000,10\nm 256\n' > "$C/fuzz_prompt/box_mask"
  printf '3,4000,64\np 2.999,3999.5\np 1e2,-0\n' > "$C/fuzz_prompt/tall"
  printf 'p 1E+1,2.e-1,1\nb 0,0,1,1\n' > "$C/fuzz_prompt/no_size"
  cp "$ROOT"/tests/security/regressions/prompt/* "$C/fuzz_prompt/"
fi

export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for t in "${TARGETS[@]}"; do
  echo "== $t for ${SECONDS_PER_TARGET}s"
  mkdir -p "$B/crashes/$t"
  "$B/bin/$t" "$C/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=20 -rss_limit_mb=2048 -max_len=1048576 \
      -artifact_prefix="$B/crashes/$t/" -print_final_stats=1 ${ATROUS_FUZZ_ARGS:-} 2>&1 | tee "$B/$t.log" | grep -E "^#[0-9]+.*(DONE|pulse)|stat::|ERROR|SUMMARY" || true
done
