/**
 * pagemapScan on the real kernel: the argument checks of the kernel's pagemap_ioctl selftest with
 * the errno asserted, the typed layer's own validation, categories, walkEnd and maxPages edges,
 * the iterator form, and another process's pagemap.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import {
  Mapping,
  Pagemap,
  UffdError,
  UnsupportedError,
  Userfaultfd,
  WriteTracker,
  pagemapScan,
  pagemapScanAll,
  probePagemapScan,
  type PagemapScanOptions,
} from '../lib/index';
import { SCAN_ARG, SCAN_ARG_SIZE } from '../lib/memory/pagemap';
import { pageSize } from '../lib/core/sysinfo';
import { hugetlbUnavailable } from './helpers/hugetlb';
import { MEMTYPES, skipIf, unavailable } from './helpers/memtypes';
import { isPresent } from './helpers/pagemap';
import { spansOf, unitsOf } from './helpers/regions';

const P = pageSize();
const BIT = { WRITTEN: 1n << 1n, PRESENT: 1n << 3n };

/**
 * Why a read of a never-written anonymous page does not map the shared zero page here, or
 * undefined if it does. Some guest kernels turn the zero page off (`pvm_no_zero_page=1` on the
 * boot line): a read fault then allocates a page of its own. Told by smaps, not by PAGEMAP_SCAN
 * (which is under test): the zero page is not counted in Rss, a page of its own is.
 */
function zeroPageUnused(): string | undefined {
  using mem = Mapping.anonymous(4 * P, { hugepage: false });
  const b = mem.bytes();
  let sum = 0;
  for (let i = 0; i < 4; i++) sum += b[i * P];
  const smaps = fs.readFileSync('/proc/self/smaps', 'utf8');
  const at = smaps.search(new RegExp(`^0*${mem.address.toString(16)}-`, 'm'));
  const rss = at < 0 ? undefined : /^Rss:\s+(\d+) kB/m.exec(smaps.slice(at));
  if (sum !== 0 || !rss || rss[1] === '0') return undefined;
  return `reads of fresh anonymous memory get pages of their own, not the zero page (Rss ${rss[1]} kB after reading 4 pages; boot line: ${fs.readFileSync('/proc/cmdline', 'utf8').match(/\S*zero_page\S*/)?.[0] ?? 'no *zero_page* option'})`;
}

