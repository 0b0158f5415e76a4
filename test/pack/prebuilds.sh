#!/usr/bin/env bash
# npm run prebuilds: prebuilds/linux-x64 (prebuildify, Node-API, stripped) and, when the arm64
# cross toolchain and the official arm64 Node headers are present (test/vm/fetch.sh installs and
# caches both), prebuilds/linux-arm64 cross-compiled with Debian's aarch64 toolchain.
set -euo pipefail
# The published addon carries no test hooks (fork/kill helpers: test/native/hooks.cc).
export UFFD_TEST_HOOKS=0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

# In a copy of the tree, so that build/ (the checkout's own addon, with its test hooks, which the
# suite and the VM matrix load) is left as it is.
X64_WORK="$(mktemp -d /tmp/uffd-prebuild-x64.XXXXXX)"
trap 'rm -rf "$X64_WORK"' EXIT
tar -C "$ROOT" --exclude=./node_modules --exclude=./build --exclude=./.git --exclude=./prebuilds \
  --exclude=./dist -cf - . | tar -C "$X64_WORK" -xf -
ln -s "$ROOT/node_modules" "$X64_WORK/node_modules"
(cd "$X64_WORK" && npx prebuildify --napi --strip)
mkdir -p prebuilds/linux-x64
cp "$X64_WORK/prebuilds/linux-x64/"*.node prebuilds/linux-x64/
if [ "${1:-}" = "--x64-only" ]; then exit 0; fi

if ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  echo "prebuilds: no aarch64 toolchain: linux-arm64 skipped (bash test/vm/fetch.sh installs it)" >&2
  exit 0
fi
OUT="$(mktemp -d /tmp/uffd-prebuild-arm64.XXXXXX)"
trap 'rm -rf "$OUT" "$X64_WORK"' EXIT
bash test/vm/build-arm64.sh "$ROOT" "$OUT" >/dev/null
mkdir -p prebuilds/linux-arm64
cp "$OUT/build/Release/userfaultfd.node" prebuilds/linux-arm64/userfaultfd.node
aarch64-linux-gnu-strip --strip-unneeded prebuilds/linux-arm64/userfaultfd.node
ls -la prebuilds/*/
