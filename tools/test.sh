#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite through ctest.
#   tools/test.sh              Release build in build/, every test
#   tools/test.sh --sanitize   AddressSanitizer + UBSan build in build-asan/, fast tests
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

mode=release
for arg in "$@"; do
  case "$arg" in
    --sanitize) mode=asan ;;
    *) echo "usage: tools/test.sh [--sanitize]" >&2; exit 2 ;;
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
    BUILD_DIR="$ATROUS_ROOT/build-asan"
    mkdir -p "$BUILD_DIR"
    build_atrous -DCMAKE_BUILD_TYPE=RelWithDebInfo -DATROUS_SANITIZE=ON
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" -LE slow --timeout 1500
    ;;
esac
