/**
 * Data integrity: thousands of random moves between two areas, every page's bytes checked
 * against a model of where each page should be; and movePageList's batches and its errors.
 */
import { expect } from 'chai';
import { movePageList, movePages, MoveError, Userfaultfd } from '../lib/index';
import { populatedRuns } from '../lib/memory/move-scan';
import { skipIf, unavailable } from './helpers/memtypes';
import { area, fillPage, openMoveUffd, PAGE, pageHolds, sha, type Area } from './helpers/move';

/** A small deterministic generator, so a failure can be replayed. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

describe('move data integrity', function () {
  let uffd: Userfaultfd;
  const areas: Area[] = [];

  before(function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
  });
  beforeEach(function () {
    uffd = openMoveUffd();
  });
  afterEach(function () {
    uffd?.close();
    for (const a of areas.splice(0)) a.mapping.unmap();
  });

  it('5000 random single-page and batched moves between two areas keep every page intact', function () {
    const N = 256;
    const a = area(N * PAGE);
    const b = area(N * PAGE);
    areas.push(a, b);
    for (let i = 0; i < N; i++) fillPage(a.bytes(), i, i);
    const checksumBefore = sha(a.bytes());
    uffd.register({ address: a.address, length: a.length });
    uffd.register({ address: b.address, length: b.length });
    const slots: number[] = [];
    for (let i = 0; i < 2 * N; i++) slots.push(i < N ? i : -1);
    const addr = (slot: number): bigint => (slot < N ? a.address : b.address) + BigInt((slot % N) * PAGE);
    const next = rng(0x5eed);
    const pick = (full: boolean, taken: Set<number>): number => {
      for (;;) {
        const s = next(2 * N);
        if (slots[s] >= 0 === full && !taken.has(s)) return s;
      }
    };
    let moves = 0;
    while (moves < 5000) {
      const batch = 1 + next(8);
      const taken = new Set<number>();
      const list: { dst: bigint; src: bigint; length: number }[] = [];
      const pairs: [number, number][] = [];
      for (let k = 0; k < batch; k++) {
        const s = pick(true, taken);
        taken.add(s);
        const d = pick(false, taken);
        taken.add(d);
        list.push({ dst: addr(d), src: addr(s), length: PAGE });
        pairs.push([s, d]);
      }
      const report = batch === 1 ? movePages(uffd, list[0].dst, list[0].src, PAGE) : movePageList(uffd, list);
      expect(report.moved).to.equal(batch * PAGE);
      for (const [s, d] of pairs) {
        slots[d] = slots[s];
        slots[s] = -1;
      }
      moves += batch;
    }
    // Where the model says a page is, its bytes are; where it says none is, nothing is mapped.
    const present = new Set<number>();
    for (const [base, first] of [
      [a.address, 0],
      [b.address, N],
    ] as const) {
      for (const r of populatedRuns(base, N * PAGE)) {
        for (let p = r.start; p < r.end; p += BigInt(PAGE)) present.add(first + Number((p - base) / BigInt(PAGE)));
      }
    }
    const gathered = new Uint8Array(N * PAGE);
    for (let s = 0; s < 2 * N; s++) {
      expect(present.has(s), `slot ${s}`).to.equal(slots[s] >= 0);
      if (slots[s] < 0) continue;
      const bytes = (s < N ? a : b).bytes((s % N) * PAGE, PAGE);
      expect(pageHolds(bytes, 0, slots[s]), `slot ${s} holds page ${slots[s]}`).to.equal(true);
      gathered.set(bytes, slots[s] * PAGE);
    }
    expect(sha(gathered)).to.equal(checksumBefore);
  });

  it('in two Workers at once: each moves its own pages back and forth, every page intact', async function () {
    const { Worker } = await import('node:worker_threads');
    const pkg = require.resolve('../lib/index');
    const code = `
      const { parentPort } = require('node:worker_threads');
      const u = require(${JSON.stringify(pkg)});
      const page = u.pageSize();
      const uffd = u.Userfaultfd.open({ features: ['MOVE'] });
      const a = u.Mapping.anonymous(64 * page);
      const b = u.Mapping.anonymous(64 * page);
      a.madvise('DONTFORK');
      b.madvise('DONTFORK');
      for (let i = 0; i < 64; i++) new DataView(a.buffer).setUint32(i * page, i + 1, true);
      uffd.register(a);
      uffd.register(b);
      let moves = 0;
      for (let round = 0; round < 20; round++) {
        const [from, to] = round % 2 === 0 ? [a, b] : [b, a];
        for (let i = 0; i < 64; i++) u.movePages(uffd, to.address + BigInt(i * page), from.address + BigInt(i * page), page);
        moves += 64;
      }
      let ok = true;
      for (let i = 0; i < 64; i++) ok = ok && new DataView(a.buffer).getUint32(i * page, true) === i + 1;
      uffd.close();
      parentPort.postMessage({ moves, ok });`;
    const run = (): Promise<{ moves: number; ok: boolean }> =>
      new Promise((resolve, reject) => {
        const w = new Worker(code, { eval: true });
        w.once('message', resolve);
        w.once('error', reject);
      });
    const results = await Promise.all([run(), run()]);
    expect(results).to.deep.equal([
      { moves: 1280, ok: true },
      { moves: 1280, ok: true },
    ]);
  });

  describe('movePageList', function () {
    it('moves a list given as specs or as a BigUint64Array in one call', function () {
      const src = area(8 * PAGE);
      const dst = area(8 * PAGE);
      areas.push(src, dst);
      for (let i = 0; i < 8; i++) fillPage(src.bytes(), i, i);
      uffd.register({ address: dst.address, length: dst.length });
      // Reverse the page order: page i goes to slot 7 - i.
      const ops = new BigUint64Array(8 * 3);
      for (let i = 0; i < 8; i++) {
        ops[i * 3] = dst.address + BigInt((7 - i) * PAGE);
        ops[i * 3 + 1] = src.address + BigInt(i * PAGE);
        ops[i * 3 + 2] = BigInt(PAGE);
      }
      const report = movePageList(uffd, ops);
      expect(report).to.include({ moved: 8 * PAGE, ioctls: 8, atomic: true, holes: undefined });
      for (let i = 0; i < 8; i++) expect(pageHolds(dst.bytes(), 7 - i, i)).to.equal(true);
      expect(movePageList(uffd, [])).to.include({ moved: 0, ioctls: 0 });
    });

    it('stops at the failing entry with its index and offset; entries before it moved', function () {
      const src = area(6 * PAGE);
      const dst = area(6 * PAGE);
      areas.push(src, dst);
      for (let i = 0; i < 6; i++) fillPage(src.bytes(), i, i);
      uffd.register({ address: dst.address, length: dst.length });
      uffd.zeropage(dst.address + BigInt(3 * PAGE), PAGE);
      const list = [
        { dst: dst.address, src: src.address, length: 2 * PAGE },
        { dst: dst.address + BigInt(2 * PAGE), src: src.address + BigInt(2 * PAGE), length: 4 * PAGE },
      ];
      let err: MoveError | undefined;
      try {
        movePageList(uffd, list, { scan: true });
      } catch (e) {
        err = e as MoveError;
      }
      expect(err).to.be.instanceOf(MoveError);
      expect(err).to.include({ code: 'EEXIST', index: 1, offset: PAGE, bytes: 3 * PAGE });
      expect(err?.dst).to.equal(dst.address + BigInt(3 * PAGE));
      expect(err?.report.ioctls).to.equal(3);
      for (let i = 0; i < 3; i++) expect(pageHolds(dst.bytes(), i, i)).to.equal(true);
    });

    it('validates every entry before moving any', function () {
      const src = area(2 * PAGE);
      const dst = area(2 * PAGE);
      areas.push(src, dst);
      fillPage(src.bytes(), 0, 0);
      fillPage(src.bytes(), 1, 1);
      uffd.register({ address: dst.address, length: dst.length });
      const bad = [
        { dst: dst.address, src: src.address, length: PAGE },
        { dst: dst.address + BigInt(PAGE) + 1n, src: src.address, length: PAGE },
      ];
      expect(() => movePageList(uffd, bad)).to.throw(RangeError);
      expect(pageHolds(src.bytes(), 0, 0), 'nothing moved').to.equal(true);
      expect(() => movePageList(uffd, new BigUint64Array(4))).to.throw(RangeError);
      expect(() => movePageList(uffd, new BigUint64Array(3))).to.throw(RangeError);
      const triples = new BigUint64Array([dst.address, src.address, BigInt(PAGE), dst.address + BigInt(PAGE), src.address + 1n, BigInt(PAGE)]);
      expect(() => movePageList(uffd, triples)).to.throw(RangeError, /move 1: /);
      expect(pageHolds(src.bytes(), 0, 0), 'still nothing moved').to.equal(true);
      expect(() => movePageList(uffd, 'x' as unknown as [])).to.throw(TypeError);
      expect(() => movePageList(uffd, [null as unknown as { dst: bigint; src: bigint; length: number }])).to.throw(TypeError);
    });
  });
});
