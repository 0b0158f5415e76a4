/**
 * movePages and movePageList, the drivers over UFFDIO_MOVE (lib/move.ts): what they add to the
 * ioctl, whose own behaviour is in move.test.ts. Data integrity over thousands of moves, and
 * movePageList's batches; the opt-in copy fallback; the bounded retry of the mmap_changing
 * EAGAIN; and the addon's own checks on the entry points behind them. Each part says why below.
 */
import { expect } from 'chai';
import * as path from 'node:path';
import { native, type NativeUffd } from '../lib/core/binding';
import { Mapping, movePageList, movePages, MoveError, testing, Userfaultfd } from '../lib/index';
import { populatedRuns } from '../lib/memory/move-scan';
import { runChild } from './helpers/child';
import { skipIf, unavailable } from './helpers/memtypes';
import { area, fillPage, moveSuite, openMoveUffd, PAGE, pageHolds, sha, type Area } from './helpers/move';

/**
 * Data integrity: thousands of random moves between two areas, every page's bytes checked
 * against a model of where each page should be; and movePageList's batches and its errors.
 */

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

/**
 * The opt-in copy fallback (UFFDIO_COPY + MADV_DONTNEED): same bytes at the destination, a report
 * that admits it was not atomic, and never taken unless asked for.
 */
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

/**
 * The mmap_changing EAGAIN: while a non-cooperative event (here REMOVE) is unread, every MOVE
 * fails with EAGAIN and moves nothing. movePages waits and retries a bounded number of times,
 * then reports it; once the event is read the move goes through. Runs in a child process: the
 * thread that raised the event sleeps until it is read.
 */

const BINDING = path.resolve(__dirname, '..', 'lib', 'core', 'binding.js');

const SCRIPT = `
const { Worker } = require('node:worker_threads');
const fs = require('node:fs');
const u = uffd.Userfaultfd.open({ features: ['MOVE', 'EVENT_REMOVE'] });
const page = uffd.pageSize();
const src = uffd.Mapping.anonymous(4 * page);
src.bytes().fill(9);
const dst = uffd.Mapping.anonymous(4 * page);
const victim = uffd.Mapping.anonymous(page);
victim.bytes()[0] = 1;
u.register(dst);
u.register(victim);
// A worker zaps the registered victim page: the REMOVE event holds it until someone reads it.
const w = new Worker(
  'const { native } = require(' + JSON.stringify(ARGS.binding) + ');' +
  'const { workerData, parentPort } = require("node:worker_threads");' +
  'native.madviseRange(BigInt(workerData.address), workerData.length, 4);' +
  'parentPort.postMessage("zapped");',
  { eval: true, workerData: { address: String(victim.address), length: page } });
const out = { page };
// Wait until the REMOVE event is pending (a Worker takes its time to start, more so under
// emulation), without reading it.
const { native } = require(ARGS.binding);
const whenPending = (run) => (native.testHooks.waitReadable(u.native, 0) ? run() : setTimeout(() => whenPending(run), 5));
whenPending(() => {
  try { u.move(dst.address, src.address, page); } catch (e) { out.raw = { code: e.code, bytes: e.bytes }; }
  const t0 = Date.now();
  try {
    uffd.movePages(u, dst.address, src.address, 4 * page, { retry: { attempts: 3, delayMs: 5 } });
  } catch (e) {
    out.exhausted = { name: e.name, code: e.code, bytes: e.bytes, offset: e.offset, retries: e.report.retries, ioctls: e.report.ioctls };
  }
  out.waitedMs = Date.now() - t0;
  const msg = Buffer.alloc(32);
  out.eventBytes = fs.readSync(u.fd, msg, 0, 32, null);
  out.eventType = msg[0];
  w.once('message', () => {
    const r = uffd.movePages(u, dst.address, src.address, 4 * page);
    out.after = { moved: r.moved, retries: r.retries };
    out.data = Array.from(dst.bytes()).every((b) => b === 9);
    console.log(JSON.stringify(out));
    process.exit(0);
  });
});
`;

