/**
 * UFFDIO_MOVE, what the kernel's move does: the raw ioctl (uffd.move: partial progress as EAGAIN,
 * holes, EEXIST, EINVAL), then, through movePages, the kernel selftests' move, move-pmd and
 * move-pmd-split cases and the error matrix they lack (ENOENT, EEXIST, EBUSY after fork, EINVAL,
 * partial progress).
 *
 * The other MOVE tests: what movePages and movePageList add to the ioctl (the copy fallback,
 * retries, batches, data integrity) in move-pages.test.ts; faults resolved by a move-table
 * policy (moveFrom) in move-policy.test.ts; the compactor built on both in compactor*.test.ts.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { Mapping, MoveError, movePages, testing, UffdError, Userfaultfd } from '../lib/index';
import { isPresent } from './helpers/pagemap';
import { skipIf, unavailable } from './helpers/memtypes';
import { allHuge, area, fillPage, moveSuite, PAGE, pageHolds, sleep, thpUnavailable, type Area } from './helpers/move';
import { hugePageSize, pageSize, thpSize } from '../lib/core/sysinfo';
import { hugetlbUnavailable } from './helpers/hugetlb';
import { pattern } from './helpers/pattern';

describe('move [anon]', () => {
  const page = pageSize();

  it('moves pages into a registered range; the source then reads zeros', function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
    using uffd = Userfaultfd.open();
    using src = Mapping.anonymous(4 * page);
    using dst = Mapping.anonymous(4 * page);
    const data = pattern(4 * page, 5);
    data.copy(Buffer.from(src.buffer));
    uffd.register(dst);
    expect(uffd.move(dst.address, src.address, 4 * page)).to.equal(4 * page);
    expect(Buffer.from(dst.buffer).equals(data)).to.equal(true);
    expect(Buffer.from(src.buffer).every((b) => b === 0)).to.equal(true);
  });

  it('a hole in the source stops the move: partial progress, then ENOENT; allowSrcHoles skips it', function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
    using uffd = Userfaultfd.open();
    using src = Mapping.anonymous(4 * page);
    using dst = Mapping.anonymous(4 * page);
    new Uint8Array(src.buffer, 0, page).fill(9); // page 0 present, pages 1..3 holes
    uffd.register(dst);
    // The page before the hole moves; the kernel reports that as partial progress: EAGAIN with
    // bytes = one page. Continuing from there meets the hole: ENOENT with nothing done.
    expect(() => uffd.move(dst.address, src.address, 4 * page))
      .to.throw(UffdError)
      .that.deep.includes({ code: 'EAGAIN', ioctl: 'UFFDIO_MOVE', bytes: page });
    expect(new Uint8Array(dst.buffer)[0]).to.equal(9);
    expect(() => uffd.move(dst.address + BigInt(page), src.address + BigInt(page), 3 * page))
      .to.throw(UffdError)
      .that.deep.includes({ code: 'ENOENT', errno: -2, bytes: 0 });
    expect(uffd.move(dst.address + BigInt(page), src.address + BigInt(page), 3 * page, { allowSrcHoles: true })).to.equal(3 * page);
  });

  it('a mapped destination is EEXIST', function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
    using uffd = Userfaultfd.open();
    using src = Mapping.anonymous(page);
    using dst = Mapping.anonymous(page);
    new Uint8Array(src.buffer).fill(1);
    uffd.register(dst);
    uffd.zeropage(dst.address, page);
    expect(() => uffd.move(dst.address, src.address, page)).to.throw(UffdError).that.deep.includes({ code: 'EEXIST', bytes: 0 });
  });

  it('a shmem source is EINVAL', function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
    using uffd = Userfaultfd.open();
    using src = Mapping.shared(page);
    using dst = Mapping.anonymous(page);
    new Uint8Array(src.buffer).fill(1);
    uffd.register(dst);
    expect(() => uffd.move(dst.address, src.address, page)).to.throw(UffdError).with.property('code', 'EINVAL');
  });
});

describe('movePages', function () {
  let uffd: Userfaultfd;
  const track = moveSuite((u) => (uffd = u));

  /** A source of `pages` pages, page i holding the pattern of id i; and an empty registered destination. */
  function pair(pages: number, options: { align?: number; hugepage?: boolean } = {}): { src: Area; dst: Area } {
    const src = track(area(pages * PAGE, options));
    const dst = track(area(pages * PAGE, options));
    const bytes = src.bytes();
    for (let i = 0; i < pages; i++) fillPage(bytes, i, i);
    uffd.register({ address: dst.address, length: dst.length }, { missing: true });
    return { src, dst };
  }

  describe('kselftest cases', function () {
    it('move: every page lands at the destination and the source reads zero', function () {
      const { src, dst } = pair(16);
      const report = movePages(uffd, dst.address, src.address, 16 * PAGE);
      expect(report).to.include({ moved: 16 * PAGE, copied: 0, holes: 0, retries: 0, ioctls: 1, atomic: true });
      const bytes = dst.bytes();
      for (let i = 0; i < 16; i++) expect(pageHolds(bytes, i, i), `page ${i}`).to.equal(true);
      expect(src.bytes().every((b) => b === 0)).to.equal(true);
    });

    it('move: faults raised on the destination by native threads are resolved by the move', async function () {
      const pages = 32;
      const { src, dst } = pair(pages);
      let settled = false;
      const touching = testing.touch({ address: dst.address, length: dst.length }, { threads: 2 }).then((r) => {
        settled = true;
        return r;
      });
      await sleep(50);
      expect(settled, 'the touching threads wait for the move').to.equal(false);
      const report = movePages(uffd, dst.address, src.address, pages * PAGE, { allowSrcHoles: true });
      expect(report.moved).to.equal(pages * PAGE);
      const results = await touching;
      // Each page's first word is its index + 1: the threads read exactly what was moved there.
      const sum = results.reduce((n, r) => n + r.sum, 0n);
      expect(sum).to.equal(BigInt((pages * (pages + 1)) / 2));
    });

    it('move, fault-driven as in the kselftest: a JS handler resolves each fault with movePages', async function () {
      const pages = 64;
      const { src, dst } = pair(pages);
      const counts = new Map<bigint, number>();
      uffd.on('pagefault', (ev) => {
        const at = ev.address & ~BigInt(PAGE - 1);
        counts.set(at, (counts.get(at) ?? 0) + 1);
        const r = movePages(uffd, at, src.address + (at - dst.address), PAGE, { allowSrcHoles: true });
        expect(r.moved).to.equal(PAGE);
      });
      const results = await testing.touch({ address: dst.address, length: dst.length }, { threads: 2 });
      expect(counts.size).to.equal(pages);
      expect([...counts.values()].every((n) => n === 1), 'each page faulted once').to.equal(true);
      expect(results.reduce((n, r) => n + r.sum, 0n)).to.equal(BigInt((pages * (pages + 1)) / 2));
      expect(src.bytes().every((b) => b === 0), 'the source reads zero').to.equal(true);
    });

    it('move-pmd, fault-driven: the handler moves 2 MiB per fault, each a whole PMD', async function () {
      skipIf(this, thpUnavailable());
      const pmd = thpSize() as number;
      const { src, dst } = pair((4 * pmd) / PAGE, { align: pmd, hugepage: true });
      skipIf(this, allHuge(src.address, src.length) ? undefined : 'the kernel gave the source no huge pages');
      let faults = 0;
      let huge = 0;
      uffd.on('pagefault', (ev) => {
        faults++;
        const at = ev.address & ~BigInt(pmd - 1);
        huge += movePages(uffd, at, src.address + (at - dst.address), pmd).hugeMoves ?? 0;
      });
      await testing.touch({ address: dst.address, length: dst.length }, { threads: 1, stride: PAGE });
      expect(faults).to.equal(4);
      expect(huge).to.equal(4);
      const bytes = dst.bytes();
      for (let i = 0; i < dst.length / PAGE; i += 97) expect(pageHolds(bytes, i, i), `page ${i}`).to.equal(true);
    });

    it('wake: false moves without waking the waiting thread; wake() then lets it go', async function () {
      const { src, dst } = pair(1);
      let settled = false;
      const touching = testing.touch({ address: dst.address, length: PAGE }).then((r) => {
        settled = true;
        return r;
      });
      await sleep(50);
      expect(movePages(uffd, dst.address, src.address, PAGE, { wake: false }).moved).to.equal(PAGE);
      await sleep(50);
      expect(settled, 'still asleep: DONTWAKE').to.equal(false);
      uffd.wake({ address: dst.address, length: PAGE });
      const [r] = await touching;
      expect(r.sum).to.equal(1n);
    });

    it('move with allowSrcHoles: holes are counted and stay unmapped at the destination', function () {
      const { src, dst } = pair(16);
      const holes = [3, 4, 9];
      for (const h of holes) src.mapping.madvise('DONTNEED', { offset: src.offset + h * PAGE, length: PAGE });
      const report = movePages(uffd, dst.address, src.address, 16 * PAGE, { allowSrcHoles: true });
      expect(report).to.include({ moved: 16 * PAGE, holes: holes.length, atomic: true });
      for (let i = 0; i < 16; i++) {
        const at = dst.address + BigInt(i * PAGE);
        if (holes.includes(i)) {
          // Never touched from this thread: a hole is a registered, unresolved page.
          expect(isPresent(at), `page ${i}`).to.equal(false);
        } else {
          expect(pageHolds(dst.bytes(i * PAGE, PAGE), 0, i), `page ${i}`).to.equal(true);
        }
      }
      // Resolve the holes so that nothing is left waiting.
      for (const h of holes) uffd.zeropage(dst.address + BigInt(h * PAGE), PAGE);
    });

    it('move-pmd: 2 MiB-aligned THP on both sides moves whole PMDs', function () {
      skipIf(this, thpUnavailable());
      const pmd = thpSize() as number;
      const { src, dst } = pair((2 * pmd) / PAGE, { align: pmd, hugepage: true });
      skipIf(this, allHuge(src.address, src.length) ? undefined : 'the kernel gave the source no huge pages (memory fragmented?)');
      const touching = testing.touch({ address: dst.address, length: dst.length }, { threads: 1, stride: pmd });
      // One move per 2 MiB, as the kselftest's fault handler does.
      let huge = 0;
      for (let off = 0; off < src.length; off += pmd) {
        const r = movePages(uffd, dst.address + BigInt(off), src.address + BigInt(off), pmd);
        huge += r.hugeMoves ?? 0;
      }
      expect(huge).to.equal(2);
      expect(allHuge(dst.address, dst.length), 'the destination is PMD-mapped').to.equal(true);
      const bytes = dst.bytes();
      for (let i = 0; i < src.length / PAGE; i++) expect(pageHolds(bytes, i, i), `page ${i}`).to.equal(true);
      return touching;
    });

    it('move-pmd-split: destination MADV_NOHUGEPAGE; data intact, huge moves reported as they happened', function () {
      skipIf(this, thpUnavailable());
      const pmd = thpSize() as number;
      const { src, dst } = pair((2 * pmd) / PAGE, { align: pmd, hugepage: true });
      skipIf(this, allHuge(src.address, src.length) ? undefined : 'the kernel gave the source no huge pages');
      dst.mapping.madvise('NOHUGEPAGE');
      const report = movePages(uffd, dst.address, src.address, src.length);
      expect(report.moved).to.equal(src.length);
      // Linux 6.18 moves the PMD whole even into a NOHUGEPAGE destination (the PMD move does not
      // look at the destination's THP advice); the report must say what the page tables show.
      expect(report.hugeMoves).to.equal(allHuge(dst.address, dst.length) ? 2 : 0);
      const bytes = dst.bytes();
      for (let i = 0; i < src.length / PAGE; i++) expect(pageHolds(bytes, i, i), `page ${i}`).to.equal(true);
    });

    it('move-pmd-split: a destination one page off alignment splits the huge page', function () {
      skipIf(this, thpUnavailable());
      const pmd = thpSize() as number;
      const src = track(area(pmd, { align: pmd, hugepage: true }));
      const bytes = src.bytes();
      for (let i = 0; i < pmd / PAGE; i++) fillPage(bytes, i, i);
      skipIf(this, allHuge(src.address, src.length) ? undefined : 'the kernel gave the source no huge pages');
      const dst = track(area(pmd + PAGE, { align: pmd, hugepage: true }));
      uffd.register({ address: dst.address, length: dst.length });
      const report = movePages(uffd, dst.address + BigInt(PAGE), src.address, pmd);
      expect(report).to.include({ moved: pmd, hugeMoves: 0, atomic: true });
      const out = dst.bytes(PAGE, pmd);
      for (let i = 0; i < pmd / PAGE; i++) expect(pageHolds(out, i, i), `page ${i}`).to.equal(true);
      uffd.zeropage(dst.address, PAGE);
    });
  });

  describe('error matrix', function () {
    it('ENOENT: a source hole without allowSrcHoles, at the exact offset', function () {
      const { src, dst } = pair(8);
      src.mapping.madvise('DONTNEED', { offset: src.offset + 5 * PAGE, length: PAGE });
      const err = catchMove(() => movePages(uffd, dst.address, src.address, 8 * PAGE));
      expect(err).to.include({ code: 'ENOENT', syscall: 'ioctl', ioctl: 'UFFDIO_MOVE', offset: 5 * PAGE, bytes: 5 * PAGE, index: 0 });
      expect(err.errno).to.equal(-2);
      expect(err.dst).to.equal(dst.address + BigInt(5 * PAGE));
      expect(err.src).to.equal(src.address + BigInt(5 * PAGE));
      expect(err.report).to.include({ moved: 5 * PAGE, ioctls: 2, atomic: true });
      expect(err).to.be.instanceOf(UffdError);
      // The five pages before the hole did move.
      for (let i = 0; i < 5; i++) expect(pageHolds(dst.bytes(i * PAGE, PAGE), 0, i)).to.equal(true);
      uffd.zeropage(dst.address + BigInt(5 * PAGE), 3 * PAGE);
    });

    it('EEXIST: a mapped destination page, with the partial progress before it exact', function () {
      const { src, dst } = pair(8);
      uffd.zeropage(dst.address + BigInt(6 * PAGE), PAGE);
      // The raw ioctl: EAGAIN with the progress made; the cause comes on the next call.
      let raw: UffdError | undefined;
      try {
        uffd.move(dst.address, src.address, 8 * PAGE);
      } catch (e) {
        raw = e as UffdError;
      }
      expect(raw).to.include({ code: 'EAGAIN', bytes: 6 * PAGE });
      uffd.zeropage(dst.address + BigInt(7 * PAGE), PAGE);
      const err = catchMove(() => movePages(uffd, dst.address + BigInt(6 * PAGE), src.address + BigInt(6 * PAGE), 2 * PAGE));
      expect(err).to.include({ code: 'EEXIST', offset: 0, bytes: 0 });
      expect(err.report.ioctls).to.equal(1);
    });

    it('EEXIST through movePages: continues after the partial progress and stops at the mapped page', function () {
      const { src, dst } = pair(8);
      uffd.zeropage(dst.address + BigInt(3 * PAGE), PAGE);
      const err = catchMove(() => movePages(uffd, dst.address, src.address, 8 * PAGE));
      expect(err).to.include({ code: 'EEXIST', offset: 3 * PAGE, bytes: 3 * PAGE });
      expect(err.report).to.include({ moved: 3 * PAGE, ioctls: 2 });
      uffd.zeropage(dst.address + BigInt(4 * PAGE), 4 * PAGE);
    });

    it('EBUSY: the source page is shared copy-on-write with a forked child', function () {
      const { src, dst } = pair(4);
      const pid = testing.forkHold(10000);
      try {
        const err = catchMove(() => movePages(uffd, dst.address, src.address, 4 * PAGE));
        expect(err).to.include({ code: 'EBUSY', offset: 0 });
      } finally {
        testing.reapChild(pid);
      }
      uffd.zeropage(dst.address, 4 * PAGE);
    });

    it('EBUSY stays after the child exits until this process writes the page (the page is no longer marked exclusive)', function () {
      const { src, dst } = pair(2);
      testing.reapChild(testing.forkHold(10000));
      expect(catchMove(() => movePages(uffd, dst.address, src.address, PAGE)).code).to.equal('EBUSY');
      // A write takes the page back as exclusive (reuse without a copy, the child being gone).
      src.bytes(0, 1)[0] = 0;
      fillPage(src.bytes(), 0, 0);
      expect(movePages(uffd, dst.address, src.address, PAGE).moved).to.equal(PAGE);
      uffd.zeropage(dst.address + BigInt(PAGE), PAGE);
    });

    it('EBUSY after child_process.spawnSync too (libuv forks), unless the source is MADV_DONTFORK', function () {
      const { src, dst } = pair(2);
      spawnSync('true');
      const err = catchMove(() => movePages(uffd, dst.address, src.address, PAGE));
      expect(err.code).to.equal('EBUSY');
      expect(err.message).to.include('DONTFORK');
      const other = track(area(PAGE));
      fillPage(other.bytes(), 0, 1);
      other.mapping.madvise('DONTFORK');
      spawnSync('true');
      expect(movePages(uffd, dst.address + BigInt(PAGE), other.address, PAGE).moved).to.equal(PAGE);
    });

    it('MADV_DONTFORK on the source avoids the EBUSY', function () {
      const { src, dst } = pair(4);
      src.mapping.madvise('DONTFORK');
      const pid = testing.forkHold(10000);
      try {
        expect(movePages(uffd, dst.address, src.address, 4 * PAGE).moved).to.equal(4 * PAGE);
      } finally {
        testing.reapChild(pid);
      }
    });

    it('EINVAL: a shmem source', function () {
      const src = track(Mapping.memfd(4 * PAGE, { name: 'move-shmem' }));
      const dst = track(area(4 * PAGE));
      uffd.register({ address: dst.address, length: dst.length });
      src.bytes().fill(7);
      const err = catchMove(() => movePages(uffd, dst.address, src.address, 4 * PAGE));
      expect(err).to.include({ code: 'EINVAL', offset: 0, bytes: 0 });
      uffd.zeropage(dst.address, 4 * PAGE);
    });

    it('EINVAL: a shmem destination', function () {
      const src = track(area(4 * PAGE));
      src.bytes().fill(7);
      const dst = track(Mapping.shared(4 * PAGE));
      uffd.register(dst);
      expect(catchMove(() => movePages(uffd, dst.address, src.address, 4 * PAGE)).code).to.equal('EINVAL');
      uffd.zeropage(dst.address, 4 * PAGE);
    });

    it('EINVAL: a hugetlb source; the copy fallback moves it', function () {
      skipIf(this, hugetlbUnavailable(1));
      const huge = hugePageSize();
      const src = track(Mapping.hugetlb(huge));
      src.bytes().fill(0x33);
      const dst = track(area(huge));
      uffd.register({ address: dst.address, length: dst.length });
      expect(catchMove(() => movePages(uffd, dst.address, src.address, huge)).code).to.equal('EINVAL');
      const report = movePages(uffd, dst.address, src.address, huge, { fallback: 'copy' });
      expect(report).to.include({ moved: huge, copied: huge, atomic: false, fallbackReason: 'EINVAL' });
      expect(dst.bytes().every((b) => b === 0x33)).to.equal(true);
    });

    it('EINVAL: unequal protections on the two sides', function () {
      const { src, dst } = pair(4);
      dst.mapping.mprotect('r', { offset: dst.offset, length: dst.length });
      expect(catchMove(() => movePages(uffd, dst.address, src.address, 4 * PAGE)).code).to.equal('EINVAL');
    });

    it('EINVAL: a destination not registered with this userfaultfd', function () {
      const src = track(area(2 * PAGE));
      src.bytes().fill(1);
      const dst = track(area(2 * PAGE));
      expect(catchMove(() => movePages(uffd, dst.address, src.address, 2 * PAGE)).code).to.equal('EINVAL');
    });

    it('bad arguments throw TypeError / RangeError and never reach the kernel', function () {
      const { src, dst } = pair(1);
      expect(() => movePages(uffd, dst.address + 1n, src.address, PAGE)).to.throw(RangeError);
      expect(() => movePages(uffd, dst.address, src.address, 0)).to.throw(RangeError);
      expect(() => movePages(uffd, dst.address, src.address, PAGE + 1)).to.throw(RangeError);
      expect(() => movePages(uffd, -1, src.address, PAGE)).to.throw(RangeError);
      expect(() => movePages(uffd, 'x' as unknown as bigint, src.address, PAGE)).to.throw(TypeError);
      expect(() => movePages({} as Userfaultfd, dst.address, src.address, PAGE)).to.throw(TypeError);
      expect(() => movePages(uffd, dst.address, src.address, PAGE, { fallback: 'mremap' as 'copy' })).to.throw(TypeError);
      expect(() => movePages(uffd, dst.address, src.address, PAGE, { retry: { attempts: -1 } })).to.throw(RangeError);
      expect(() => movePages(uffd, dst.address, src.address, PAGE, { wake: 1 as unknown as boolean })).to.throw(TypeError);
      expect(() => movePages(uffd, (1n << 64n) - BigInt(PAGE), src.address, 2 * PAGE)).to.throw(RangeError);
      uffd.close();
      expect(() => movePages(uffd, dst.address, src.address, PAGE)).to.throw().with.property('code', 'ERR_UFFD_CLOSED');
    });
  });
});

function catchMove(fn: () => unknown): MoveError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(MoveError);
    return err as MoveError;
  }
  throw new Error('expected a MoveError');
}
