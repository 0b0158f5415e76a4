/**
 * Concurrent compaction (the ART pattern): compact() returns the forwarding table at once; a
 * fault on a to-space page not moved yet is resolved in the event thread by moving its
 * from-space page on demand, while a background pass moves the rest.
 */
import { expect } from 'chai';
import { compact, Mapping, testing, Userfaultfd } from '../lib/index';
import { runChild } from './helpers/child';
import { canPinToOneCpu, childJsonOnOneCpu } from './helpers/one-cpu';
import { skipIf } from './helpers/memtypes';
import { fillPage, moveSuite, PAGE, pageHolds, thpUnavailable } from './helpers/move';
import { thpSize } from '../lib/core/sysinfo';

describe('compact (concurrent)', function () {
  let uffd: Userfaultfd;
  const map = moveSuite((u) => (uffd = u));

  function spaces(fromPages: number, toPages: number): { from: Mapping; to: Mapping } {
    const from = map(Mapping.anonymous(fromPages * PAGE));
    from.madvise('DONTFORK');
    for (let i = 0; i < fromPages; i++) fillPage(from.bytes(), i, i);
    const to = map(Mapping.anonymous(toPages * PAGE));
    uffd.register(to, { missing: true });
    return { from, to };
  }

  it('mutators use the to-space at once: faults are served by on-demand moves, the rest moves in the background', async function () {
    const live: number[] = [];
    for (let i = 0; i < 512; i++) if (i % 3 !== 1) live.push(i);
    // A to-space of just the layout, so that the touching threads can be given the Mapping.
    const { from, to } = spaces(512, live.length);
    const c = compact(uffd, from, to, live, { mode: 'concurrent', chunkPages: 16 });
    const last = live.length - 1;
    expect(c.forwarding.page(live[last])).to.equal(last);
    // The JS thread reads a page the background pass has not reached: the event thread moves it.
    expect(pageHolds(to.bytes({ offset: last * PAGE, length: PAGE }), 0, live[last])).to.equal(true);
    expect(c.progress().faultsServed).to.be.at.least(1);
    // Native threads read every page of the layout while the pass runs. Given the Mapping (not
    // its address), they keep it mapped until they end: if done rejects, the suite's cleanup
    // unmaps it while they may still be reading, which was a SIGSEGV hiding the failure.
    const touching = testing.touch(to, { threads: 2, order: 'random' });
    const result = await c.done;
    const sums = await touching;
    expect(result).to.include({ pagesMoved: live.length, holes: 0, bytes: live.length * PAGE });
    expect(result.faultsServed).to.be.at.least(1);
    expect(result.report.atomic).to.equal(true);
    expect(result.faultsServed + c.progress().movedInBackground).to.be.at.least(live.length);
    // Each page's first word is its old index + 1: the threads saw every page's own data.
    const expectedSum = live.reduce((n, old) => n + BigInt(old + 1), 0n);
    expect(sums.reduce((n, r) => n + r.sum, 0n)).to.equal(expectedSum);
    for (const [old, now] of result.forwarding.entries()) {
      expect(pageHolds(to.bytes(), now, old), `old ${old} -> new ${now}`).to.equal(true);
      expect(from.bytes({ offset: old * PAGE, length: PAGE }).every((b) => b === 0), `old ${old} emptied`).to.equal(true);
    }
  });

  it('racing: threads fault on the same pages while the pass moves them; repeated, every page intact', async function () {
    let skipped = 0;
    let onDemand = 0;
    for (let round = 0; round < 6; round++) {
      const pages = 1024;
      const live: number[] = [];
      for (let i = 0; i < pages; i++) if ((i * 7 + round) % 5 !== 0) live.push(i);
      const { from, to } = spaces(pages, live.length);
      const c = compact(uffd, from, to, live, { mode: 'concurrent', chunkPages: 1 });
      // Both threads touch every page (no partition), in random orders: the event thread sees
      // the same page twice (EEXIST, wake), and the pass finds pages already moved (skipped).
      // The Mapping keeps the to-space mapped under them whatever the cleanup does (see above).
      const touching = testing.touch(to, { threads: 2, partition: false, order: 'random', seed: round + 1 });
      const result = await c.done;
      const sums = await touching;
      const expected = live.reduce((n, old) => n + BigInt(old + 1), 0n);
      for (const r of sums) expect(r.sum, `round ${round}`).to.equal(expected);
      expect(result.pagesMoved).to.equal(live.length);
      const progress = c.progress();
      // Each live page went exactly one way: by the pass, or on demand (then the pass skipped it
      // or had not reached it yet).
      expect(result.report.moved).to.equal(progress.movedInBackground * PAGE);
      expect(progress.movedInBackground).to.be.at.most(live.length);
      skipped += progress.alreadyMoved;
      onDemand += result.faultsServed;
      for (const [old, now] of result.forwarding.entries()) expect(pageHolds(to.bytes(), now, old), `round ${round}: old ${old}`).to.equal(true);
      // Free this round's spaces now (unmap is idempotent: the suite's cleanup repeats it).
      from.unmap();
      to.unmap();
    }
    process.stdout.write(`      ${onDemand} faults served on demand, ${skipped} pages the pass found already moved, over 6 rounds\n`);
  });

  it('in a child: a huge-page from-space split by on-demand moves under the pass: no false conflict, no error, every page intact', function () {
    // A from-space backed by a transparent huge page (THP 'always' does that to any heap, as on
    // the Debian kernels of test/vm) is split by the first move out of it. When the event
    // thread's on-demand move and the background pass both move out of the same huge page at
    // that moment, the kernel gives one of them a passing EBUSY, or moves the pass's page and
    // still answers EEXIST. The event thread reported the EBUSY as an error and left its thread
    // waiting, and the pass took the EEXIST for a conflict: done rejected, and the test that
    // saw it failed, its cleanup unmapping the to-space under threads still touching it
    // (SIGSEGV on the arm64 VM). One CPU for the whole process makes the race likely.
    skipIf(this, thpUnavailable());
    this.timeout(300000);
    const vm = process.env.UFFD_TEST_VM === '1';
    if (!canPinToOneCpu()) process.stdout.write('      (no taskset: the child runs on every CPU, where the race is rarer)\n');
    const out = childJsonOnOneCpu<{ outcomes: Record<string, number>; errors: string[]; bad: number }>(
      `const page = uffd.pageSize();
       const pages = ARGS.huge / page;
       const outcomes = {};
       const errors = [];
       let bad = 0;
       (async () => {
         for (let round = 0; round < ARGS.rounds; round++) {
           const u = uffd.Userfaultfd.open({ features: ['MOVE'] });
           u.on('error', (e) => errors.push(e.code));
           const from = uffd.Mapping.anonymous(pages * page, { hugepage: true });
           from.madvise('DONTFORK');
           const fb = from.bytes();
           for (let i = 0; i < pages; i++) new DataView(fb.buffer, i * page, 8).setBigUint64(0, BigInt(i + 1), true);
           const to = uffd.Mapping.anonymous(pages * page);
           u.register(to);
           const c = uffd.compact(u, from, to, [{ offset: 0, length: pages * page }], { mode: 'concurrent', chunkPages: 1 });
           // Every page but the first, which the pass moves first: the event thread splits the
           // huge page under that move.
           const touching = uffd.testing.touch({ address: to.address + BigInt(page), length: (pages - 1) * page }, { threads: 2, partition: false, order: 'random', seed: round + 1 });
           let key;
           try {
             await c.done;
             key = 'ok';
           } catch (e) {
             key = e.code;
           }
           outcomes[key] = (outcomes[key] || 0) + 1;
           // A thread left waiting (an error) is woken by the close and faults normally; the
           // to-space stays mapped until every thread has ended.
           if (key !== 'ok' || errors.length > 0) u.close();
           const sums = await touching;
           if (key === 'ok') {
             const expected = BigInt((pages * (pages + 1)) / 2 - 1);
             for (const r of sums) if (r.sum !== expected) bad++;
             const tb = to.bytes();
             for (let i = 0; i < pages; i++) if (new DataView(tb.buffer, i * page, 8).getBigUint64(0, true) !== BigInt(i + 1)) bad++;
           }
           u.close();
           from.unmap();
           to.unmap();
         }
         console.log(JSON.stringify({ outcomes, errors, bad }));
       })();`,
      // The whole process on one CPU, as in a 1-vCPU VM, where it was seen: the race is rarer
      // with a CPU per thread.
      { timeoutMs: 120000, args: { rounds: vm ? 15 : 80, huge: thpSize() } },
    );
    expect(out.errors).to.deep.equal([]);
    expect(out.outcomes).to.deep.equal({ ok: vm ? 15 : 80 });
    expect(out.bad).to.equal(0);
  });

  it('in a child: a fault served on demand is in the stats when the faulting thread resumes', function () {
    // The event thread counted a fault after its resolution, which wakes the faulting thread: on
    // one CPU the woken JS thread ran first and read faultsServed 0 for the page it had just
    // been served (every time with a huge-page from-space, whose split makes the move longer).
    skipIf(this, thpUnavailable());
    const out = childJsonOnOneCpu<{ misses: number; wrong: number }>(
      `(async () => {
         const page = uffd.pageSize();
         const pages = ARGS.huge / page;
         let misses = 0;
         let wrong = 0;
         for (let round = 0; round < ARGS.rounds; round++) {
           const u = uffd.Userfaultfd.open({ features: ['MOVE'] });
           const from = uffd.Mapping.anonymous(pages * page, { hugepage: true });
           from.madvise('DONTFORK');
           from.bytes().fill(round + 1);
           const to = uffd.Mapping.anonymous(pages * page);
           u.register(to);
           const c = uffd.compact(u, from, to, [{ offset: 0, length: pages * page }], { mode: 'concurrent' });
           // The JS thread faults on the last page; the event thread moves it on demand.
           if (to.bytes({ offset: (pages - 1) * page, length: page })[0] !== round + 1) wrong++;
           if (c.progress().faultsServed < 1) misses++;
           await c.done;
           u.close();
           from.unmap();
           to.unmap();
         }
         console.log(JSON.stringify({ misses, wrong }));
       })();`,
      { timeoutMs: 60000, args: { rounds: 10, huge: thpSize() } },
    );
    expect(out).to.deep.equal({ misses: 0, wrong: 0 });
  });

  it('live holes become zero pages; the dead pages stay', async function () {
    const from = map(Mapping.anonymous(8 * PAGE));
    fillPage(from.bytes(), 1, 1);
    fillPage(from.bytes(), 3, 3);
    fillPage(from.bytes(), 5, 5);
    const to = map(Mapping.anonymous(8 * PAGE));
    uffd.register(to);
    const c = compact(uffd, from, to, [{ offset: PAGE, length: 4 * PAGE }], { mode: 'concurrent' });
    const result = await c.done;
    expect(result).to.include({ pagesMoved: 2, holes: 2 });
    expect(pageHolds(to.bytes(), 0, 1)).to.equal(true);
    expect(to.bytes({ offset: PAGE, length: PAGE }).every((b) => b === 0)).to.equal(true);
    expect(pageHolds(to.bytes(), 2, 3)).to.equal(true);
    expect(pageHolds(from.bytes(), 5, 5)).to.equal(true);
  });

  it('a to-space page mapped by someone else is a conflict, not a page moved on demand: done rejects', async function () {
    const { from, to } = spaces(4, 4);
    uffd.zeropage(to.address + BigInt(2 * PAGE), PAGE);
    const c = compact(uffd, from, to, [0, 1, 2, 3], { mode: 'concurrent' });
    let err: unknown;
    try {
      await c.done;
    } catch (e) {
      err = e;
    }
    expect(err).to.have.property('code', 'EEXIST');
    expect(err).to.have.property('offset', 2 * PAGE);
    // The page that could not go stays in the from-space: nothing lost.
    expect(pageHolds(from.bytes(), 2, 2)).to.equal(true);
    expect(pageHolds(to.bytes(), 3, 3), 'moved on demand through the policy that stays').to.equal(true);
  });

  it('a page moved on demand whose source hole was filled again (as khugepaged does) is skipped, not a conflict', async function () {
    const { from, to } = spaces(4, 4);
    const c = compact(uffd, from, to, [0, 1, 2, 3], { mode: 'concurrent' });
    // The JS thread reads page 2 before the pass starts: the event thread moves it on demand.
    expect(pageHolds(to.bytes(), 2, 2)).to.equal(true);
    // khugepaged collapsing the from-space would put a zeroed page in the hole; so does a write.
    from.bytes({ offset: 2 * PAGE, length: PAGE }).fill(0xee);
    const result = await c.done;
    expect(c.progress()).to.include({ alreadyMoved: 1, movedInBackground: 3 });
    expect(result.faultsServed).to.equal(1);
    for (let i = 0; i < 4; i++) expect(pageHolds(to.bytes(), i, i), `page ${i}`).to.equal(true);
    expect(from.bytes({ offset: 2 * PAGE, length: PAGE }).every((b) => b === 0xee), 'the refilled source is left alone').to.equal(true);
  });

  it('moveFrom claims and the retain option are validated', function () {
    const { to } = spaces(1, 2);
    const table = new BigUint64Array(2);
    expect(() => uffd.handle({ address: to.address, length: 2 * PAGE }, { moveFrom: table, claims: new Uint8Array(1) })).to.throw(RangeError, /claims/);
    expect(() => uffd.handle({ address: to.address, length: 2 * PAGE }, { moveFrom: table, claims: [0, 0] as unknown as Uint8Array })).to.throw(TypeError, /claims/);
    // The event thread writes the claims in place: a plain ArrayBuffer could be detached under it.
    expect(() => uffd.handle({ address: to.address, length: 2 * PAGE }, { moveFrom: table, claims: new Uint8Array(2) })).to.throw(TypeError, /SharedArrayBuffer/);
    expect(() => uffd.handle({ address: to.address, length: 2 * PAGE }, { zero: true, claims: new Uint8Array(2) } as never)).to.throw(TypeError, /exactly one/);
    expect(() => uffd.handle(to, { zero: true }, { retain: 5 as never })).to.throw(TypeError, /retain/);
  });

  it('an empty live set settles at once; copy fallback and allowSrcHoles: false are refused', async function () {
    const { from, to } = spaces(4, 4);
    const c = compact(uffd, from, to, [], { mode: 'concurrent' });
    expect((await c.done).pagesMoved).to.equal(0);
    expect(() => compact(uffd, from, to, [0], { mode: 'concurrent', fallback: 'copy' })).to.throw(TypeError, /concurrent/);
    expect(() => compact(uffd, from, to, [0], { mode: 'concurrent', allowSrcHoles: false })).to.throw(TypeError);
    expect(() => compact(uffd, from, to, [0], { mode: 'concurrent', chunkPages: 0 })).to.throw(RangeError);
    expect(pageHolds(from.bytes(), 0, 0), 'nothing moved').to.equal(true);
  });

  it('in a child: a page that cannot move (EBUSY after fork) is an error event; done rejects; the faulting thread waits', function () {
    const r = runChild(
      `const u = uffd.Userfaultfd.open({ features: ['MOVE'] });
       const page = uffd.pageSize();
       const from = uffd.Mapping.anonymous(4 * page);
       from.bytes().fill(7);
       const to = uffd.Mapping.anonymous(4 * page);
       u.register(to);
       uffd.testing.reapChild(uffd.testing.forkHold(10000)); // every page now shared: EBUSY
       const out = {};
       u.on('error', (e) => { out.event = e.code; });
       const c = uffd.compact(u, from, to, [0, 1, 2, 3], { mode: 'concurrent' });
       let touched = false;
       uffd.testing.touch({ address: to.address, length: page }).then(() => { touched = true; });
       c.done.catch((e) => { out.done = e.code; });
       // The EBUSY is reported after 100 retries a poll period apart: wait for it however slow the
       // machine, then a little longer to see that the faulting thread still waits.
       waitFor(() => out.event !== undefined && out.done !== undefined).then(() => setTimeout(() => {
         out.touched = touched;
         console.log(JSON.stringify(out));
         process.exit(0);
       }, 200));`,
      { timeoutMs: 15000 },
    );
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout.trim())).to.deep.equal({ event: 'EBUSY', done: 'EBUSY', touched: false });
  });

  it('in a child: the spaces stay mapped until done even if the caller drops them and the GC runs', function () {
    // Without the compaction holding them, the GC unmaps the from-space under the background
    // pass (ENOENT) and the to-space under the event thread. The GC runs at once (the first
    // turn), then as the pass advances.
    const r = runChild(
      `const u = uffd.Userfaultfd.open({ features: ['MOVE'] });
       const page = uffd.pageSize();
       const N = 512;
       let from = uffd.Mapping.anonymous(N * page);
       from.madvise('DONTFORK');
       from.bytes().fill(9);
       let to = uffd.Mapping.anonymous(N * page);
       u.register(to);
       const c = uffd.compact(u, from, to, [{ offset: 0, length: N * page }], { mode: 'concurrent', chunkPages: 1 });
       from = undefined;
       to = undefined;
       // A full GC every 32 pages of progress, not every turn of the loop: the work stays the
       // same on a slow machine (512 GCs took longer than the limits under emulation).
       let collectedAt = -Infinity;
       const collector = setInterval(() => {
         const moved = c.progress().movedInBackground;
         if (moved - collectedAt < 32) return;
         collectedAt = moved;
         global.gc();
       }, 1);
       const end = (out) => { clearInterval(collector); u.close(); console.log(JSON.stringify(out)); };
       c.done.then((r) => end({ moved: r.pagesMoved }), (e) => end({ error: e.code }));`,
      { timeoutMs: 30000, nodeArgs: ['--expose-gc'] },
    );
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout.trim())).to.deep.equal({ moved: 512 });
  });

  it('in a child: after done rejects, the policy that stays keeps the from-space mapped through the GC', function () {
    // The pass stops at a conflict on page 2; pages 3.. are still in the from-space, served on
    // demand by the policy that stays. Dropped by the caller, the from-space used to be unmapped
    // by the GC, and a later fault mapped zeros (the move found no source) instead of the page.
    const r = runChild(
      `(async () => {
         const u = uffd.Userfaultfd.open({ features: ['MOVE'] });
         const page = uffd.pageSize();
         let from = uffd.Mapping.anonymous(8 * page);
         from.madvise('DONTFORK');
         for (let i = 0; i < 8; i++) from.bytes({ offset: i * page, length: page }).fill(i + 1);
         const to = uffd.Mapping.anonymous(8 * page);
         u.register(to);
         u.zeropage(to.address + BigInt(2 * page), page);
         let c = uffd.compact(u, from, to, [{ offset: 0, length: 8 * page }], { mode: 'concurrent', chunkPages: 1 });
         const error = await c.done.then(() => 'resolved', (e) => e.code);
         from = undefined;
         c = undefined;
         for (let i = 0; i < 5; i++) { global.gc(); await new Promise((r) => setImmediate(r)); }
         const sums = await uffd.testing.touch({ address: to.address + BigInt(5 * page), length: page });
         const bytes = to.bytes({ offset: 5 * page, length: page });
         console.log(JSON.stringify({ error, byte: bytes[0], same: bytes.every((b) => b === bytes[0]), touched: sums[0].touched }));
         u.close();
       })();`,
      { timeoutMs: 30000, nodeArgs: ['--expose-gc'] },
    );
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout.trim())).to.deep.equal({ error: 'EEXIST', byte: 6, same: true, touched: 1 });
  });

  it('in a child: unmap() of the from-space during the compaction leaves its memory to the policy until it goes', function () {
    // The move table holds from-space addresses. Unmapped at once, faults found no source there
    // (zeros and an ENOENT error), and a new mapping could take the range: the event thread would
    // then move someone else's pages into the to-space.
    const out = childJsonOnOneCpu<{ error: string; errors: string[]; bytes: number[]; heldWhilePolicy: boolean; unmappedAfter: boolean; hidden: boolean }>(
      `(async () => {
         const fs = require('node:fs');
         const u = uffd.Userfaultfd.open({ features: ['MOVE'] });
         const page = uffd.pageSize();
         const from = uffd.Mapping.anonymous(8 * page, { hugepage: false });
         from.madvise('DONTFORK');
         for (let i = 0; i < 8; i++) from.bytes({ offset: i * page, length: page }).fill(i + 1);
         const to = uffd.Mapping.anonymous(8 * page);
         u.register(to);
         const errors = [];
         u.on('error', (e) => errors.push(e.code));
         const start = from.address.toString(16);
         const inMaps = () => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').some((l) => l.startsWith(start + '-'));
         const c = uffd.compact(u, from, to, [{ offset: 0, length: 8 * page }], { mode: 'concurrent', chunkPages: 1 });
         from.unmap(); // before the pass has moved anything: it stops at once
         const error = await c.done.then(() => 'resolved', (e) => e.code);
         // Every page is still in the from-space; the policy that stays moves each on demand.
         await uffd.testing.touch(to, { threads: 2 });
         const bytes = [];
         for (let i = 0; i < 8; i++) bytes.push(to.bytes({ offset: i * page, length: page }).every((b) => b === i + 1) ? i + 1 : -1);
         const heldWhilePolicy = inMaps();
         u.close();
         console.log(JSON.stringify({ error, errors, bytes, heldWhilePolicy, unmappedAfter: !inMaps(), hidden: !from.mapped }));
       })();`,
      { timeoutMs: 30000 },
    );
    expect(out).to.deep.equal({ error: 'ERR_UFFD_UNMAPPED', errors: [], bytes: [1, 2, 3, 4, 5, 6, 7, 8], heldWhilePolicy: true, unmappedAfter: true, hidden: true });
  });
});
