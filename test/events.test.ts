/**
 * The event side of uffd-unit-tests, per memory type: faults served by JS handlers and by native
 * policies, events / events-wp (fork, mremap, MADV_DONTNEED in a child), minor and minor-wp,
 * wp faults, and what the kernel suite lacks: UNMAP events, thread ids, EXACT_ADDRESS,
 * DONTWAKE then WAKE, the async iterator. Faults are raised by native threads or forked
 * children only; the JS thread never touches an unresolved registered page here.
 */
import { expect } from 'chai';
import { Mapping, Userfaultfd, testing, type PageFault, type UffdEvent } from '../lib/index';
import { native } from '../lib/core/binding';
import { pageSize } from '../lib/core/sysinfo';
import { MEMTYPES, emptyUnavailable, kernelModeUnavailable, skipIf, unavailable, type MemType } from './helpers/memtypes';
import { MEMTYPES_JS, runChild } from './helpers/child';
import { waitFor } from './helpers/wait';

const page = pageSize();
const PAGES = 32;

/** A source whose unit i starts with the u64 i + 1 (what forkTouch's `expect: 'index'` checks). */
function indexed(type: MemType, units: number): Buffer {
  const b = Buffer.alloc(units * type.unit);
  for (let i = 0; i < units; i++) b.writeBigUInt64LE(BigInt(i + 1), i * type.unit);
  return b;
}

function unitOf(type: MemType, address: bigint): bigint {
  return address - (address % BigInt(type.unit));
}

/**
 * Serves the children a parent uffd forks (EVENT_FORK) from `src`, by offset from where the
 * child's range is now: events come in order, so a REMAP is seen before the faults at the new
 * place. Records 'fork', 'child remap' and 'child remove' in `seen` and each fault's offset in
 * `faults`; returns the children's uffds, for the caller to close.
 */
function serveForks(uffd: Userfaultfd, mem: Mapping, type: MemType, src: Buffer, seen: string[], faults: number[] = []): Userfaultfd[] {
  const children: Userfaultfd[] = [];
  uffd.on('fork', (ev) => {
    seen.push('fork');
    const child = ev.uffd;
    children.push(child);
    let base = mem.address;
    child.on('remap', (e) => {
      seen.push('child remap');
      base = e.to;
    });
    child.on('remove', () => seen.push('child remove'));
    child.on('pagefault', (f) => {
      const at = unitOf(type, f.address);
      const offset = Number(at - base);
      faults.push(offset);
      child.copy(at, src.subarray(offset, offset + type.unit));
    });
  });
  return children;
}

function words(mem: Mapping, unit: number): bigint[] {
  const view = new BigUint64Array(mem.buffer);
  return Array.from({ length: mem.length / unit }, (_, i) => view[(i * unit) / 8]);
}

