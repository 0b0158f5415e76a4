#!/usr/bin/env bash
# Cross-build the native addon for arm64, without touching the package's own build/.
#
#   test/vm/build-arm64.sh [PKG_DIR] [OUT_DIR]
#
# PKG_DIR defaults to the repo root (test/vm/../..).  OUT_DIR defaults to
# $CACHE/build-arm64; on success it holds build/Release/*.node for arm64, laid out so that
# run.mjs can drop it into the package copy inside the VM (node-gyp-build looks in
# build/Release first).
#
# Why a copy: node-gyp writes build/ in the directory it runs in, and the host's x64
# build/Release/userfaultfd.node must survive (the x86 VMs and the host tests use it).
# node_modules is symlinked, not copied, in case binding.gyp asks node for include paths.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PKG="$(cd "${1:-$HERE/../..}" && pwd)"
CACHE="${UFFD_VM_CACHE:-$HOME/.cache/userfaultfd-vm}"
OUT="${2:-$CACHE/build-arm64}"
NODE_VER=$(node -p process.versions.node)
NODEDIR="$CACHE/node-arm64/$NODE_VER/package"
[ -f "$NODEDIR/include/node/node_api.h" ] || { echo "build-arm64: run test/vm/fetch.sh first ($NODEDIR missing)" >&2; exit 1; }

# node-gyp: the package's own devDependency if present, else the copy bundled with npm.
GYP="$PKG/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$GYP" ] || GYP="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$GYP" ] || { echo "build-arm64: node-gyp not found" >&2; exit 1; }

WORK="$(mktemp -d /tmp/uffd-arm64-build.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
# Sources only: everything but the bulky or host-specific directories.
tar -C "$PKG" --exclude=./node_modules --exclude=./build --exclude=./.git --exclude=./prebuilds \
    --exclude=./dist -cf - . | tar -C "$WORK" -xf -
[ -d "$PKG/node_modules" ] && ln -s "$PKG/node_modules" "$WORK/node_modules"

# Calling node-gyp directly (not through npm) ignores npm's `nodedir` setting, so pass it
# explicitly; with --nodedir nothing is downloaded.
(cd "$WORK" && CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
   AR=aarch64-linux-gnu-ar node "$GYP" rebuild --arch=arm64 --nodedir="$NODEDIR" --release -j 2 \
   >"$WORK/gyp.log" 2>&1) || { cat "$WORK/gyp.log" >&2; echo "build-arm64: node-gyp failed" >&2; exit 1; }

shopt -s nullglob
nodes=("$WORK"/build/Release/*.node)
((${#nodes[@]})) || { echo "build-arm64: no .node produced" >&2; exit 1; }
rm -rf "$OUT/build"; mkdir -p "$OUT/build/Release"
cp "${nodes[@]}" "$OUT/build/Release/"
for f in "$OUT"/build/Release/*.node; do
  # Fail early if the toolchain produced the wrong architecture: ELF e_machine (offset 18)
  # is 183 for aarch64.  (od, not file(1): file is not on every machine.)
  [ "$(od -An -t u2 -j 18 -N 2 "$f" | tr -d ' ')" = 183 ] || { echo "build-arm64: $f is not aarch64" >&2; exit 1; }
  echo "$f"
done
