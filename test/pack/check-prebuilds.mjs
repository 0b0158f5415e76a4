#!/usr/bin/env node
// npm's prepack: the tarball must carry a prebuilt addon for linux-x64 and for linux-arm64, or
// every install compiles for a minute (and fails where there is no compiler). Without this
// check `npm pack` after the README's build packed no prebuilds at all, silently.
//
// Checks that each prebuild is there, is an ELF shared object for its architecture, is not
// older than the native sources, and carries no test hooks (test/native/hooks.cc: fork/kill
// helpers the published addon must not have; prebuilds.sh builds without them). On failure it says how to make them and exits 1.
// UFFD_ALLOW_MISSING_PREBUILDS=1 turns the failure into a warning, for a tarball that is only
// tested locally (test/pack/smoke.sh on a machine without the arm64 cross toolchain).
//
//   node test/pack/check-prebuilds.mjs [package root]
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '..', '..'));
// e_machine of an ELF header (offset 18, little-endian): EM_X86_64 and EM_AARCH64.
const WANTED = { 'linux-x64': 62, 'linux-arm64': 183 };

/** The newest mtime of what a prebuild is built from: a prebuild older than that is stale. */
function newestSource() {
  const native = path.join(root, 'native');
  const files = fs.existsSync(native) ? fs.readdirSync(native).map((f) => path.join(native, f)) : [];
  files.push(path.join(root, 'binding.gyp'));
  return Math.max(0, ...files.filter((f) => fs.existsSync(f)).map((f) => fs.statSync(f).mtimeMs));
}

const problems = [];
const sources = newestSource();
for (const [target, machine] of Object.entries(WANTED)) {
  const file = path.join(root, 'prebuilds', target, 'userfaultfd.node');
  if (!fs.existsSync(file)) {
    problems.push(`${path.relative(root, file)} is missing`);
    continue;
  }
  const head = Buffer.alloc(20);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, 20, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (head.readUInt32BE(0) !== 0x7f454c46 || head[4] !== 2 || head.readUInt16LE(16) !== 3) {
    problems.push(`${path.relative(root, file)} is not a 64-bit ELF shared object`);
  } else if (head.readUInt16LE(18) !== machine) {
    problems.push(`${path.relative(root, file)} is built for ELF machine ${head.readUInt16LE(18)}, not ${target} (${machine})`);
  } else if (fs.statSync(file).mtimeMs < sources) {
    problems.push(`${path.relative(root, file)} is older than native/ or binding.gyp`);
  } else if (fs.readFileSync(file).includes('testHooks')) {
    problems.push(`${path.relative(root, file)} carries the test hooks (build it with UFFD_TEST_HOOKS=0, as npm run prebuilds does)`);
  }
}

if (problems.length > 0) {
  const allowed = process.env.UFFD_ALLOW_MISSING_PREBUILDS === '1';
  process.stderr.write(
    `${allowed ? 'warning' : 'error'}: the tarball needs prebuilds for linux-x64 and linux-arm64:\n` +
      problems.map((p) => `  ${p}\n`).join('') +
      'Make them with `npm run prebuilds` (linux-arm64 needs the aarch64 cross toolchain and Node headers:\n' +
      'run `bash test/vm/fetch.sh` once first).\n' +
      (allowed
        ? 'Packing anyway (UFFD_ALLOW_MISSING_PREBUILDS=1): installs of this tarball without a matching prebuild compile the addon.\n'
        : 'To pack without them anyway (a tarball that compiles on install), set UFFD_ALLOW_MISSING_PREBUILDS=1.\n'),
  );
  process.exit(allowed ? 0 : 1);
}
process.stderr.write('prebuilds: linux-x64 and linux-arm64 present and current\n');
