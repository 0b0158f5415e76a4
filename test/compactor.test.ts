/**
 * The compactor: live pages of a from-space laid out densely in a registered to-space, with the
 * forwarding table and the counters.
 */
import { expect } from 'chai';
import { compact, ForwardingTable, Mapping, MoveError, Userfaultfd } from '../lib/index';
import { fillPage, moveSuite, PAGE, pageHolds } from './helpers/move';
import { isPresent } from './helpers/pagemap';

describe('compact (stop-the-world)', function () {
  let uffd: Userfaultfd;
  const map = moveSuite((u) => (uffd = u));

  function spaces(fromPages: number, toPages: number): { from: Mapping; to: Mapping } {
    const from = map(Mapping.anonymous(fromPages * PAGE));
    for (let i = 0; i < fromPages; i++) fillPage(from.bytes(), i, i);
    const to = map(Mapping.anonymous(toPages * PAGE));
    uffd.register(to, { missing: true });
    return { from, to };
  }

  it('lays live pages out densely in from-space order and forwards each one', function () {
    const { from, to } = spaces(64, 64);
    // Pages, byte ranges, an overlap and a duplicate: merged into runs [2], [5..8), [20..24), [40].
    const live = [40, 2, { offset: 5 * PAGE, length: 3 * PAGE }, 6, { offset: 20 * PAGE, length: 4 * PAGE }, 21];
    const c = compact(uffd, from, to, live);
    expect(c).to.include({ pagesMoved: 9, holes: 0, faultsServed: 0, hugeMoves: 0, moves: 4, bytes: 9 * PAGE });
    expect(c.report).to.include({ moved: 9 * PAGE, atomic: true, ioctls: 4 });
    expect(c.forwarding.size).to.equal(9);
    expect([...c.forwarding.entries()]).to.deep.equal([
      [2, 0],
      [5, 1],
      [6, 2],
      [7, 3],
      [20, 4],
      [21, 5],
      [22, 6],
      [23, 7],
      [40, 8],
    ]);
    for (const [oldPage, newPage] of c.forwarding.entries()) {
      expect(pageHolds(to.bytes(), newPage, oldPage), `old ${oldPage} -> new ${newPage}`).to.equal(true);
      expect(from.bytes({ offset: oldPage * PAGE, length: PAGE }).every((b) => b === 0), `old ${oldPage} emptied`).to.equal(true);
    }
    // The dead pages stayed where they were.
    expect(pageHolds(from.bytes(), 3, 3)).to.equal(true);
    // The rest of the to-space is untouched (registered and unmapped: checked without touching).
    expect(isPresent(to.address + BigInt(9 * PAGE))).to.equal(false);
  });

  it('forwarding table lookups: page, offset, address; undefined for dead pages', function () {
    const { from, to } = spaces(16, 16);
    const c = compact(uffd, from, to, [3, 4, 10], { toOffset: 2 * PAGE });
    const f: ForwardingTable = c.forwarding;
    expect(f.runs).to.deep.equal([
      { from: 3, to: 2, pages: 2 },
      { from: 10, to: 4, pages: 1 },
    ]);
    expect(f.page(4)).to.equal(3);
    expect(f.page(5)).to.equal(undefined);
    expect(f.offset(10 * PAGE + 17)).to.equal(4 * PAGE + 17);
    expect(f.address(from.address + BigInt(3 * PAGE + 8))).to.equal(to.address + BigInt(2 * PAGE + 8));
    expect(f.address(from.address - 1n)).to.equal(undefined);
    expect(f.address(from.address + BigInt(PAGE))).to.equal(undefined);
    expect(pageHolds(to.bytes(), 4, 10)).to.equal(true);
  });

  it('a live page never touched is a hole: counted, and left unmapped in the to-space', function () {
    const from = map(Mapping.anonymous(8 * PAGE));
    fillPage(from.bytes(), 0, 0);
    fillPage(from.bytes(), 2, 2);
    const to = map(Mapping.anonymous(8 * PAGE));
    uffd.register(to);
    const c = compact(uffd, from, to, [{ offset: 0, length: 3 * PAGE }]);
    expect(c).to.include({ pagesMoved: 2, holes: 1, moves: 1 });
    expect(isPresent(to.address + BigInt(PAGE))).to.equal(false);
    expect(pageHolds(to.bytes(), 2, 2)).to.equal(true);
    expect(() => compact(uffd, from, map(registered(8)), [5], { allowSrcHoles: false }))
      .to.throw(MoveError)
      .with.property('code', 'ENOENT');
  });

  function registered(pages: number): Mapping {
    const m = Mapping.anonymous(pages * PAGE);
    uffd.register(m);
    return m;
  }

  it('refuses a layout that does not fit, or bad live entries, before moving anything', function () {
    const { from, to } = spaces(8, 2);
    expect(() => compact(uffd, from, to, [0, 1, 2])).to.throw(RangeError);
    expect(() => compact(uffd, from, to, [8])).to.throw(RangeError);
    expect(() => compact(uffd, from, to, [-1])).to.throw(RangeError);
    expect(() => compact(uffd, from, to, [{ offset: 1, length: PAGE }])).to.throw(RangeError);
    expect(() => compact(uffd, from, to, ['0' as unknown as number])).to.throw(TypeError);
    expect(() => compact(uffd, from, to, 3 as unknown as number[])).to.throw(TypeError);
    expect(() => compact(uffd, from, to, [0], { toOffset: 1 })).to.throw(RangeError);
    expect(() => compact(uffd, from, to, [0], { mode: 'lazy' as 'concurrent' })).to.throw(TypeError);
    expect(pageHolds(from.bytes(), 0, 0), 'nothing moved').to.equal(true);
  });

  it('a shmem from-space compacts with fallback: copy, and says it was not atomic', function () {
    const from = map(Mapping.memfd(8 * PAGE, { name: 'compact-shmem' }));
    for (let i = 0; i < 8; i++) fillPage(from.bytes(), i, i);
    const to = map(registered(8));
    expect(() => compact(uffd, from, to, [1])).to.throw(MoveError).with.property('code', 'EINVAL');
    const c = compact(uffd, from, to, [1, 4, 5], { fallback: 'copy' });
    expect(c.pagesMoved).to.equal(3);
    expect(c.report).to.include({ atomic: false, fallbackReason: 'EINVAL', copied: 3 * PAGE });
    for (const [o, n] of c.forwarding.entries()) expect(pageHolds(to.bytes(), n, o)).to.equal(true);
  });

  it('an empty live set moves nothing', function () {
    const { from, to } = spaces(2, 2);
    const c = compact(uffd, from, to, []);
    expect(c).to.include({ pagesMoved: 0, moves: 0, bytes: 0 });
    expect(c.forwarding.size).to.equal(0);
  });
});
