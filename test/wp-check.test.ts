/**
 * Write-protection that the kernel offers but does not deliver. Linux 5.10 on arm64 offers
 * PAGEFAULT_FLAG_WP and accepts WP registrations, yet a write to a write-protected page lands
 * without a fault: a dirty tracker or a WP handler would miss every write. The library finds
 * this out once (native/wp_check.cc) and then refuses WP loudly. These tests check that verdict
 * against the kernel's real behaviour, observed through the raw handle, which the library's
 * refusal does not guard.
 */
import { expect } from 'chai';
import { Mapping, Userfaultfd, UnsupportedError, probe, testing } from '../lib/index';
import { native } from '../lib/core/binding';
import { FEATURES } from '../lib/core/constants';
import { nativeUffdOf } from '../lib/core/userfaultfd';
import { pageSize } from '../lib/core/sysinfo';
import { rawUffdFd } from './helpers/memtypes';

const page = pageSize();
const WP_BIT = 1n << BigInt(FEATURES.PAGEFAULT_FLAG_WP.bit);
const REGISTER_WP = 2n;

/** The features UFFDIO_API offers, asked on a throwaway descriptor. */
function offeredFeatures(): bigint {
  const fd = rawUffdFd();
  try {
    return native.apiHandshake(fd, 0n).features;
  } finally {
    native.closeFd(fd);
  }
}

/**
 * Writes every page of a write-protected mapping from a native thread, on a descriptor set up
 * through the raw handle; returns how many WP faults the uffd reported. Undefined where the
 * kernel refuses the WP registration itself (it then does not offer WP either).
 */
async function wpFaultsSeen(pages: number): Promise<number | undefined> {
  const fd = rawUffdFd();
  const offered = native.apiHandshake(fd, WP_BIT).features;
  expect(offered & WP_BIT).to.not.equal(0n);
  using uffd = Userfaultfd.fromFd(fd, { features: ['PAGEFAULT_FLAG_WP'], dup: false });
  using mem = Mapping.anonymous(pages * page, { hugepage: false });
  new Uint8Array(mem.buffer).fill(1); // present: a write can only raise a WP fault
  const raw = nativeUffdOf(uffd);
  try {
    raw.register(mem.address, mem.length, REGISTER_WP);
  } catch {
    return undefined;
  }
  raw.writeProtect(mem.address, mem.length, 1n);
  let faults = 0;
  uffd.on('pagefault', (ev) => {
    if (ev.flags.wp) faults++;
    raw.writeProtect(ev.address, page, 0n); // un-protects and wakes the writer
  });
  await testing.touch(mem, { mode: 'write' });
  // Every write landed, faulted or not: 'write' stores the page's index + 1.
  const words = new BigUint64Array(mem.buffer);
  for (let i = 0; i < pages; i++) expect(words[(i * page) / 8]).to.equal(BigInt(i + 1));
  return faults;
}

describe('write-protect: offered is not delivered (arm64 Linux 5.10)', () => {
  it('the library says WP works exactly where a write to a protected page faults', async function () {
    if ((offeredFeatures() & WP_BIT) === 0n) {
      process.stdout.write(`      skip: ${this.test?.fullTitle()} [why: the kernel does not offer PAGEFAULT_FLAG_WP]\n`);
      return this.skip();
    }
    const seen = await wpFaultsSeen(4);
    if (seen === undefined) {
      expect(native.wpFaultsDelivered()).to.equal(false);
      return;
    }
    // Either every write faulted, or none did: nothing in between is a kernel we know.
    expect([0, 4]).to.include(seen);
    expect(native.wpFaultsDelivered()).to.equal(seen === 4);
    expect(probe().features.PAGEFAULT_FLAG_WP).to.equal(seen === 4);
  });

  it('where it is not delivered, opening for WP and registering WP are ERR_UFFD_UNSUPPORTED, with the reason', function () {
    // Only where WP is offered: a kernel that does not offer it (arm64 6.1) refuses it plainly.
    const why = (offeredFeatures() & WP_BIT) === 0n ? 'the kernel does not offer PAGEFAULT_FLAG_WP' : native.wpFaultsDelivered() ? 'WP faults are delivered on this kernel' : undefined;
    if (why !== undefined) {
      process.stdout.write(`      skip: ${this.test?.fullTitle()} [why: ${why}]\n`);
      return this.skip();
    }
    const report = probe();
    expect(report.features.PAGEFAULT_FLAG_WP).to.equal(false);
    expect(report.broken.PAGEFAULT_FLAG_WP).to.match(/raises no fault/);
    expect(() => Userfaultfd.open({ features: ['PAGEFAULT_FLAG_WP'] }))
      .to.throw(UnsupportedError)
      .with.property('message')
      .that.matches(/raises no fault/);
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(page);
    expect(() => uffd.register(mem, { wp: true })).to.throw(UnsupportedError).that.includes({ code: 'ERR_UFFD_UNSUPPORTED', feature: 'WP registration' });
    expect(() => uffd.writeProtect(mem, true)).to.throw(UnsupportedError, /raises no fault/);
  });
});
