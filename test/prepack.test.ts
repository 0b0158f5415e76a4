/**
 * npm's prepack (test/pack/check-prebuilds.mjs): a tarball without both prebuilds, with one built
 * for the wrong architecture, or with one older than the native sources, is refused with a
 * message saying how to make them. Run against fake package roots in a temporary directory.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { skipIf } from './helpers/memtypes';

const SCRIPT = path.resolve(__dirname, '..', '..', 'test', 'pack', 'check-prebuilds.mjs');

/** The first 20 bytes of a 64-bit little-endian ELF shared object for `machine`. */
function elf(machine: number): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(0x7f454c46, 0);
  b[4] = 2; // ELFCLASS64
  b[5] = 1; // little-endian
  b.writeUInt16LE(3, 16); // ET_DYN
  b.writeUInt16LE(machine, 18);
  return b;
}

describe('prepack: the tarball gets both prebuilds', () => {
  let root: string;
  const write = (target: string, machine: number) => {
    fs.mkdirSync(path.join(root, 'prebuilds', target), { recursive: true });
    fs.writeFileSync(path.join(root, 'prebuilds', target, 'userfaultfd.node'), elf(machine));
  };
  const check = (env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [SCRIPT, root], { encoding: 'utf8', timeout: 15000, env: { ...process.env, UFFD_ALLOW_MISSING_PREBUILDS: '', ...env } });

  before(function () {
    // The VMs (test/vm) get dist/ and package.json, not the repository's test/pack scripts.
    skipIf(this, fs.existsSync(SCRIPT) ? undefined : `${SCRIPT} is not here (a package copy without the repository's scripts)`);
  });

  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'uffd-prepack-'));
    fs.mkdirSync(path.join(root, 'native'));
    fs.writeFileSync(path.join(root, 'native', 'addon.cc'), '');
    fs.writeFileSync(path.join(root, 'binding.gyp'), '{}');
    // The sources are older than anything written after them.
    const past = new Date(Date.now() - 60000);
    for (const f of ['native/addon.cc', 'binding.gyp']) fs.utimesSync(path.join(root, f), past, past);
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  it('refuses a package with no prebuilds and says how to make them', () => {
    const r = check();
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include('prebuilds/linux-x64/userfaultfd.node is missing');
    expect(r.stderr).to.include('prebuilds/linux-arm64/userfaultfd.node is missing');
    expect(r.stderr).to.include('npm run prebuilds');
  });

  it('accepts an x64 and an arm64 prebuild newer than the sources', () => {
    write('linux-x64', 62);
    write('linux-arm64', 183);
    const r = check();
    expect(r.status, r.stderr).to.equal(0);
  });

  it('refuses a prebuild for the wrong architecture, and one older than the sources', () => {
    write('linux-x64', 62);
    write('linux-arm64', 62);
    let r = check();
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include('linux-arm64/userfaultfd.node is built for ELF machine 62, not linux-arm64');
    write('linux-arm64', 183);
    fs.utimesSync(path.join(root, 'binding.gyp'), new Date(), new Date(Date.now() + 60000));
    r = check();
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include('is older than native/ or binding.gyp');
  });

  it('UFFD_ALLOW_MISSING_PREBUILDS=1 packs anyway, with the warning', () => {
    write('linux-x64', 62);
    const r = check({ UFFD_ALLOW_MISSING_PREBUILDS: '1' });
    expect(r.status).to.equal(0);
    expect(r.stderr).to.match(/^warning: /).and.include('linux-arm64/userfaultfd.node is missing');
  });
});