function expectSysError(fn: () => unknown, code: string, errno: number): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected ${code}`).to.be.instanceOf(UffdError);
  const e = thrown as UffdError;
  expect(e.code).to.equal(code);
  expect(e.errno).to.equal(errno);
  expect(e.syscall).to.equal('ioctl');
  expect(e.ioctl).to.equal('PAGEMAP_SCAN');
}

function expectThrowsCode(fn: () => unknown, type: new (...a: never[]) => Error, code: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).to.be.instanceOf(type);
  expect((thrown as { code?: string }).code).to.equal(code);
}

describe('pagemapScan', function () {
  before(function () {
    const s = probePagemapScan();
    skipIf(this, s.supported ? undefined : `PAGEMAP_SCAN is unsupported (Linux 6.7): ${s.error}`);
  });

  describe('kernel argument checks (raw struct pm_scan_arg, errno asserted)', function () {
    let mem: Mapping;
    let pm: Pagemap;
    const vec = new BigUint64Array(16 * 3);
    function args(over: Partial<Record<keyof typeof SCAN_ARG, bigint>> = {}): BigUint64Array {
      const a = new BigUint64Array(12);
      a[SCAN_ARG.size] = SCAN_ARG_SIZE;
      a[SCAN_ARG.start] = mem.address;
      a[SCAN_ARG.end] = mem.address + BigInt(mem.length);
      a[SCAN_ARG.vecLen] = 16n;
      a[SCAN_ARG.categoryMask] = BIT.PRESENT;
      a[SCAN_ARG.returnMask] = BIT.PRESENT;
      for (const [k, v] of Object.entries(over)) a[SCAN_ARG[k as keyof typeof SCAN_ARG]] = v;
      return a;
    }
    beforeEach(function () {
      mem = Mapping.anonymous(16 * P);
      mem.bytes()[0] = 1;
      pm = Pagemap.open();
    });
    afterEach(function () {
      pm.close();
      mem.unmap();
    });

    it('accepts the well-formed call it is varied from', function () {
      expect(pm.scanRaw(args(), vec)).to.equal(1);
    });
    it('wrong size: EINVAL', function () {
      expectSysError(() => pm.scanRaw(args({ size: SCAN_ARG_SIZE - 8n }), vec), 'EINVAL', -22);
      expectSysError(() => pm.scanRaw(args({ size: SCAN_ARG_SIZE + 8n }), vec), 'EINVAL', -22);
      expectSysError(() => pm.scanRaw(args({ size: 0n }), vec), 'EINVAL', -22);
    });
    it('unaligned start: EINVAL', function () {
      expectSysError(() => pm.scanRaw(args({ start: mem.address + 1n }), vec), 'EINVAL', -22);
    });
    it('unknown flags: EINVAL', function () {
      expectSysError(() => pm.scanRaw(args({ flags: 4n }), vec), 'EINVAL', -22);
      expectSysError(() => pm.scanRaw(args({ flags: (1n << 64n) - 1n }), vec), 'EINVAL', -22);
      expectSysError(() => pm.scanRaw(args({ flags: 3n | 0xffn }), vec), 'EINVAL', -22);
    });
    it('unknown category bits in any of the four masks: EINVAL', function () {
      const unknown = 1n << 20n;
      expectSysError(() => pm.scanRaw(args({ categoryMask: unknown }), vec), 'EINVAL', -22);
      expectSysError(() => pm.scanRaw(args({ categoryAnyofMask: unknown }), vec), 'EINVAL', -22);
      expectSysError(() => pm.scanRaw(args({ categoryInverted: unknown }), vec), 'EINVAL', -22);
      expectSysError(() => pm.scanRaw(args({ returnMask: 0x1000n }), vec), 'EINVAL', -22);
    });
    it('vec NULL with vec_len > 0: EINVAL; vec NULL with vec_len 0: 0 regions', function () {
      expectSysError(() => pm.scanRaw(args({ vecLen: 16n }), null), 'EINVAL', -22);
      expect(pm.scanRaw(args({ vecLen: 0n }), null)).to.equal(0);
    });
    it('a vec with vec_len 0 is valid and returns 0', function () {
      expect(pm.scanRaw(args({ vecLen: 0n }), vec)).to.equal(0);
    });
    it('zero-length range: 0 regions, walk_end = start (with and without WP_MATCHING)', function () {
      for (const flags of [0n, 1n]) {
        const a = args({ end: mem.address, flags });
        expect(pm.scanRaw(a, vec)).to.equal(0);
        expect(a[SCAN_ARG.walkEnd]).to.equal(mem.address);
      }
    });
    it('end below start: EFAULT (the range fails access_ok)', function () {
      expectSysError(() => pm.scanRaw(args({ end: mem.address - BigInt(P) }), vec), 'EFAULT', -14);
    });
    it('CHECK_WPASYNC on a range not registered with WP_ASYNC: EPERM', function () {
      // Plain memory, no userfaultfd at all.
      expectSysError(() => pm.scanRaw(args({ flags: 2n, categoryMask: BIT.WRITTEN, returnMask: BIT.WRITTEN }), vec), 'EPERM', -1);
      // Registered for WP, but on a userfaultfd without WP_ASYNC.
      skipIf(this, unavailable(undefined, 'PAGEFAULT_FLAG_WP'));
      using uffd = Userfaultfd.open();
      uffd.register(mem, { wp: true });
      expectSysError(() => pm.scanRaw(args({ flags: 3n, categoryMask: BIT.WRITTEN, returnMask: BIT.WRITTEN }), vec), 'EPERM', -1);
    });
    it('valid corners the selftest accepts: no selection mask, all categories inverted with WP, required + anyOf', function () {
      const ALL = (1n << 8n) - 1n; // the 6.7 categories; GUARD came later
      using tracker = new WriteTracker(mem);
      mem.bytes()[3 * P] = 1;
      // No selection mask: every page matches, one run per change of the returned categories.
      expect(pm.scanRaw(args({ categoryMask: 0n, returnMask: BIT.WRITTEN }), vec)).to.equal(3);
      expect(pm.scanRaw(args({ categoryMask: ALL, categoryAnyofMask: ALL, returnMask: ALL }), vec)).to.equal(0);
      expect(pm.scanRaw(args({ categoryMask: BIT.WRITTEN, categoryAnyofMask: BIT.PRESENT, returnMask: ALL }), vec)).to.equal(1);
      // Everything matches with no mask, so WP_MATCHING re-protects the written page.
      expect(pm.scanRaw(args({ flags: 3n, categoryMask: 0n, categoryInverted: ALL, returnMask: BIT.WRITTEN }), vec)).to.equal(3);
      expect(tracker.written().length).to.equal(0);
      expect(tracker.closed).to.equal(false);
    });
    it('WP_MATCHING without CHECK_WPASYNC skips memory that cannot be tracked: 0 regions', function () {
      expect(pm.scanRaw(args({ flags: 1n, categoryMask: BIT.WRITTEN, returnMask: BIT.WRITTEN }), vec)).to.equal(0);
    });
  });

  describe('a kernel without PAGEMAP_SCAN', function () {
    it('ENOTTY from the ioctl becomes ERR_UFFD_UNSUPPORTED naming PAGEMAP_SCAN and 6.7', function () {
      // /dev/null has no ioctls at all: it answers PAGEMAP_SCAN as a pagemap before 6.7 does.
      using pm = Pagemap.fromFd(fs.openSync('/dev/null', 'r'));
      using mem = Mapping.anonymous(P);
      let thrown: unknown;
      try {
        pm.scan({ range: mem, categories: ['PRESENT'] });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).to.be.instanceOf(UnsupportedError);
      const e = thrown as UnsupportedError;
      expect(e.code).to.equal('ERR_UFFD_UNSUPPORTED');
      expect(e.feature).to.equal('PAGEMAP_SCAN');
      expect(e.since).to.equal('6.7');
    });
  });

  describe('typed options are validated before the kernel sees them', function () {
    let mem: Mapping;
    beforeEach(() => (mem = Mapping.anonymous(4 * P)));
    afterEach(() => mem.unmap());

    it('unknown category names: TypeError (ERR_INVALID_ARG_VALUE)', function () {
      for (const key of ['categories', 'anyOf', 'inverted', 'returnMask'] as const) {
        const opts = { range: mem, [key]: ['PRESENT', 'DIRTY'] } as unknown as PagemapScanOptions;
        expectThrowsCode(() => pagemapScan(opts), TypeError, 'ERR_INVALID_ARG_VALUE');
      }
      expectThrowsCode(() => pagemapScan({ range: mem, categories: 'PRESENT' } as unknown as PagemapScanOptions), TypeError, 'ERR_INVALID_ARG_TYPE');
    });
    it('unaligned start and end below start: RangeError (ERR_OUT_OF_RANGE)', function () {
      expectThrowsCode(() => pagemapScan({ start: mem.address + 8n, end: mem.address + BigInt(P) }), RangeError, 'ERR_OUT_OF_RANGE');
      expectThrowsCode(() => pagemapScan({ start: mem.address + BigInt(P), end: mem.address }), RangeError, 'ERR_OUT_OF_RANGE');
    });
    it('maxPages / maxRegions must be positive integers; pid a positive integer', function () {
      expectThrowsCode(() => pagemapScan({ range: mem, maxPages: 0 }), RangeError, 'ERR_OUT_OF_RANGE');
      expectThrowsCode(() => pagemapScan({ range: mem, maxRegions: 1.5 }), RangeError, 'ERR_OUT_OF_RANGE');
      expectThrowsCode(() => pagemapScan({ range: mem, maxRegions: 2 ** 40 }), RangeError, 'ERR_OUT_OF_RANGE');
      expectThrowsCode(() => pagemapScan({ range: mem, pid: -3 }), TypeError, 'ERR_INVALID_ARG_TYPE');
    });
    it('range and start/end together, or neither: TypeError', function () {
      expectThrowsCode(() => pagemapScan({ range: mem, start: mem.address, end: mem.address }), TypeError, 'ERR_INVALID_ARG_TYPE');
      expectThrowsCode(() => pagemapScan({}), TypeError, 'ERR_INVALID_ARG_TYPE');
    });
    it('checkWpAsync without a WP_ASYNC registration: UffdError EPERM, with what to do', function () {
      expectSysError(() => pagemapScan({ range: mem, categories: ['WRITTEN'], checkWpAsync: true }), 'EPERM', -1);
      expect(() => pagemapScan({ range: mem, categories: ['WRITTEN'], checkWpAsync: true })).to.throw(/WP_ASYNC userfaultfd \(use WriteTracker/);
    });
    it('zero length: no regions, walkEnd = start, done', function () {
      const r = pagemapScan({ start: mem.address, end: mem.address, categories: ['PRESENT'] });
      expect(r.regions.length).to.equal(0);
      expect(r.walkEnd).to.equal(mem.address);
      expect(r.done).to.equal(true);
    });
    it('a region index out of range is a coded RangeError (ERR_OUT_OF_RANGE), empty result included', function () {
      // The fuzz suite found the uncoded one, on a scan whose range getter unmapped the memory.
      const empty = pagemapScan({ start: mem.address, end: mem.address, categories: ['PRESENT'] }).regions;
      for (const i of [0, -1, 0.5, 2 ** 53]) {
        expectThrowsCode(() => empty.startOf(i), RangeError, 'ERR_OUT_OF_RANGE');
        expectThrowsCode(() => empty.endOf(i), RangeError, 'ERR_OUT_OF_RANGE');
        expectThrowsCode(() => empty.categoryBitsOf(i), RangeError, 'ERR_OUT_OF_RANGE');
      }
    });
  });

  describe('categories', function () {
    it('PRESENT agrees with /proc/self/pagemap, page by page', function () {
      using mem = Mapping.anonymous(64 * P, { hugepage: false });
      const b = mem.bytes();
      const touched = [0, 1, 2, 7, 20, 21, 40, 63];
      for (const i of touched) b[i * P] = 1;
      const { regions, walkEnd, done } = pagemapScan({ range: mem, categories: ['PRESENT'] });
      expect(done).to.equal(true);
      expect(walkEnd).to.equal(mem.address + BigInt(mem.length));
      expect(unitsOf(regions, mem.address, P)).to.deep.equal(touched);
      const fromProc = [];
      for (let i = 0; i < 64; i++) if (isPresent(mem.address + BigInt(i * P))) fromProc.push(i);
      expect(fromProc).to.deep.equal(touched);
      expect(spansOf(regions, mem.address, P)).to.deep.equal([[0, 3], [7, 8], [20, 22], [40, 41], [63, 64]]);
      expect(regions.at(0)?.categories).to.deep.equal({ PRESENT: true });
      expect(regions.bytes()).to.equal(touched.length * P);
    });

    it('an unmapped range (pagemap_ioctl unmapped_region_tests): no error, no regions, the walk done', function () {
      const mem = Mapping.anonymous(16 * P, { hugepage: false });
      mem.bytes().fill(1);
      const range = { address: mem.address, length: mem.length };
      mem.unmap();
      for (const inverted of [[], ['WRITTEN']] as const) {
        const { regions, walkEnd, done } = pagemapScan({ range, categories: ['WRITTEN'], inverted: [...inverted] });
        expect(regions.length, `inverted ${inverted.join()}`).to.equal(0);
        expect(done).to.equal(true);
        expect(walkEnd).to.equal(range.address + BigInt(range.length));
      }
    });

    it('inverted flips a category: the pages that are not present', function () {
      using mem = Mapping.anonymous(16 * P, { hugepage: false });
      mem.bytes()[3 * P] = 1;
      const { regions } = pagemapScan({ range: mem, categories: ['PRESENT'], inverted: ['PRESENT'] });
      expect(spansOf(regions, mem.address, P)).to.deep.equal([[0, 3], [4, 16]]);
      expect(regions.at(0)?.categories).to.deep.equal({ PRESENT: false });
    });

    it('anyOf matches pages with at least one; returnMask chooses what is reported and where regions split', function () {
      skipIf(this, zeroPageUnused());
      using mem = Mapping.anonymous(16 * P, { hugepage: false });
      const b = mem.bytes();
      b[2 * P] = 1; // written: a private anonymous page
      void b[5 * P]; // read: the shared zero page
      const any = pagemapScan({ range: mem, anyOf: ['PFNZERO', 'PRESENT'], returnMask: ['PFNZERO', 'PRESENT'] }).regions;
      expect(any.toArray().map((r) => [Number((r.start - mem.address) / BigInt(P)), r.categories])).to.deep.equal([
        [2, { PRESENT: true, PFNZERO: false }],
        [5, { PRESENT: true, PFNZERO: true }],
      ]);
      const zero = pagemapScan({ range: mem, categories: ['PRESENT', 'PFNZERO'] }).regions;
      expect(spansOf(zero, mem.address, P)).to.deep.equal([[5, 6]]);
      // An empty return mask merges everything that matched into runs with no categories.
      const bare = pagemapScan({ range: mem, anyOf: ['PRESENT'], returnMask: [] }).regions;
      expect(bare.at(0)?.categories).to.deep.equal({});
    });

    it('FILE on a file mapping; not on anonymous memory', function () {
      const file = path.join(os.tmpdir(), `uffd-pagemap-${process.pid}.bin`);
      fs.writeFileSync(file, Buffer.alloc(8 * P, 7));
      try {
        using mem = Mapping.file(file, { prot: 'r', shared: false });
        let sum = 0;
        for (let i = 0; i < 8; i++) sum += mem.bytes()[i * P];
        expect(sum).to.equal(56);
        const { regions } = pagemapScan({ range: mem, categories: ['PRESENT', 'FILE'] });
        expect(spansOf(regions, mem.address, P)).to.deep.equal([[0, 8]]);
        using anon = Mapping.anonymous(2 * P);
        anon.bytes()[0] = 1;
        expect(pagemapScan({ range: anon, categories: ['FILE'] }).regions.length).to.equal(0);
      } finally {
        fs.rmSync(file, { force: true });
      }
    });

    it('HUGE on hugetlb memory, in whole huge pages', function () {
      skipIf(this, hugetlbUnavailable(2));
      using mem = Mapping.hugetlb(2 * mem2mb());
      mem.bytes()[mem2mb()] = 1;
      const { regions } = pagemapScan({ range: mem, categories: ['PRESENT', 'HUGE'] });
      expect(spansOf(regions, mem.address, mem.pageSize)).to.deep.equal([[1, 2]]);
    });

    it('GUARD on guard regions (MADV_GUARD_INSTALL), and not after MADV_GUARD_REMOVE', function () {
      skipIf(this, probePagemapScan().categories.GUARD ? undefined : 'this kernel has no GUARD category (Linux < 6.14)');
      using mem = Mapping.anonymous(8 * P);
      try {
        mem.madvise('GUARD_INSTALL', { offset: 2 * P, length: 3 * P });
      } catch (err) {
        skipIf(this, `MADV_GUARD_INSTALL failed: ${(err as Error).message}`);
      }
      expect(spansOf(pagemapScan({ range: mem, categories: ['GUARD'] }).regions, mem.address, P)).to.deep.equal([[2, 5]]);
      mem.madvise('GUARD_REMOVE', { offset: 2 * P, length: 3 * P });
      expect(pagemapScan({ range: mem, categories: ['GUARD'] }).regions.length).to.equal(0);
    });

    it('SOFT_DIRTY: accepted; set on new pages where the kernel tracks soft-dirty', function () {
      // Without CONFIG_MEM_SOFT_DIRTY the kernel accepts the category but never sets it; VMAs
      // then lack the 'sd' flag in /proc/self/smaps.
      const tracks = /^VmFlags:.* sd/m.test(fs.readFileSync('/proc/self/smaps', 'utf8'));
      using mem = Mapping.anonymous(4 * P);
      mem.bytes()[P] = 1;
      const { regions } = pagemapScan({ range: mem, categories: ['PRESENT'], returnMask: ['PRESENT', 'SOFT_DIRTY'] });
      expect(regions.at(0)?.categories.SOFT_DIRTY).to.equal(tracks);
    });

    it('WPALLOWED only where a WP_ASYNC userfaultfd registered the range', function () {
      using mem = Mapping.anonymous(8 * P);
      expect(pagemapScan({ range: mem, categories: ['WPALLOWED'] }).regions.length).to.equal(0);
      using tracker = new WriteTracker(mem, { offset: 2 * P, length: 4 * P });
      const { regions } = pagemapScan({ range: mem, categories: ['WPALLOWED'] });
      expect(spansOf(regions, mem.address, P)).to.deep.equal([[2, 6]]);
      expect(tracker.closed).to.equal(false);
    });
  });

  for (const type of MEMTYPES.filter((t) => !t.hugetlb)) describe(`walkEnd and maxPages edges (${type.name})`, function () {
    let mem: Mapping;
    let tracker: WriteTracker;
    const N = 32;
    beforeEach(function () {
      skipIf(this, unavailable(type, 'WP_ASYNC'));
      mem = type.create(N);
      tracker = new WriteTracker(mem);
    });
    afterEach(function () {
      tracker?.close();
      mem?.unmap();
    });
    const end = () => mem.address + BigInt(mem.length);
    const at = (i: number) => mem.address + BigInt(i * P);

    it('a buffer that fills exactly: all regions, walkEnd = end', function () {
      for (const i of [1, 5, 9, 13]) mem.bytes()[i * P] = 1;
      const r = pagemapScan({ range: mem, categories: ['WRITTEN'], maxRegions: 4 });
      expect(r.regions.length).to.equal(4);
      expect(r.walkEnd).to.equal(end());
      expect(r.done).to.equal(true);
    });

    it('a buffer one region short: walkEnd = start of the region that did not fit', function () {
      for (const i of [1, 5, 9, 13]) mem.bytes()[i * P] = 1;
      const r = pagemapScan({ range: mem, categories: ['WRITTEN'], maxRegions: 3 });
      expect(unitsOf(r.regions, mem.address, P)).to.deep.equal([1, 5, 9]);
      expect(r.walkEnd).to.equal(at(13));
      expect(r.done).to.equal(false);
      const rest = pagemapScan({ start: r.walkEnd, end: end(), categories: ['WRITTEN'], maxRegions: 3 });
      expect(unitsOf(rest.regions, mem.address, P)).to.deep.equal([13]);
      expect(rest.done).to.equal(true);
    });

    it('maxPages smaller than a run: the run is cut, walkEnd at the cut, and only the cut part is reset', function () {
      mem.bytes().fill(1, 4 * P, 12 * P); // a run of 8 written pages
      const r = pagemapScan({ range: mem, categories: ['WRITTEN'], maxPages: 3, wpMatching: true, checkWpAsync: true });
      expect(spansOf(r.regions, mem.address, P)).to.deep.equal([[4, 7]]);
      expect(r.walkEnd).to.equal(at(7));
      const after = tracker.written();
      expect(spansOf(after, mem.address, P)).to.deep.equal([[7, 12]]);
    });

    it('maxPages of 1, and maxPages equal to the pages found', function () {
      for (const i of [2, 3, 10]) mem.bytes()[i * P] = 1;
      const one = pagemapScan({ range: mem, categories: ['WRITTEN'], maxPages: 1 });
      expect(spansOf(one.regions, mem.address, P)).to.deep.equal([[2, 3]]);
      expect(one.walkEnd).to.equal(at(3));
      // Reaching maxPages exactly is not running out: the walk goes on, and ends at the next
      // matching page (which would exceed it) or at the end of the range.
      const exact = pagemapScan({ range: mem, categories: ['WRITTEN'], maxPages: 3 });
      expect(spansOf(exact.regions, mem.address, P)).to.deep.equal([[2, 4], [10, 11]]);
      expect(exact.walkEnd).to.equal(end());
      expect(exact.done).to.equal(true);
      mem.bytes()[20 * P] = 1;
      const over = pagemapScan({ range: mem, categories: ['WRITTEN'], maxPages: 3 });
      expect(over.regions.length).to.equal(2);
      expect(over.walkEnd).to.equal(at(20));
    });

    it('more regions than the kernel\'s 512-region bounce buffer: done, walkEnd = end, nothing twice', function () {
      // The kernel leaves walk_end at its last bounce-buffer refill when such a walk completes;
      // the raw ioctl shows it, pagemapScan corrects it.
      using big = Mapping.anonymous(4096 * P, { hugepage: false });
      for (let i = 0; i < 4096; i += 2) big.bytes()[i * P] = 1;
      const bigEnd = big.address + BigInt(big.length);
      const r = pagemapScan({ range: big, categories: ['PRESENT'], maxRegions: 4096 });
      expect(r.regions.length).to.equal(2048);
      expect(r.done).to.equal(true);
      expect(r.walkEnd).to.equal(bigEnd);
      using pm = Pagemap.open();
      const args = new BigUint64Array(12);
      args[SCAN_ARG.size] = SCAN_ARG_SIZE;
      args[SCAN_ARG.start] = big.address;
      args[SCAN_ARG.end] = bigEnd;
      args[SCAN_ARG.vecLen] = 4096n;
      args[SCAN_ARG.categoryMask] = BIT.PRESENT;
      args[SCAN_ARG.returnMask] = BIT.PRESENT;
      expect(pm.scanRaw(args, new BigUint64Array(4096 * 3))).to.equal(2048);
      const rawWalkEnd = args[SCAN_ARG.walkEnd];
      if (rawWalkEnd !== bigEnd) expect(rawWalkEnd).to.equal(big.address + BigInt(3 * 512 * 2 * P)); // the 3rd refill: region 1536, page 3072
      expect([...pagemapScanAll({ range: big, categories: ['PRESENT'], maxRegions: 1000 })].length).to.equal(2048);
    });

    it('pagemapScanAll continues from walkEnd to the end of the range, whatever the per-call bounds', function () {
      const written = [0, 2, 3, 4, 8, 17, 18, 30, 31];
      for (const i of written) mem.bytes()[i * P] = 1;
      const whole = spansOf(pagemapScan({ range: mem, categories: ['WRITTEN'] }).regions, mem.address, P);
      expect(whole).to.deep.equal([[0, 1], [2, 5], [8, 9], [17, 19], [30, 32]]);
      for (const bounds of [{ maxRegions: 1 }, { maxRegions: 2 }, { maxPages: 1 }, { maxPages: 2, maxRegions: 1 }]) {
        const all = [...pagemapScanAll({ range: mem, categories: ['WRITTEN'], ...bounds })];
        // A run cut by maxPages comes back as adjacent pieces: same pages.
        expect(unitsOf(all, mem.address, P), JSON.stringify(bounds)).to.deep.equal(written);
      }
    });
  });

  describe('hugetlb: maxPages below the huge page size', function () {
    for (const type of MEMTYPES.filter((t) => t.hugetlb)) {
      it(`${type.name}: a plain scan cuts inside the huge page; wpMatching refuses to protect part of one`, function () {
        skipIf(this, unavailable(type, 'WP_ASYNC'));
        using mem = type.create(2);
        using tracker = new WriteTracker(mem);
        mem.bytes().fill(1, 0, 2 * type.unit);
        const half = type.unit / P / 2;
        const plain = pagemapScan({ range: mem, categories: ['WRITTEN'], maxPages: half });
        expect(spansOf(plain.regions, mem.address, P)).to.deep.equal([[0, half]]);
        expect(plain.walkEnd).to.equal(mem.address + BigInt(half * P));
        // Kernel: "Partial HugeTLB page WP isn't possible": the page is backed out, nothing is
        // reported or protected, and the walk goes on; walk_end is left at the start of the
        // last huge page backed out (here the second), not where the walk stopped.
        const wp = pagemapScan({ range: mem, categories: ['WRITTEN'], maxPages: half, wpMatching: true, checkWpAsync: true });
        expect(wp.regions.length).to.equal(0);
        expect(wp.walkEnd).to.equal(mem.address + BigInt(type.unit));
        expect(spansOf(tracker.written(), mem.address, type.unit)).to.deep.equal([[0, 2]]);
        // The iterator would spin there forever: it stops with a RangeError instead.
        expect(() => [...pagemapScanAll({ range: mem, categories: ['WRITTEN'], maxPages: half, wpMatching: true })]).to.throw(RangeError, /no progress/);
        // A whole huge page per call works.
        const all = [...pagemapScanAll({ range: mem, categories: ['WRITTEN'], maxPages: type.unit / P, wpMatching: true })];
        expect(unitsOf(all, mem.address, type.unit)).to.deep.equal([0, 1]);
        expect(tracker.written().length).to.equal(0);
      });
    }
  });

  describe('another process (pid)', function () {
    it("reads the child's pagemap: the pages it touched are present", async function () {
      const script = `
        const u = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.js'))});
        const P = u.pageSize();
        const mem = u.Mapping.anonymous(32 * P, { hugepage: false });
        for (const i of [3, 4, 5, 20]) mem.bytes()[i * P] = 1;
        process.stdout.write(mem.address.toString() + '\\n');
        process.stdin.on('data', () => process.exit(0));
        setTimeout(() => process.exit(2), 10000);`;
      const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
      try {
        const address = await new Promise<bigint>((resolve, reject) => {
          child.stdout.once('data', (d: Buffer) => resolve(BigInt(d.toString().trim())));
          child.once('exit', (code) => reject(new Error(`child exited early: ${code}`)));
        });
        const opts = { start: address, end: address + BigInt(32 * P), categories: ['PRESENT'] as const, pid: child.pid };
        const { regions } = pagemapScan({ ...opts, categories: [...opts.categories] });
        expect(spansOf(regions, address, P)).to.deep.equal([[3, 6], [20, 21]]);
        expect(unitsOf(pagemapScanAll({ ...opts, categories: ['PRESENT'], maxRegions: 1 }), address, P)).to.deep.equal([3, 4, 5, 20]);
        using pm = Pagemap.open(child.pid);
        expect(pm.pid).to.equal(child.pid);
        expect(() => pm.scan({ ...opts, categories: ['PRESENT'] })).to.throw(TypeError, /pid does not apply/);
        expect(pm.scan({ start: address, end: address + BigInt(32 * P), categories: ['PRESENT'] }).regions.length).to.equal(2);
      } finally {
        child.stdin.end('x');
        child.kill('SIGKILL');
      }
    });
  });
});

function mem2mb(): number {
  return MEMTYPES.find((t) => t.hugetlb)?.unit ?? 2 * 1024 * 1024;
}
