#!/usr/bin/env bash
# The tarball a user installs, tested as a user would: npm pack, install it into an empty
# project in a temporary directory with PREBUILDS_ONLY=1 (the prebuild must load; no compiler
# is used), then run `npx userfaultfd probe --json` and a short fault round trip there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
X64=prebuilds/linux-x64/userfaultfd.node
# A missing or stale x64 prebuild is rebuilt: the smoke test must install what the sources make.
if [ ! -f "$X64" ] || [ -n "$(find native binding.gyp -newer "$X64" | head -n 1)" ]; then
  bash test/pack/prebuilds.sh --x64-only
fi
# npm pack runs prepack (test/pack/check-prebuilds.mjs), which refuses a tarball without both
# prebuilds. This test installs on x64 only: without the arm64 cross toolchain, pack anyway.
if [ ! -f prebuilds/linux-arm64/userfaultfd.node ]; then
  echo "smoke: no linux-arm64 prebuild here (npm run prebuilds makes it): packing an x64-only tarball for this test"
  export UFFD_ALLOW_MISSING_PREBUILDS=1
fi

TMP="$(mktemp -d /tmp/uffd-pack.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
TGZ="$(npm pack --silent --pack-destination "$TMP" | tail -n 1)"
echo "packed $TGZ ($(du -h "$TMP/$TGZ" | cut -f1))"
tar -tzf "$TMP/$TGZ" > "$TMP/contents"  # a file, not a pipe: grep -q would SIGPIPE tar under pipefail
grep -q 'package/prebuilds/linux-x64/userfaultfd.node' "$TMP/contents" || { echo "smoke: no x64 prebuild in the tarball" >&2; exit 1; }
for f in LICENSE README.md CHANGELOG.md examples/heap/main.ts examples/snapshot/snapshot.ts; do
  grep -qx "package/$f" "$TMP/contents" || { echo "smoke: $f is not in the tarball" >&2; exit 1; }
done
if grep -qE 'package/(test|bench|build)/' "$TMP/contents"; then echo "smoke: tests or build output in the tarball" >&2; exit 1; fi

mkdir "$TMP/app"
cd "$TMP/app"
npm init -y >/dev/null
PREBUILDS_ONLY=1 npm install --no-audit --no-fund --omit=dev "$TMP/$TGZ" >/dev/null
# node-gyp-build compiled nothing: the package has no build/ directory.
[ ! -d node_modules/userfaultfd/build ] || { echo "smoke: the install compiled the addon" >&2; exit 1; }

PREBUILDS_ONLY=1 npx --no-install userfaultfd probe --json > probe.json
node -e '
  const r = require("./probe.json");
  const n = Object.keys(r.features).length;
  if (n !== 17 || !r.available) { console.error("smoke: probe reported", n, "features, available", r.available); process.exit(1); }
  console.log("probe:", Object.values(r.features).filter(Boolean).length, "of 17 features on", r.kernel);
'
PREBUILDS_ONLY=1 node -e '
  const { Userfaultfd, Mapping, testing, pageSize } = require("userfaultfd");
  const page = pageSize();
  const uffd = Userfaultfd.open();
  const mem = Mapping.anonymous(8 * page);
  uffd.register(mem);
  uffd.on("pagefault", (f) => uffd.copy(f.address, Buffer.alloc(page, 7)));
  testing.touch(mem, { threads: 2 }).then(() => {
    const ok = new Uint8Array(mem.buffer).every((b) => b === 7);
    uffd.close();
    mem.unmap();
    if (!ok) { console.error("smoke: wrong bytes"); process.exit(1); }
    console.log("smoke: 8 faults served from the installed tarball");
  });
'
