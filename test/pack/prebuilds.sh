#!/usr/bin/env bash
# npm run prebuilds: prebuilds/linux-x64 (prebuildify, Node-API, stripped) and, when the arm64
# cross toolchain and the official arm64 Node headers are present (test/vm/fetch.sh installs and
# caches both), prebuilds/linux-arm64 cross-compiled with Debian's aarch64 toolchain.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

npx prebuildify --napi --strip
if [ "${1:-}" = "--x64-only" ]; then exit 0; fi

if ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  echo "prebuilds: no aarch64 toolchain: linux-arm64 skipped (bash test/vm/fetch.sh installs it)" >&2
  exit 0
fi
OUT="$(mktemp -d /tmp/uffd-prebuild-arm64.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
bash test/vm/build-arm64.sh "$ROOT" "$OUT" >/dev/null
mkdir -p prebuilds/linux-arm64
cp "$OUT/build/Release/userfaultfd.node" prebuilds/linux-arm64/userfaultfd.node
aarch64-linux-gnu-strip --strip-unneeded prebuilds/linux-arm64/userfaultfd.node
ls -la prebuilds/*/
