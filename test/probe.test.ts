/**
 * probe() and the `userfaultfd probe` command.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { probe, Userfaultfd, UffdError, UnsupportedError } from '../lib/index';
import { FEATURE_NAMES, PAGE_CATEGORY_NAMES } from '../lib/core/constants';
import { runChild } from './helpers/child';
import { scaled } from './helpers/speed';

const CLI = path.resolve(__dirname, '..', 'lib', 'cli', 'cli.js');

describe('probe', () => {
  it('reports every known feature by name, the raw bits, and the ioctls', () => {
    const r = probe();
    expect(r.available).to.equal(true);
    expect(Object.keys(r.features)).to.have.members(FEATURE_NAMES);
    expect(FEATURE_NAMES).to.have.length(17);
    for (const name of FEATURE_NAMES) {
      const bit = 1n << BigInt(FEATURE_NAMES.indexOf(name));
      expect(r.features[name], name).to.equal((r.featureBits & bit) !== 0n);
    }
    expect(r.ioctls).to.include.members(['API', 'REGISTER', 'UNREGISTER']);
    expect(r.kernel).to.equal(os.release());
  });

  it('reports how a userfaultfd can be opened here', () => {
    const r = probe();
    // UFFD_USER_MODE_ONLY came in 5.11 (the kernels this suite runs on are upstream-versioned).
    const [major, minor] = os.release().split('.').map(Number);
    const hasFlag = major > 5 || (major === 5 && minor >= 11);
    if (hasFlag) expect(r.open.syscallUserModeOnly.ok).to.equal(true);
    else expect(r.open.syscallUserModeOnly).to.deep.equal({ ok: false, error: process.getuid?.() === 0 ? 'EINVAL' : r.open.syscall.error });
    if (process.getuid?.() === 0) expect(r.open.syscall.ok).to.equal(true);
    expect([0, 1, undefined]).to.include(r.unprivilegedUserfaultfd);
  });

  it('reports page sizes, THP and the hugetlb pools', () => {
    const r = probe();
    expect([4096, 16384, 65536]).to.include(r.pageSize);
    expect(r.hugetlb.defaultSize).to.be.greaterThan(r.pageSize);
    for (const pool of r.hugetlb.pools) expect(pool.free).to.be.at.most(pool.total);
    if (r.thp) expect(r.thp.size % r.pageSize).to.equal(0);
  });

  it('reports PAGEMAP_SCAN support and its categories', () => {
    const r = probe();
    expect(Object.keys(r.pagemapScan.categories)).to.have.members(PAGE_CATEGORY_NAMES);
    if (r.pagemapScan.supported) {
      expect(r.pagemapScan.categories.WRITTEN).to.equal(true);
      expect(r.pagemapScan.categories.PRESENT).to.equal(true);
    } else {
      expect(Object.values(r.pagemapScan.categories).every((v) => !v)).to.equal(true);
    }
  });

  it('reports a feature as available exactly when this process can open a userfaultfd with it', () => {
    // UFFDIO_API offers every feature the kernel has, to anyone; some are refused when asked
    // for (EVENT_FORK without CAP_SYS_PTRACE). probe() must say what a real open gets.
    const r = probe();
    for (const name of FEATURE_NAMES) {
      let got: string;
      try {
        Userfaultfd.open({ features: [name] }).close();
        got = 'ok';
      } catch (err) {
        // A feature this kernel lacks is refused before any descriptor is made (UnsupportedError).
        expect(err instanceof UffdError || err instanceof UnsupportedError, `${name}: ${String(err)}`).to.equal(true);
        got = (err as UffdError | UnsupportedError).code;
      }
      if (r.features[name]) expect(got, name).to.equal('ok');
      else if (r.denied[name] !== undefined) expect(got, name).to.equal(r.denied[name]);
      else expect(got, name).to.equal('ERR_UFFD_UNSUPPORTED');
    }
  });

  it('as an ordinary user (no CAP_SYS_PTRACE), EVENT_FORK is denied with EPERM, as a real open is', function () {
    if (process.getuid?.() !== 0) {
      process.stdout.write(`      skip: ${this.test?.fullTitle()} [why: only root can start a child as another user]\n`);
      this.skip();
    }
    if (!probe().features.EVENT_FORK) {
      process.stdout.write(`      skip: ${this.test?.fullTitle()} [why: the kernel lacks EVENT_FORK]\n`);
      this.skip();
    }
    const c = runChild(
      `process.setgid(65534); process.setuid(65534);
       const r = uffd.probe();
       let open;
       try { uffd.Userfaultfd.open({ features: ['EVENT_FORK'] }).close(); open = 'ok'; } catch (e) { open = e.code; }
       console.log(JSON.stringify({ fork: r.features.EVENT_FORK, denied: r.denied, bits: String(r.featureBits), open }));`,
    );
    expect(c.status, c.stderr).to.equal(0);
    const out = JSON.parse(c.stdout.trim()) as { fork: boolean; denied: Record<string, string>; bits: string; open: string };
    expect(out.open).to.equal('EPERM');
    expect(out.fork).to.equal(false);
    expect(out.denied).to.deep.equal({ EVENT_FORK: 'EPERM' });
    expect(BigInt(out.bits) & 2n).to.equal(0n);
  });

  it('keeps feature bits it has no name for', () => {
    const r = probe();
    expect(r.unknownFeatureBits & ((1n << 17n) - 1n)).to.equal(0n);
  });
});

describe('userfaultfd probe (the CLI)', () => {
  it('--json prints the report, with bigints as hex strings', () => {
    const r = spawnSync(process.execPath, [CLI, 'probe', '--json'], { encoding: 'utf8', timeout: scaled(15000) });
    expect(r.status, r.stderr).to.equal(0);
    const report = JSON.parse(r.stdout) as { features: Record<string, boolean>; featureBits: string; kernel: string };
    expect(Object.keys(report.features)).to.have.length(17);
    expect(report.featureBits).to.match(/^0x[0-9a-f]+$/);
    expect(report.kernel).to.equal(os.release());
    const reported = Object.values(report.features).filter(Boolean).length;
    expect(reported).to.equal(Object.values(probe().features).filter(Boolean).length);
  });

  it('prints a readable table', () => {
    const r = spawnSync(process.execPath, [CLI, 'probe'], { encoding: 'utf8', timeout: scaled(15000) });
    expect(r.status).to.equal(0);
    expect(r.stdout).to.match(/^userfaultfd on Linux /);
    expect(r.stdout).to.match(/THREAD_ID\s+(yes|no)\s+since 4\.14/);
    expect(r.stdout).to.include('PAGEMAP_SCAN');
  });

  it('rejects unknown commands and options with exit code 2', () => {
    expect(spawnSync(process.execPath, [CLI, 'frobnicate'], { encoding: 'utf8' }).status).to.equal(2);
    const r = spawnSync(process.execPath, [CLI, 'probe', '--yaml'], { encoding: 'utf8' });
    expect(r.status).to.equal(2);
    expect(r.stderr).to.include("unknown option '--yaml'");
  });
});