describe('movePages: the mmap_changing EAGAIN', function () {
  before(function () {
    skipIf(this, unavailable(undefined, 'MOVE', 'EVENT_REMOVE'));
  });

  it('retries with bounded backoff, reports EAGAIN when the event stays unread, succeeds once it is read', function () {
    const r = runChild(SCRIPT, { timeoutMs: 15000, args: { binding: BINDING } });
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
    // The raw ioctl: EAGAIN with nothing done (the result field preset and read signed).
    expect(out.raw).to.deep.equal({ code: 'EAGAIN', bytes: 0 });
    expect(out.exhausted).to.deep.equal({ name: 'MoveError', code: 'EAGAIN', bytes: 0, offset: 0, retries: 3, ioctls: 4 });
    // 5 + 10 + 20 ms of backoff.
    expect(out.waitedMs).to.be.at.least(30);
    expect(out.eventBytes).to.equal(32);
    expect(out.eventType).to.equal(0x15); // UFFD_EVENT_REMOVE
    expect(out.after).to.deep.equal({ moved: 4 * (out.page as number), retries: 0 });
    expect(out.data).to.equal(true);
  });
});

/**
 * The addon's own checks on the move entry points (the second line behind lib/memory/move.ts): anything
 * at all passed straight to the binding throws TypeError / RangeError and never crashes.
 */
describe('native move guards', function () {
  const state = (): Float64Array => new Float64Array(4);
  const op = (dst: bigint, src: bigint, len: bigint): BigUint64Array => new BigUint64Array([dst, src, len]);
  const P = BigInt(PAGE);

  let uffd: Userfaultfd;
  let h: NativeUffd;
  beforeEach(function () {
    uffd = Userfaultfd.open();
    h = uffd.native;
  });
  afterEach(function () {
    uffd.close();
  });

  it('moveBatch takes only an open Userfaultfd handle', function () {
    expect(() => native.moveBatch(3 as unknown as NativeUffd, op(P, 2n * P, P), 1, 0n, state())).to.throw(TypeError);
    expect(() => native.moveBatch({} as NativeUffd, op(P, 2n * P, P), 1, 0n, state())).to.throw(TypeError);
    uffd.close();
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, state())).to.throw().with.property('code', 'ERR_UFFD_CLOSED');
  });

  it('moveBatch rejects bad arguments before any ioctl', function () {
    expect(() => native.moveBatch(h, [] as unknown as BigUint64Array, 0, 0n, state())).to.throw(TypeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 2, 0n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P + 1n, 2n * P, P), 1, 0n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, 0n), 1, 0n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(-P & ((1n << 64n) - 1n), 2n * P, 2n * P), 1, 0n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 4n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, new Float64Array(2))).to.throw(TypeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, new Float64Array([5, 0, 0, 0]))).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, new Float64Array([0, 1, 0, 0]))).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, new Float64Array([0, Number(P), 0, 0]))).to.throw(RangeError);
  });

  it('madviseRange takes only DONTNEED and REMOVE, on aligned ranges', function () {
    expect(() => native.madviseRange(PAGE, PAGE, 14)).to.throw(RangeError);
    expect(() => native.madviseRange(PAGE + 1, PAGE, 4)).to.throw(RangeError);
    expect(() => native.madviseRange(PAGE, 0, 4)).to.throw(RangeError);
    expect(() => native.madviseRange('x' as unknown as number, PAGE, 4)).to.throw(TypeError);
  });

  it('forkHold and reapChild check their numbers', function () {
    expect(() => native.testHooks!.forkHold(10 ** 9)).to.throw(RangeError);
    expect(() => native.testHooks!.forkHold(-1)).to.throw(RangeError);
    expect(() => native.testHooks!.reapChild(0)).to.throw(RangeError);
    // Never our own pid or anyone else's: only children forkHold made (errno ECHILD).
    expect(() => native.testHooks!.reapChild(process.pid)).to.throw().with.property('errno', -10);
  });
});
