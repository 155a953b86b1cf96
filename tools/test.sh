#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite through ctest.
#   tools/test.sh              Release build in build/, every test
#   tools/test.sh --sanitize   AddressSanitizer + UBSan build in build-asan/, fast tests
#   tools/test.sh --tsan       ThreadSanitizer build in build-tsan/, the thread stress test
# ATROUS_BUILD_DIR=DIR builds in DIR instead, in any mode.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

mode=release
for arg in "$@"; do
  case "$arg" in
    --sanitize) mode=asan ;;
    --tsan) mode=tsan ;;
    *) echo "usage: tools/test.sh [--sanitize | --tsan]" >&2; exit 2 ;;
  esac
done

install_packages
case "$mode" in
  release)
    mkdir -p "$BUILD_DIR"
    build_atrous
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 1500
    ;;
  asan)
    BUILD_DIR="${ATROUS_BUILD_DIR:-$ATROUS_ROOT/build-asan}"
    mkdir -p "$BUILD_DIR"
    # -O1 with line tables only (reports keep file:line) compiles in about half the
    # time of -O2 -g; the tests labelled slow and the benchmark programs are not built.
    build_atrous -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATROUS_SANITIZE=ON -DATROUS_SLOW_TESTS=OFF -DATROUS_BUILD_BENCH=OFF \
      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" -LE slow --timeout 1500
    ;;
  tsan)
    BUILD_DIR="${ATROUS_BUILD_DIR:-$ATROUS_ROOT/build-tsan}"
    mkdir -p "$BUILD_DIR"
    ATROUS_BUILD_TARGETS="security_test" build_atrous -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATROUS_TSAN=ON
    # libgomp and the prebuilt oneDNN are not instrumented: their internal
    # synchronisation is invisible to TSan, so reports inside them are suppressed
    # (tests/security/tsan.supp); reports in Atrous code are not.
    TSAN_OPTIONS="suppressions=$ATROUS_ROOT/tests/security/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
      ATROUS_STRESS_SECONDS="${ATROUS_STRESS_SECONDS:-20}" "$BUILD_DIR/bin/security_test" "[threads]"
    ;;
esac
