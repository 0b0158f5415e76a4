/**
 * The resolving ioctls per memory type: COPY, ZEROPAGE, CONTINUE, WRITEPROTECT, POISON, WAKE
 * (MOVE, for anonymous memory only, has its own file: move.test.ts). Nothing here touches a
 * registered, unresolved page from the JS thread: pages are resolved before they are read, and
 * crashes that are the expected outcome run in a child process.
 */
import { expect } from 'chai';
import { Mapping, Userfaultfd, UffdError, testing } from '../lib/index';
import { pageSize } from '../lib/core/sysinfo';
import { runChild } from './helpers/child';
import { MEMTYPES, skipIf, unavailable } from './helpers/memtypes';
import { pattern } from './helpers/pattern';
import { isPresent, isUffdWp, uffdWpBitUnavailable } from './helpers/pagemap';

for (const type of MEMTYPES) {
  describe(`resolve [${type.name}]`, () => {
    it('copy fills unfaulted pages, then EEXIST with bytes 0 on the second try', function () {
      skipIf(this, unavailable(type, type.missingFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(2);
      uffd.register(mem);
      const data = pattern(type.unit, 7);
      expect(uffd.copy(mem.address, data)).to.equal(type.unit);
      expect(Buffer.from(mem.buffer, 0, type.unit).equals(data)).to.equal(true);
      expect(() => uffd.copy(mem.address, data))
        .to.throw(UffdError)
        .that.deep.includes({ code: 'EEXIST', errno: -17, syscall: 'ioctl', ioctl: 'UFFDIO_COPY', bytes: 0 });
      // Copy from a raw address too (the first page, into the second).
      const src = new Uint8Array(mem.buffer, 0, type.unit);
      expect(uffd.copy(mem.address + BigInt(type.unit), src)).to.equal(type.unit);
      expect(Buffer.from(mem.buffer, type.unit, type.unit).equals(data)).to.equal(true);
    });

    it('copy over several pages returns the whole length', function () {
      skipIf(this, unavailable(type, type.missingFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(2);
      uffd.register(mem);
      const data = pattern(2 * type.unit, 3);
      expect(uffd.copy(mem.address, data, 2 * type.unit, { wake: false })).to.equal(2 * type.unit);
      expect(Buffer.from(mem.buffer).equals(data)).to.equal(true);
    });

    it(type.hugetlb ? 'zeropage is EINVAL on hugetlb' : 'zeropage maps zeros, then EEXIST with bytes 0', function () {
      skipIf(this, unavailable(type, type.missingFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(2);
      uffd.register(mem);
      if (type.hugetlb) {
        expect(() => uffd.zeropage(mem.address, type.unit)).to.throw(UffdError).that.includes({ code: 'EINVAL', ioctl: 'UFFDIO_ZEROPAGE' });
        return;
      }
      expect(uffd.zeropage(mem.address, type.unit)).to.equal(type.unit);
      expect(isPresent(mem.address)).to.equal(true);
      expect(Buffer.from(mem.buffer, 0, type.unit).every((b) => b === 0)).to.equal(true);
      expect(() => uffd.zeropage(mem.address, type.unit)).to.throw(UffdError).that.deep.includes({ code: 'EEXIST', bytes: 0 });
    });

    it('writeProtect sets and clears the uffd-wp bit of present pages', function () {
      skipIf(this, unavailable(type, type.wpFeature) ?? uffdWpBitUnavailable());
      using uffd = Userfaultfd.open();
      using mem = type.create(2);
      new Uint8Array(mem.buffer).fill(1); // populate before registering: no fault is raised
      expect(uffd.register(mem, { wp: true })).to.include('WRITEPROTECT');
      uffd.writeProtect(mem, true);
      expect(isUffdWp(mem.address)).to.equal(true);
      expect(isUffdWp(mem.address + BigInt(type.unit))).to.equal(true);
      uffd.writeProtect({ address: mem.address, length: type.unit }, false);
      expect(isUffdWp(mem.address)).to.equal(false);
      expect(isUffdWp(mem.address + BigInt(type.unit))).to.equal(true);
      uffd.writeProtect(mem, false);
      expect(isUffdWp(mem.address + BigInt(type.unit))).to.equal(false);
    });

    it('writeProtect with protection on and wake: false is EINVAL', function () {
      skipIf(this, unavailable(type, type.wpFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(1);
      uffd.register(mem, { wp: true });
      expect(() => uffd.writeProtect(mem, true, { wake: false })).to.throw(UffdError).with.property('code', 'EINVAL');
    });

    it('copy with wp: true maps the page write-protected', function () {
      skipIf(this, unavailable(type, type.missingFeature, type.wpFeature) ?? uffdWpBitUnavailable());
      using uffd = Userfaultfd.open();
      using mem = type.create(1);
      uffd.register(mem, { missing: true, wp: true });
      uffd.copy(mem.address, pattern(type.unit, 1), type.unit, { wp: true });
      expect(isUffdWp(mem.address)).to.equal(true);
    });

    if (type.fileBacked && type.shared) {
      it('continue maps a page-cache page written through an alias, then EEXIST', function () {
        skipIf(this, unavailable(type, type.minorFeature));
        using uffd = Userfaultfd.open();
        using mem = type.create(2);
        using alias = mem.alias();
        const data = pattern(type.unit, 11);
        data.copy(Buffer.from(alias.buffer, 0, type.unit));
        expect(uffd.register(mem, { minor: true })).to.include('CONTINUE');
        expect(uffd.continue(mem.address, type.unit)).to.equal(type.unit);
        expect(Buffer.from(mem.buffer, 0, type.unit).equals(data)).to.equal(true);
        expect(() => uffd.continue(mem.address, type.unit))
          .to.throw(UffdError)
          .that.deep.includes({ code: 'EEXIST', ioctl: 'UFFDIO_CONTINUE', bytes: 0 });
      });

      it('continue where the page cache has no page is EFAULT', function () {
        skipIf(this, unavailable(type, type.minorFeature));
        using uffd = Userfaultfd.open();
        using mem = type.create(2);
        uffd.register(mem, { minor: true });
        expect(() => uffd.continue(mem.address + BigInt(type.unit), type.unit)).to.throw(UffdError).with.property('code', 'EFAULT');
      });
    }

    it('poison makes exactly the poisoned pages raise SIGBUS (in a child)', function () {
      skipIf(this, unavailable(type, type.missingFeature, 'POISON'));
      const script = `
        const type = ARGS.type, unit = ARGS.unit;
        const mem = ${type.hugetlb ? (type.shared ? 'uffd.Mapping.memfd(4 * unit, { hugetlb: true })' : 'uffd.Mapping.hugetlb(4 * unit)') : type.name === 'anon' ? 'uffd.Mapping.anonymous(4 * unit)' : `uffd.Mapping.memfd(4 * unit, { shared: ${type.shared} })`};
        const u = uffd.Userfaultfd.open();
        u.register(mem);
        u.copy(mem.address, Buffer.alloc(unit, 1));
        u.copy(mem.address + BigInt(2 * unit), Buffer.alloc(unit, 3));
        console.log('poisoned', u.poison(mem.address + BigInt(unit), unit), u.poison(mem.address + BigInt(3 * unit), unit));
        const view = new Uint8Array(mem.buffer);
        console.log('read', view[0], view[2 * unit]);
        console.log('touch', ARGS.page);
        console.log(view[ARGS.page * unit]);
        console.log('survived');`;
      for (const page of [1, 3]) {
        const r = runChild(script, { args: { type: type.name, unit: type.unit, page } });
        expect(r.stdout, r.stderr).to.include(`poisoned ${type.unit} ${type.unit}`);
        expect(r.stdout).to.include('read 1 3');
        expect(r.stdout).to.include(`touch ${page}`);
        expect(r.stdout).to.not.include('survived');
        expect(r.signal).to.equal('SIGBUS');
        expect(r.timedOut).to.equal(false);
      }
    });

    it('unregister, then the pages fault normally', function () {
      skipIf(this, unavailable(type, type.missingFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(1);
      uffd.register(mem);
      uffd.unregister(mem);
      new Uint8Array(mem.buffer)[0] = 5; // would wait forever if still registered
      expect(new Uint8Array(mem.buffer)[0]).to.equal(5);
    });
  });
}

describe('wake', () => {
  it('wakes a range with no waiters without error, and validates it', () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(2 * pageSize());
    uffd.register(mem);
    uffd.wake(mem);
    expect(() => uffd.wake({ address: mem.address + 1n, length: pageSize() })).to.throw(RangeError);
  });
});

describe('wp-unpopulated (uffd-unit-tests wp-unpopulated, anon)', () => {
  it('write-protecting an unpopulated page leaves a marker: unprotect clears it, MADV_DONTNEED drops it, a read keeps it', async function () {
    skipIf(this, unavailable(undefined, 'PAGEFAULT_FLAG_WP', 'WP_UNPOPULATED') ?? uffdWpBitUnavailable());
    const page = pageSize();
    using uffd = Userfaultfd.open({ features: ['WP_UNPOPULATED'] });
    using mem = Mapping.anonymous(page, { hugepage: false });
    uffd.register(mem, { wp: true });
    const wpFaults: bigint[] = [];
    uffd.on('pagefault', (ev) => {
      if (ev.flags.wp) wpFaults.push(ev.address);
      uffd.writeProtect({ address: ev.address, length: page }, false); // wakes the writer
    });
    // The marker: protected although nothing is mapped there.
    uffd.writeProtect(mem, true);
    expect(isPresent(mem.address)).to.equal(false);
    expect(isUffdWp(mem.address)).to.equal(true);
    uffd.writeProtect(mem, false);
    expect(isUffdWp(mem.address)).to.equal(false);
    // Zapping the range takes the marker with it: a write then lands without a fault.
    uffd.writeProtect(mem, true);
    mem.madvise('DONTNEED');
    expect(isUffdWp(mem.address)).to.equal(false);
    await testing.touch(mem, { mode: 'write' });
    expect(isUffdWp(mem.address)).to.equal(false);
    expect(wpFaults).to.deep.equal([]);
    // A read of a marked page maps the zero page and keeps the protection: the next write faults.
    mem.madvise('DONTNEED');
    uffd.writeProtect(mem, true);
    await testing.touch(mem, { mode: 'read' });
    expect(wpFaults).to.deep.equal([]);
    expect(isUffdWp(mem.address)).to.equal(true);
    await testing.touch(mem, { mode: 'write' });
    expect(wpFaults).to.deep.equal([mem.address]);
    expect(new BigUint64Array(mem.buffer)[0]).to.equal(1n);
  });
});
