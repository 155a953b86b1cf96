#!/usr/bin/env bash
# Installs what is missing, builds the atrous CLI (Release, in build/), and segments
# a sample image with the shipped demo model (models/shapes_gcn.atrous: background,
# circle, square, triangle, star). Writes out/demo/mask.png (class per pixel, an
# indexed PNG) and out/demo/overlay.png (class colours over the image).
#   tools/demo.sh            the sample models/samples/shapes_0000.png
#   tools/demo.sh IMAGE      any JPEG/PNG image instead
# Works from any directory and can be run again (nothing is rebuilt when up to date).
# ATROUS_BUILD_DIR=DIR builds elsewhere than build/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

if [ $# -gt 1 ]; then
  echo "usage: tools/demo.sh [IMAGE]" >&2
  exit 2
fi
MODEL="$ATROUS_ROOT/models/shapes_gcn.atrous"
IMAGE="${1:-$ATROUS_ROOT/models/samples/shapes_0000.png}"
OUT="$ATROUS_ROOT/out/demo"
if [ ! -f "$IMAGE" ]; then
  echo "error: no image '$IMAGE'" >&2
  exit 2
fi
IMAGE="$(cd "$(dirname "$IMAGE")" && pwd)/$(basename "$IMAGE")"

install_packages
mkdir -p "$BUILD_DIR"
echo "Building the atrous CLI in $BUILD_DIR ..."
ATROUS_BUILD_TARGETS="atrous_cli" build_atrous

mkdir -p "$OUT"
rm -f "$OUT/mask.png" "$OUT/overlay.png"
echo
echo "\$ atrous run models/shapes_gcn.atrous $(basename "$IMAGE") -o out/demo/mask.png --overlay out/demo/overlay.png"
"$BUILD_DIR/bin/atrous" run "$MODEL" "$IMAGE" -o "$OUT/mask.png" --overlay "$OUT/overlay.png"
echo
echo "Segmented $IMAGE with $MODEL:"
echo "  mask     $OUT/mask.png     (pixel = class index: 0 background, 1 circle, 2 square, 3 triangle, 4 star)"
echo "  overlay  $OUT/overlay.png  (class colours blended over the image)"
echo "The CLI: $BUILD_DIR/bin/atrous (atrous --help)"
