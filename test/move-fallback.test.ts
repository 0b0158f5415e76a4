/**
 * The opt-in copy fallback (UFFDIO_COPY + MADV_DONTNEED): same bytes at the destination, a report
 * that admits it was not atomic, and never taken unless asked for.
 */
import { expect } from 'chai';
import { Mapping, MoveError, movePages, testing, Userfaultfd } from '../lib/index';
import { area, fillPage, moveSuite, PAGE, pageHolds, sha, type Area } from './helpers/move';

describe('movePages fallback: copy', function () {
  let uffd: Userfaultfd;
  const track = moveSuite((u) => (uffd = u));

  function dstArea(pages: number): Area {
    const dst = track(area(pages * PAGE));
    uffd.register({ address: dst.address, length: dst.length });
    return dst;
  }

  it('shmem source (EINVAL for MOVE): identical data, atomic: false, the reason given', function () {
    const src = track(Mapping.memfd(8 * PAGE, { name: 'fallback-src' }));
    for (let i = 0; i < 8; i++) fillPage(src.bytes(), i, i);
    const before = sha(src.bytes());
    const dst = dstArea(8);
    const report = movePages(uffd, dst.address, src.address, 8 * PAGE, { fallback: 'copy' });
    expect(report).to.include({ moved: 8 * PAGE, copied: 8 * PAGE, atomic: false, fallbackReason: 'EINVAL' });
    expect(sha(dst.bytes())).to.equal(before);
  });

  it('EBUSY on a page shared with a forked child: identical data, the source reads zero', function () {
    const src = track(area(8 * PAGE));
    for (let i = 0; i < 8; i++) fillPage(src.bytes(), i, i);
    const before = sha(src.bytes());
    const dst = dstArea(8);
    const pid = testing.forkHold(10000);
    try {
      const report = movePages(uffd, dst.address, src.address, 8 * PAGE, { fallback: 'copy' });
      expect(report).to.include({ moved: 8 * PAGE, copied: 8 * PAGE, atomic: false, fallbackReason: 'EBUSY' });
    } finally {
      testing.reapChild(pid);
    }
    expect(sha(dst.bytes())).to.equal(before);
    expect(src.bytes().every((b) => b === 0)).to.equal(true);
  });

  it('MOVE first, copy only for the rest: partial MOVE progress then the fallback', function () {
    const src = track(area(8 * PAGE));
    for (let i = 0; i < 8; i++) fillPage(src.bytes(), i, i);
    const dst = dstArea(8);
    // Pages 0-3 movable; the fork makes every page shared, so write 0-3 again to own them.
    const pid = testing.forkHold(10000);
    try {
      for (let i = 0; i < 4; i++) fillPage(src.bytes(), i, i);
      const report = movePages(uffd, dst.address, src.address, 8 * PAGE, { fallback: 'copy' });
      expect(report).to.include({ moved: 8 * PAGE, copied: 4 * PAGE, atomic: false, fallbackReason: 'EBUSY' });
    } finally {
      testing.reapChild(pid);
    }
    for (let i = 0; i < 8; i++) expect(pageHolds(dst.bytes(), i, i), `page ${i}`).to.equal(true);
  });

  it('only the EBUSY pages are copied: MOVE resumes right after each one', function () {
    const src = track(area(8 * PAGE));
    for (let i = 0; i < 8; i++) fillPage(src.bytes(), i, i);
    const dst = dstArea(8);
    const pid = testing.forkHold(10000);
    try {
      // Writing takes a page back as this process's own; pages 2 and 3 stay shared.
      for (const i of [0, 1, 4, 5, 6, 7]) fillPage(src.bytes(), i, i);
      const report = movePages(uffd, dst.address, src.address, 8 * PAGE, { fallback: 'copy' });
      expect(report).to.include({ moved: 8 * PAGE, copied: 2 * PAGE, atomic: false, fallbackReason: 'EBUSY' });
    } finally {
      testing.reapChild(pid);
    }
    for (let i = 0; i < 8; i++) expect(pageHolds(dst.bytes(), i, i), `page ${i}`).to.equal(true);
  });

  it('holes: skipped with allowSrcHoles (destination stays unmapped), ENOENT at the hole without', function () {
    const src = track(Mapping.memfd(4 * PAGE, { name: 'fallback-holes', shared: false }));
    // A private file mapping never written reads the file (zeros) but has no page: a hole.
    fillPage(src.bytes(), 0, 0);
    fillPage(src.bytes(), 2, 2);
    const dst = dstArea(4);
    const report = movePages(uffd, dst.address, src.address, 4 * PAGE, { fallback: 'copy', allowSrcHoles: true });
    expect(report).to.include({ moved: 4 * PAGE, copied: 2 * PAGE, holes: 2, atomic: false });
    expect(pageHolds(dst.bytes(0, PAGE), 0, 0)).to.equal(true);
    expect(pageHolds(dst.bytes(2 * PAGE, PAGE), 0, 2)).to.equal(true);
    uffd.zeropage(dst.address + BigInt(PAGE), PAGE);
    uffd.zeropage(dst.address + BigInt(3 * PAGE), PAGE);

    const src2 = track(Mapping.memfd(4 * PAGE, { name: 'fallback-holes2', shared: false }));
    fillPage(src2.bytes(), 0, 0);
    const dst2 = dstArea(4);
    let err: MoveError | undefined;
    try {
      movePages(uffd, dst2.address, src2.address, 4 * PAGE, { fallback: 'copy' });
    } catch (e) {
      err = e as MoveError;
    }
    expect(err).to.be.instanceOf(MoveError);
    expect(err).to.include({ code: 'ENOENT', offset: PAGE, bytes: PAGE });
    expect(err?.report.atomic).to.equal(false);
  });

  it('EEXIST is not a reason to fall back: it is thrown, with the copy-free report', function () {
    const src = track(area(2 * PAGE));
    src.bytes().fill(1);
    const dst = dstArea(2);
    uffd.zeropage(dst.address, PAGE);
    let err: MoveError | undefined;
    try {
      movePages(uffd, dst.address, src.address, 2 * PAGE, { fallback: 'copy' });
    } catch (e) {
      err = e as MoveError;
    }
    expect(err).to.include({ code: 'EEXIST', offset: 0 });
    expect(err?.report).to.include({ copied: 0, atomic: true });
  });

  it('never silent: without fallback the EBUSY is thrown', function () {
    const src = track(area(PAGE));
    src.bytes().fill(1);
    const dst = dstArea(1);
    const pid = testing.forkHold(10000);
    try {
      expect(() => movePages(uffd, dst.address, src.address, PAGE)).to.throw(MoveError).with.property('code', 'EBUSY');
    } finally {
      testing.reapChild(pid);
    }
  });
});
