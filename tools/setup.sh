#!/usr/bin/env bash
# Installs the Debian 12 packages Atrous needs (only the missing ones) and
# configures + builds a Release tree in build/. Sourced by demo.sh and test.sh.
set -euo pipefail

ATROUS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${ATROUS_BUILD_DIR:-$ATROUS_ROOT/build}"

PACKAGES=(
  build-essential cmake pkg-config
  libflatbuffers-dev flatbuffers-compiler
  libdnnl-dev libspdlog-dev libcli11-dev libstb-dev catch2 nlohmann-json3-dev libzip-dev
  python3-torch python3-torchvision python3-numpy python3-pil
)

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  echo "Installing: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build_atrous() {
  local extra=("$@")
  cmake -S "$ATROUS_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release "${extra[@]}" > "$BUILD_DIR.cmake.log" 2>&1 ||
    { cat "$BUILD_DIR.cmake.log"; return 1; }
  if [ -n "${ATROUS_BUILD_TARGETS:-}" ]; then
    cmake --build "$BUILD_DIR" -j"$(nproc)" --target $ATROUS_BUILD_TARGETS
  else
    cmake --build "$BUILD_DIR" -j"$(nproc)"
  fi
}