for (const type of MEMTYPES) {
  describe(`events [${type.name}]`, () => {
    const units = type.hugetlb ? 4 : PAGES;

    it('a JS handler serves faults raised by native threads: every page faulted exactly once', async function () {
      skipIf(this, unavailable(type, type.missingFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(units);
      const src = indexed(type, units);
      uffd.register(mem);
      const counts = new Map<bigint, number>();
      uffd.on('pagefault', (ev) => {
        const at = unitOf(type, ev.address);
        counts.set(at, (counts.get(at) ?? 0) + 1);
        const offset = Number(at - mem.address);
        uffd.copy(at, src.subarray(offset, offset + type.unit));
      });
      await testing.touch(mem, { threads: 2, stride: type.unit });
      expect(counts.size).to.equal(units);
      expect([...counts.values()].every((n) => n === 1)).to.equal(true);
      expect(words(mem, type.unit)).to.deep.equal(Array.from({ length: units }, (_, i) => BigInt(i + 1)));
    });

    it('a native copy policy serves them with no JS hop, and counts', async function () {
      skipIf(this, unavailable(type, type.missingFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(units);
      uffd.register(mem);
      let jsFaults = 0;
      uffd.on('pagefault', () => jsFaults++);
      const policy = uffd.handle(mem, { copyFrom: indexed(type, units) }, { unit: type.unit });
      await testing.touch(mem, { threads: 2, stride: type.unit, order: 'random' });
      expect(jsFaults).to.equal(0);
      const stats = policy.stats();
      expect(stats.faults).to.equal(units);
      expect(stats.bytes).to.equal(units * type.unit);
      expect(stats.errors).to.equal(0);
      expect(words(mem, type.unit)).to.deep.equal(Array.from({ length: units }, (_, i) => BigInt(i + 1)));
    });

    it('racing threads on the same pages: each page resolved once, duplicates woken (EEXIST)', async function () {
      skipIf(this, unavailable(type, type.missingFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(units);
      uffd.register(mem);
      const policy = uffd.handle(mem, { zero: true }, { unit: type.unit });
      await testing.touch(mem, { threads: 4, stride: type.unit, partition: false, mode: 'increment', order: 'random' });
      expect(words(mem, type.unit).every((w) => w === 4n)).to.equal(true);
      const s = policy.stats();
      expect(s.faults).to.be.at.least(units);
      expect(s.bytes).to.be.at.least(units * type.unit);
    });

    // Private memory; shared memory has its own case below (the child faults untouched pages).
    if (!type.shared) it('events: fork (the child faults through the FORK uffd), then MADV_DONTNEED and mremap in a child', async function () {
      skipIf(this, unavailable(type, type.missingFeature, 'EVENT_FORK', 'EVENT_REMAP', 'EVENT_REMOVE') ?? emptyUnavailable(type));
      skipIf(this, kernelModeUnavailable());
      using uffd = Userfaultfd.open({ features: ['EVENT_FORK', 'EVENT_REMAP', 'EVENT_REMOVE'], userModeOnly: false });
      using mem = type.create(units);
      const src = indexed(type, units);
      uffd.register(mem);
      const seen: string[] = [];
      const children = serveForks(uffd, mem, type, src, seen);
      uffd.handle(mem, { copyFrom: src }, { unit: type.unit });
      // The parent faults everything in first, as the kselftest does.
      await testing.touch(mem, { stride: type.unit });
      // A child reads what the parent has (COW copies, or the child's own uffd for what was not there).
      expect(await testing.forkTouch(mem, { stride: type.unit, expect: 'index' })).to.deep.equal({ status: 0, signal: null });
      // A child that drops its pages (REMOVE on its uffd), moves them (REMAP), and reads them again:
      // its faults are served through the FORK event's uffd, with the same data.
      const r = await testing.forkTouch(mem, { stride: type.unit, dontneed: true, mremap: !type.hugetlb, expect: 'index' });
      expect(r).to.deep.equal({ status: 0, signal: null });
      expect(seen.filter((s) => s === 'fork')).to.have.length(2);
      expect(seen).to.include('child remove');
      if (!type.hugetlb) expect(seen).to.include('child remap');
      for (const c of children) c.close();
    });

    if (type.shared) {
      it('events: a forked child faults the untouched shared pages through the FORK uffd, each once, then REMOVE and REMAP', async function () {
        // As uffd-unit-tests' events on shared memory: the parent touches nothing, so every page
        // is first faulted by the child, through the uffd the FORK event hands over.
        const dontneed = type.hugetlb ? emptyUnavailable(MEMTYPES.find((t) => t.name === 'hugetlb-private') as MemType) : undefined;
        skipIf(this, unavailable(type, type.missingFeature, 'EVENT_FORK', 'EVENT_REMAP', 'EVENT_REMOVE') ?? dontneed ?? kernelModeUnavailable());
        using uffd = Userfaultfd.open({ features: ['EVENT_FORK', 'EVENT_REMAP', 'EVENT_REMOVE'], userModeOnly: false });
        using mem = type.create(units);
        const src = indexed(type, units);
        uffd.register(mem);
        const seen: string[] = [];
        const childFaults: number[] = [];
        let parentFaults = 0;
        uffd.on('pagefault', () => parentFaults++);
        const children = serveForks(uffd, mem, type, src, seen, childFaults);
        const r = await testing.forkTouch(mem, { stride: type.unit, dontneed: true, mremap: !type.hugetlb, expect: 'index' });
        expect(r).to.deep.equal({ status: 0, signal: null });
        expect(seen.filter((x) => x === 'fork')).to.have.length(1);
        expect(seen).to.include('child remove');
        if (!type.hugetlb) expect(seen).to.include('child remap');
        // Every unit was faulted, each once: after the REMOVE the shared pages are still the
        // file's, so reading them again raises no fault.
        expect([...childFaults].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: units }, (_, i) => i * type.unit));
        expect(parentFaults).to.equal(0);
        // The parent sees the child's data: the pages are shared.
        expect(new BigUint64Array(mem.buffer)[type.unit / 8]).to.equal(src.readBigUInt64LE(type.unit));
        for (const c of children) c.close();
      });
    }

    it('events: MADV_DONTNEED is a REMOVE event, and the pages fault again (zeros after remove)', async function () {
      skipIf(this, unavailable(type, type.missingFeature, 'EVENT_REMOVE') ?? emptyUnavailable(type));
      using uffd = Userfaultfd.open({ features: ['EVENT_REMOVE'] });
      using mem = type.create(units);
      uffd.register(mem);
      const removes: UffdEvent[] = [];
      uffd.on('remove', (ev) => removes.push(ev));
      const policy = uffd.handle(mem, { zero: true }, { unit: type.unit });
      await testing.touch(mem, { stride: type.unit, mode: 'write' });
      expect(words(mem, type.unit)[1]).to.equal(2n);
      await testing.madvise(mem, type.shared ? 'REMOVE' : 'DONTNEED');
      // The madvise promise (a thread-safe function) and the event (the event thread's async handle)
      // reach the JS thread by different paths.
      await waitFor(() => removes.length > 0);
      expect(removes).to.have.length(1);
      expect(removes[0]).to.deep.include({ type: 'remove', start: mem.address, end: mem.address + BigInt(mem.length) });
      await testing.touch(mem, { stride: type.unit });
      expect(words(mem, type.unit).every((w) => w === 0n)).to.equal(true);
      expect(policy.stats().faults).to.equal(2 * units);
    });

    it('events-wp: missing faults resolved write-protected, then WP faults resolved by un-protecting', async function () {
      skipIf(this, unavailable(type, type.missingFeature, type.wpFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(units);
      uffd.register(mem, { missing: true, wp: true });
      const src = indexed(type, units);
      const kinds = { missing: 0, wp: 0 };
      uffd.on('pagefault', (ev) => {
        const at = unitOf(type, ev.address);
        if (ev.flags.wp) {
          kinds.wp++;
          uffd.writeProtect({ address: at, length: type.unit }, false);
        } else {
          kinds.missing++;
          const offset = Number(at - mem.address);
          uffd.copy(at, src.subarray(offset, offset + type.unit), type.unit, { wp: true });
        }
      });
      await testing.touch(mem, { stride: type.unit, mode: 'increment' });
      expect(kinds).to.deep.equal({ missing: units, wp: units });
      expect(words(mem, type.unit)).to.deep.equal(Array.from({ length: units }, (_, i) => BigInt(i + 2)));
    });

    if (type.fileBacked && type.shared) {
      it('minor: faults on page-cache pages resolved by CONTINUE (policy and JS)', async function () {
        skipIf(this, unavailable(type, type.minorFeature));
        using uffd = Userfaultfd.open();
        using mem = type.create(units);
        using alias = mem.alias();
        indexed(type, units).copy(Buffer.from(alias.buffer));
        uffd.register(mem, { minor: true });
        const half = { address: mem.address, length: (units / 2) * type.unit };
        const policy = uffd.handle(half, { continue: true }, { unit: type.unit });
        const js: PageFault[] = [];
        uffd.on('pagefault', (ev) => {
          js.push(ev);
          uffd.continue(unitOf(type, ev.address), type.unit);
        });
        await testing.touch(mem, { stride: type.unit, threads: 2 });
        expect(policy.stats().faults).to.equal(units / 2);
        expect(js).to.have.length(units / 2);
        expect(js.every((ev) => ev.flags.minor && !ev.flags.wp)).to.equal(true);
        expect(words(mem, type.unit)).to.deep.equal(Array.from({ length: units }, (_, i) => BigInt(i + 1)));
      });

      it('minor-wp: CONTINUE write-protected, then the writes fault WP and are un-protected', async function () {
        // UFFDIO_CONTINUE_MODE_WP came in 6.4 with no feature bit of its own; WP_UNPOPULATED,
        // also 6.4, stands in for it.
        skipIf(this, unavailable(type, type.minorFeature, type.wpFeature, 'WP_UNPOPULATED'));
        using uffd = Userfaultfd.open();
        using mem = type.create(units);
        using alias = mem.alias();
        indexed(type, units).copy(Buffer.from(alias.buffer));
        uffd.register(mem, { minor: true, wp: true });
        const kinds = { minor: 0, wp: 0 };
        uffd.on('pagefault', (ev) => {
          const at = unitOf(type, ev.address);
          if (ev.flags.wp) {
            kinds.wp++;
            uffd.writeProtect({ address: at, length: type.unit }, false);
          } else {
            kinds.minor++;
            uffd.continue(at, type.unit, { wp: true });
          }
        });
        await testing.touch(mem, { stride: type.unit, mode: 'increment' });
        expect(kinds).to.deep.equal({ minor: units, wp: units });
        // The writes went to the page cache: the alias sees them.
        expect(words(alias, type.unit)).to.deep.equal(Array.from({ length: units }, (_, i) => BigInt(i + 2)));
      });
    }

    it('wp: writes to protected pages fault with flags.wp and are resolved by un-protecting', async function () {
      skipIf(this, unavailable(type, type.wpFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(units);
      new Uint8Array(mem.buffer).fill(0); // populate before protecting
      uffd.register(mem, { wp: true });
      uffd.writeProtect(mem, true);
      const faults: PageFault[] = [];
      uffd.on('pagefault', (ev) => {
        faults.push(ev);
        uffd.writeProtect({ address: unitOf(type, ev.address), length: type.unit }, false);
      });
      await testing.touch(mem, { stride: type.unit, mode: 'write' });
      expect(faults).to.have.length(units);
      expect(faults.every((f) => f.flags.wp && f.flags.write)).to.equal(true);
      expect(words(mem, type.unit)).to.deep.equal(Array.from({ length: units }, (_, i) => BigInt(i + 1)));
      // Reads never fault on write-protected pages.
      uffd.writeProtect(mem, true);
      await testing.touch(mem, { stride: type.unit });
      expect(faults).to.have.length(units);
    });

    it('an unprotect policy serves WP faults natively', async function () {
      skipIf(this, unavailable(type, type.wpFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(units);
      new Uint8Array(mem.buffer).fill(1);
      uffd.register(mem, { wp: true });
      uffd.writeProtect(mem, true);
      const policy = uffd.handle(mem, { unprotect: true }, { unit: type.unit });
      await testing.touch(mem, { stride: type.unit, mode: 'write', threads: 2 });
      expect(policy.stats().faults).to.equal(units);
    });
  });
}

// uffd-unit-tests sigbus and sigbus-wp: with the SIGBUS feature a fault raises SIGBUS instead of
// a message, in this process and (with EVENT_FORK) in a forked child; once the pages are
// resolved, the same accesses go through. A JS thread cannot catch SIGBUS, so each "retry" is a
// fresh forked child, and the last access kills the test's own child process, as it must.
for (const type of MEMTYPES) {
  describe(`sigbus [${type.name}]`, () => {
    for (const wp of [false, true]) {
      const name = wp ? 'sigbus-wp' : 'sigbus';
      it(`${name}: SIGBUS in a forked child and in this process; resolved pages then go through`, function () {
        skipIf(this, unavailable(type, wp ? type.wpFeature : type.missingFeature, 'SIGBUS', 'EVENT_FORK') ?? kernelModeUnavailable());
        const r = runChild(
          `
          const { MEMTYPES } = require(ARGS.memtypes);
          const type = MEMTYPES.find((t) => t.name === ARGS.type);
          const u = uffd.Userfaultfd.open({ features: ['SIGBUS', 'EVENT_FORK'], userModeOnly: false });
          const children = [];
          u.on('fork', (ev) => children.push(ev.uffd)); // kept open: the child's ranges stay registered
          let faults = 0;
          u.on('pagefault', () => faults++);                // SIGBUS means none are ever sent
          const mem = type.create(4);
          const three = { address: mem.address, length: 3 * type.unit };
          if (ARGS.wp) {
            mem.bytes().fill(1);
            u.register(mem, { wp: true });
            u.writeProtect(mem, true);
          } else {
            u.register(mem);
          }
          const mode = ARGS.wp ? 'write' : 'read';
          (async () => {
            const first = await uffd.testing.forkTouch(mem, { mode, stride: type.unit });
            console.log('child', first.signal ?? first.status);
            if (ARGS.wp) u.writeProtect(three, false);
            else u.copy(mem.address, Buffer.alloc(three.length, 7), three.length);
            const again = await uffd.testing.forkTouch(three, { mode, stride: type.unit });
            console.log('resolved child', again.signal ?? again.status);
            console.log('pagefaults', faults);
            const v = mem.bytes();
            console.log('read', v[0], v[3 * type.unit - 1]);
            if (ARGS.wp) { console.log('unit 3 reads', v[3 * type.unit]); v[3 * type.unit] = 2; } else console.log(v[3 * type.unit]);
            console.log('survived');
          })();
          `,
          { args: { type: type.name, wp, memtypes: MEMTYPES_JS }, timeoutMs: 30000 },
        );
        expect(r.timedOut, r.stderr).to.equal(false);
        expect(r.stdout, r.stderr).to.include('child SIGBUS');
        expect(r.stdout).to.include('resolved child 0');
        expect(r.stdout).to.include('pagefaults 0');
        expect(r.stdout).to.include(wp ? 'read 1 1' : 'read 7 7');
        if (wp) expect(r.stdout).to.include('unit 3 reads 1');
        expect(r.stdout).to.not.include('survived');
        expect(r.signal).to.equal('SIGBUS');
      });
    }
  });
}

describe('events: beyond the kernel suite', () => {
  it('sigbus: with the SIGBUS feature an access raises SIGBUS and no message (in a child)', async () => {
    const { runChild } = await import('./helpers/child');
    for (const wp of [false, true]) {
      const why = wp ? unavailable(undefined, 'PAGEFAULT_FLAG_WP') : undefined;
      if (why) {
        process.stdout.write(`      skip: sigbus-wp: ${why}\n`);
        continue;
      }
      const r = runChild(`
        const u = uffd.Userfaultfd.open({ features: ['SIGBUS'] });
        const mem = uffd.Mapping.anonymous(uffd.pageSize() * 4);
        if (ARGS.wp) { new Uint8Array(mem.buffer).fill(1); u.register(mem, { wp: true }); u.writeProtect(mem, true); }
        else u.register(mem);
        console.log('pending', u.readEvents({ timeoutMs: 0 }).length);
        const v = new Uint8Array(mem.buffer);
        if (ARGS.wp) { console.log('read', v[0]); v[0] = 2; } else console.log(v[0]);
        console.log('survived');`, { args: { wp } });
      expect(r.stdout, r.stderr).to.include('pending 0');
      if (wp) expect(r.stdout).to.include('read 1');
      expect(r.stdout).to.not.include('survived');
      expect(r.signal).to.equal('SIGBUS');
      expect(r.timedOut).to.equal(false);
    }
  });

  it('UNMAP events carry the unmapped range', async () => {
    using uffd = Userfaultfd.open({ features: ['EVENT_UNMAP'] });
    const mem = Mapping.anonymous(8 * page);
    uffd.register(mem);
    const unmaps: UffdEvent[] = [];
    uffd.on('unmap', (ev) => unmaps.push(ev));
    const { address, length } = mem;
    // munmap waits until the event is read; the event thread reads it, not us.
    mem.unmap();
    await waitFor(() => unmaps.length > 0);
    expect(unmaps).to.deep.equal([{ type: 'unmap', start: address, end: address + BigInt(length) }]);
  });

  it('threadId is the faulting native thread, and absent without THREAD_ID', async () => {
    for (const guard of [true, false]) {
      using uffd = Userfaultfd.open({ deadlockGuard: guard });
      using mem = Mapping.anonymous(8 * page);
      uffd.register(mem);
      const tids = new Set<number | undefined>();
      uffd.on('pagefault', (ev) => {
        tids.add(ev.threadId);
        uffd.zeropage(ev.address, page);
      });
      const threads = await testing.touch(mem, { threads: 2 });
      if (guard) expect([...tids].sort()).to.deep.equal(threads.map((t) => t.tid).sort());
      else expect([...tids]).to.deep.equal([undefined]);
    }
  });

  it('EXACT_ADDRESS reports the faulting address itself, not its page', async function () {
    skipIf(this, unavailable(undefined, 'EXACT_ADDRESS'));
    for (const exact of [true, false]) {
      using uffd = Userfaultfd.open({ features: exact ? ['EXACT_ADDRESS'] : [] });
      using mem = Mapping.anonymous(4 * page);
      uffd.register(mem);
      const addresses: bigint[] = [];
      uffd.on('pagefault', (ev) => {
        addresses.push(ev.address);
        uffd.zeropage(ev.address - (ev.address % BigInt(page)), page);
      });
      await testing.touch(mem, { offset: 0x128 });
      const want = Array.from({ length: 4 }, (_, i) => mem.address + BigInt(i * page + (exact ? 0x128 : 0)));
      expect(addresses).to.deep.equal(want);
    }
  });

  it('DONTWAKE leaves the faulting thread asleep until WAKE', async () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(page);
    uffd.register(mem);
    const resolved = new Promise<void>((resolve) => {
      uffd.once('pagefault', (ev) => {
        uffd.copy(ev.address, Buffer.alloc(page, 9), page, { wake: false });
        resolve();
      });
    });
    let done = false;
    const touching = testing.touch(mem).then((r) => {
      done = true;
      return r;
    });
    await resolved;
    await new Promise((r) => setTimeout(r, 100));
    expect(done, 'woke without WAKE').to.equal(false);
    uffd.wake(mem);
    const [r] = await touching;
    expect(r.sum).to.equal(0x0909090909090909n);
  });

  it('mmap-changing: every resolving ioctl is EAGAIN with bytes 0 while a REMOVE is unread', async function () {
    skipIf(this, unavailable(undefined, 'EVENT_REMOVE', 'MOVE', 'POISON', 'MINOR_SHMEM'));
    using uffd = Userfaultfd.open({ features: ['EVENT_REMOVE'] });
    using anon = Mapping.anonymous(4 * page);
    using shm = Mapping.memfd(4 * page);
    using src = Mapping.anonymous(page);
    new Uint8Array(src.buffer).fill(1);
    new Uint8Array(shm.alias().buffer).fill(2);
    uffd.register(anon, { missing: true, wp: true });
    uffd.register(shm, { minor: true });
    // A native thread drops a page: it waits until the REMOVE event is read, which nobody does yet.
    const dropping = testing.madvise({ address: anon.address + BigInt(3 * page), length: page }, 'DONTNEED');
    expect(native.testHooks!.waitReadable(uffd.native, 5000)).to.equal(true);
    const calls: [string, () => unknown][] = [
      ['UFFDIO_COPY', () => uffd.copy(anon.address, Buffer.alloc(page))],
      ['UFFDIO_ZEROPAGE', () => uffd.zeropage(anon.address, page)],
      ['UFFDIO_MOVE', () => uffd.move(anon.address, src.address, page)],
      ['UFFDIO_POISON', () => uffd.poison(anon.address, page)],
      ['UFFDIO_CONTINUE', () => uffd.continue(shm.address, page)],
      ['UFFDIO_WRITEPROTECT', () => uffd.writeProtect({ address: anon.address, length: page }, true)],
    ];
    for (const [ioctl, call] of calls) {
      expect(call, ioctl).to.throw().that.deep.includes({ code: 'EAGAIN', ioctl, ...(ioctl === 'UFFDIO_WRITEPROTECT' ? {} : { bytes: 0 }) });
    }
    const events = uffd.readEvents({ timeoutMs: 1000 });
    expect(events.map((e) => e.type)).to.deep.equal(['remove']);
    await dropping;
    // The change is over: the same calls go through now.
    expect(uffd.zeropage(anon.address, page)).to.equal(page);
    expect(uffd.continue(shm.address, page)).to.equal(page);
  });

  it('faults outside every policy still reach JS; removing a policy sends its range back to JS', async () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(8 * page);
    uffd.register(mem);
    const js: bigint[] = [];
    uffd.on('pagefault', (ev) => {
      js.push(ev.address);
      uffd.zeropage(ev.address, page);
    });
    const low = uffd.handle({ address: mem.address, length: 4 * page }, { zero: true });
    await testing.touch({ address: mem.address, length: 8 * page });
    expect(low.stats().faults).to.equal(4);
    expect(js).to.deep.equal([4, 5, 6, 7].map((i) => mem.address + BigInt(i * page)));
    expect(low.remove()).to.equal(true);
    expect(low.remove()).to.equal(false);
    mem.madvise('DONTNEED');
    await testing.touch({ address: mem.address, length: 4 * page });
    expect(js).to.have.length(8);
  });

  it('policies: copy from a file descriptor (zeros past its end), a move table, overlap is refused', async function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'uffd-policy-')), 'data');
    const content = Buffer.alloc(3 * page + 100, 0x5a);
    fs.writeFileSync(file, content);
    const fd = fs.openSync(file, 'r');
    try {
      using uffd = Userfaultfd.open();
      using mem = Mapping.anonymous(8 * page);
      uffd.register(mem);
      uffd.handle({ address: mem.address, length: 4 * page }, { copyFrom: { fd, offset: page } });
      expect(() => uffd.handle({ address: mem.address + BigInt(2 * page), length: 2 * page }, { zero: true })).to.throw(RangeError, /overlaps/);
      using from = Mapping.anonymous(2 * page);
      new Uint8Array(from.buffer).fill(0x77);
      const table = new BigUint64Array([from.address + BigInt(page), 0n, from.address, 0n]);
      const mover = uffd.handle({ address: mem.address + BigInt(4 * page), length: 4 * page }, { moveFrom: table });
      await testing.touch(mem);
      const bytes = new Uint8Array(mem.buffer);
      expect(bytes[0]).to.equal(0x5a); // file offset page
      expect(bytes[2 * page + 99]).to.equal(0x5a); // file offset 3 * page + 99: the last byte
      expect(bytes[2 * page + 100]).to.equal(0); // past the end of the file
      expect(bytes[3 * page]).to.equal(0);
      expect([4, 5, 6, 7].map((i) => bytes[i * page])).to.deep.equal([0x77, 0, 0x77, 0]);
      expect(new Uint8Array(from.buffer).every((b) => b === 0)).to.equal(true); // moved away
      expect(mover.stats().faults).to.equal(4);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(path.dirname(file), { recursive: true });
    }
  });

  it('policies check their arguments', () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(4 * page);
    uffd.register(mem);
    expect(() => uffd.handle(mem, {} as never)).to.throw(TypeError, /exactly one/);
    expect(() => uffd.handle(mem, { zero: true, continue: true } as never)).to.throw(TypeError, /exactly one/);
    expect(() => uffd.handle(mem, { copyFrom: Buffer.alloc(page) })).to.throw(RangeError, /fewer/);
    expect(() => uffd.handle(mem, { copyFrom: { fd: -1 } })).to.throw(TypeError, /fd/);
    expect(() => uffd.handle(mem, { moveFrom: [1n] as never })).to.throw(TypeError, /BigUint64Array/);
    expect(() => uffd.handle(mem, { moveFrom: new BigUint64Array(1) })).to.throw(RangeError, /fewer entries/);
    expect(() => uffd.handle(mem, { zero: true }, { unit: 3 * page })).to.throw(RangeError, /power of two/);
  });

  it('the async iterator delivers the events, backpressure loses nothing, and abort ends it', async () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(64 * page);
    uffd.register(mem);
    const controller = new AbortController();
    const seen = new Set<bigint>();
    const touching = testing.touch(mem, { threads: 4, order: 'random' });
    const iterate = (async () => {
      for await (const ev of uffd.events({ signal: controller.signal, highWaterMark: 2 })) {
        if (ev.type !== 'pagefault') continue;
        seen.add(ev.address);
        uffd.zeropage(ev.address, page);
        await new Promise((r) => setImmediate(r)); // a slow consumer
      }
      return 'ended';
    })();
    await touching;
    expect(seen.size).to.equal(64);
    controller.abort();
    expect(await iterate).to.equal('ended');
  });

  it('close() ends the iterators', async () => {
    const uffd = Userfaultfd.open();
    const it = uffd.events();
    const next = it.next();
    uffd.close();
    expect(await next).to.deep.equal({ value: undefined, done: true });
  });

  it('a listener that throws becomes an error event', async () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(page);
    uffd.register(mem);
    const errors: Error[] = [];
    uffd.on('error', (e) => errors.push(e));
    uffd.on('pagefault', (ev) => {
      uffd.zeropage(ev.address, page);
      throw new Error('handler bug');
    });
    await testing.touch(mem);
    expect(errors.map((e) => e.message)).to.deep.equal(['handler bug']);
  });
});
