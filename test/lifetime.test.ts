/**
 * Object lifetime. A Userfaultfd that the program drops (unref()ed, with no policy) is
 * garbage-collected, and its event thread stopped. Memory that native threads use after the call
 * that gave it to them returned stays theirs: a Mapping that testing.touch threads are touching
 * stays mapped until they end, through unmap() and through the teardown of the Worker that made
 * it; the threads do not call into a Worker that is gone; a move table is copied when its policy
 * is added; testing.touch refuses memory that is not there. Each of these was a SIGSEGV of the
 * whole process.
 *
 * Every case runs in a child process (with --expose-gc, so that what is dropped is collected)
 * killed after a hard timeout; the child prints one JSON line with what it saw.
 */
import { expect } from 'chai';
import { childJson } from './helpers/child';
import { skipIf, unavailable } from './helpers/memtypes';

describe('lifetime: a Userfaultfd nobody holds', () => {
  it('a dropped, unref()ed Userfaultfd with a listener is garbage-collected (and its thread stopped)', () => {
    const out = childJson<{ collected: boolean }>(
      `
      const collected = new Promise((resolve) => {
        // Held globally: a registry that is itself collected never calls back.
        globalThis.registry = new FinalizationRegistry(resolve);
        (() => {
          const u = uffd.Userfaultfd.open().unref();
          u.on('pagefault', () => {});
          globalThis.registry.register(u, true);
        })();
      });
      (async () => {
        let done = false;
        collected.then(() => (done = true));
        for (let i = 0; i < 50 && !done; i++) {
          global.gc();
          await new Promise((r) => setTimeout(r, 10));
        }
        console.log(JSON.stringify({ collected: done }));
      })();
    `,
      { nodeArgs: ['--expose-gc'] },
    );
    expect(out.collected).to.equal(true);
  });
});

describe('lifetime: memory that native threads use after the call that gave it returned', () => {
  /** childJson with --expose-gc. */
  function gcChildJson<T>(script: string): T {
    return childJson<T>(script, { timeoutMs: 20000, nodeArgs: ['--expose-gc'] });
  }

  it('a Worker terminated while testing.touch touches its own Mapping: the process lives, the memory is unmapped after', () => {
    // Teardown finalizes the Mapping (munmap) and deletes the thread-safe function under the
    // running thread: it used to die of SIGSEGV in the touch thread.
    const out = gcChildJson<{ code: number; during: boolean; after: boolean }>(`
      const { Worker } = require('node:worker_threads');
      const fs = require('node:fs');
      const w = new Worker(\`
        const { workerData, parentPort } = require('node:worker_threads');
        const lib = require(workerData.pkg);
        const m = lib.Mapping.memfd(16 << 20, { name: 'uffd-lifetime-worker-touch' });
        lib.testing.touch(m, { mode: 'write', threads: 2, durationMs: 3000 });
        parentPort.postMessage('touching');
      \`, { eval: true, workerData: { pkg: ARGS.pkg } });
      w.on('message', async () => {
        // A named memfd mapping: its line in /proc/self/maps cannot be some later mapping's.
        const inMaps = () => fs.readFileSync('/proc/self/maps', 'utf8').includes('memfd:uffd-lifetime-worker-touch');
        await new Promise((r) => setTimeout(r, 100));
        const code = await w.terminate();
        const during = inMaps();
        // The touch runs until its 3 s are up; wait for the unmap (no fixed time: emulators are slow).
        const deadline = Date.now() + 15000;
        while (inMaps() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
        console.log(JSON.stringify({ code, during, after: inMaps() }));
      });
    `);
    expect(out).to.deep.equal({ code: 1, during: true, after: false });
  });

  it("a Worker terminated while testing.touch touches the main thread's memory: the thread ends without the Worker's thread-safe function", () => {
    // The addon stays loaded here (the main thread uses it): what is left is the job's call into
    // a thread-safe function that the Worker's teardown deleted (an abort before).
    const out = gcChildJson<{ code: number; mapped: boolean; written: number }>(`
      const { Worker } = require('node:worker_threads');
      const fs = require('node:fs');
      const page = uffd.pageSize();
      const m = uffd.Mapping.anonymous(256 * page);
      const threads = () => fs.readdirSync('/proc/self/task').length;
      const before = threads();
      const w = new Worker(\`
        const { workerData, parentPort } = require('node:worker_threads');
        const lib = require(workerData.pkg);
        lib.testing.touch(workerData.address, workerData.length, { mode: 'write', durationMs: 800 });
        parentPort.postMessage('touching');
      \`, { eval: true, workerData: { pkg: ARGS.pkg, address: m.address, length: m.length } });
      w.on('message', async () => {
        await new Promise((r) => setTimeout(r, 100));
        const code = await w.terminate();
        // The touch thread ends after its 800 ms and then calls into the gone Worker: wait until
        // it has exited (the Worker's threads and it), then a little more, rather than a fixed time.
        const deadline = Date.now() + 15000;
        while (threads() > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        await new Promise((r) => setTimeout(r, 200));
        const words = new BigUint64Array(m.buffer);
        let written = 0;
        for (let p = 0; p < 256; p++) if (words[(p * page) / 8] === BigInt(p + 1)) written++;
        console.log(JSON.stringify({ code, mapped: m.mapped, written }));
      });
    `);
    expect(out.code).to.equal(1);
    expect(out).to.include({ mapped: true, written: 256 });
  });

  it('a move table is copied when the policy is added: its buffer detached and freed afterwards changes nothing', function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
    // The event thread used to read table[i] through a pointer into the detached buffer: a 64 MiB
    // table is unmapped when freed, so that read died of SIGSEGV.
    const out = gcChildJson<{ detached: boolean; sum: string; faults: number; errors: number }>(`
      (async () => {
        const page = uffd.pageSize();
        const u = uffd.Userfaultfd.open({ features: ['MOVE'] });
        const from = uffd.Mapping.anonymous(page);
        from.bytes().fill(7);
        const to = uffd.Mapping.anonymous(page);
        u.register(to);
        let table = new BigUint64Array(8 << 20);
        table[0] = from.address;
        const policy = u.handle(to, { moveFrom: table });
        structuredClone(table.buffer, { transfer: [table.buffer] });
        const detached = table.buffer.byteLength === 0;
        table = null;
        for (let i = 0; i < 3; i++) { global.gc(); await new Promise((r) => setImmediate(r)); }
        const r = await uffd.testing.touch(to, { mode: 'read' });
        const { faults, errors } = policy.stats();
        u.close();
        console.log(JSON.stringify({ detached, sum: String(r[0].sum), faults, errors }));
      })();
    `);
    expect(out).to.deep.equal({ detached: true, sum: String(0x0707070707070707n), faults: 1, errors: 0 });
  });
  it('unmap() while testing.touch threads write: gone for JS at once, unmapped when they end; mremap refuses meanwhile', () => {
    // unmap() used to munmap under the running threads: SIGSEGV for the whole process.
    const out = gcChildJson<{ busy: string; hidden: boolean; heldWhileTouching: boolean; unmappedAfter: boolean; touched: boolean }>(`
      (async () => {
        const fs = require('node:fs');
        const m = uffd.Mapping.memfd(16 << 20, { name: 'uffd-lifetime-unmap-touch' });
        // A named memfd mapping: its line in /proc/self/maps cannot be some later mapping's.
        const inMaps = () => fs.readFileSync('/proc/self/maps', 'utf8').includes('memfd:uffd-lifetime-unmap-touch');
        const touching = uffd.testing.touch(m, { mode: 'write', threads: 2, durationMs: 500 });
        let busy = 'none';
        try { m.mremap(32 << 20); } catch (e) { busy = e.code; }
        m.unmap();
        const hidden = !m.mapped;
        const held = inMaps();
        const results = await touching;
        console.log(JSON.stringify({ busy, hidden, heldWhileTouching: held, unmappedAfter: !inMaps(), touched: results.every((r) => r.touched > 0) }));
      })();
    `);
    expect(out).to.deep.equal({ busy: 'ERR_UFFD_MAPPING_BUSY', hidden: true, heldWhileTouching: true, unmappedAfter: true, touched: true });
  });

  it('testing.touch refuses memory that is not there: unmapped, PROT_NONE, or a Mapping an option getter unmapped or shrank', () => {
    // Each of these used to start threads on the memory anyway: SIGSEGV for the whole process.
    // The Mapping is now pinned before any option is read, and checked after the last one.
    const out = gcChildJson<Record<string, string>>(`
      (async () => {
        const page = uffd.pageSize();
        const { touch, forkTouch } = uffd.testing;
        const code = async (f) => { try { await f(); return 'none'; } catch (e) { return e.code; } };
        const out = {};
        out.neverMapped = await code(() => touch(BigInt(page), page)); // below mmap_min_addr: never mapped
        const guard = uffd.Mapping.anonymous(3 * page);
        guard.mprotect('', { offset: page, length: page });
        out.protNone = await code(() => touch(guard.address, 3 * page));
        guard.mprotect('r', { offset: page, length: page });
        out.readOnlyRead = await code(() => touch(guard.address, 3 * page));
        out.readOnlyWrite = await code(() => touch(guard.address, 3 * page, { mode: 'write' }));
        const a = uffd.Mapping.anonymous(4 * page);
        out.getterUnmaps = await code(() => touch(a, { get threads() { a.unmap(); return 2; } }));
        out.unmappedAfter = String(a.mapped);
        const b = uffd.Mapping.anonymous(64 * page);
        let once = true;
        // Read by the TS layer first (before the native call pins the Mapping): the shrink lands.
        out.getterShrinks = await code(() => touch(b, { get mode() { if (once) { once = false; b.mremap(page); } return 'read'; } }));
        const c = uffd.Mapping.anonymous(4 * page);
        out.forkTouchGetterUnmaps = await code(() => forkTouch(c, { get stride() { c.unmap(); return page; } }));
        // A raw range is checked too: its child used to die of SIGSEGV (a UBSan report under test/sanitize.sh).
        out.forkTouchNeverMapped = await code(() => forkTouch({ address: BigInt(page), length: page }));
        guard.mprotect('', { offset: page, length: page });
        out.forkTouchProtNone = await code(() => forkTouch({ address: guard.address, length: 3 * page }));
        guard.mprotect('r', { offset: 0, length: page });
        out.forkTouchReadOnlyRead = await code(() => forkTouch({ address: guard.address, length: page }));
        out.forkTouchReadOnlyWrite = await code(() => forkTouch({ address: guard.address, length: page }, { mode: 'write' }));
        const d = uffd.Mapping.anonymous(4 * page);
        out.stillWorks = (await touch(d, { mode: 'write' }))[0].touched === 4 ? 'yes' : 'no';
        console.log(JSON.stringify(out));
      })();
    `);
    expect(out).to.deep.equal({
      neverMapped: 'ERR_UFFD_UNMAPPED',
      protNone: 'ERR_UFFD_UNMAPPED',
      readOnlyRead: 'none',
      readOnlyWrite: 'ERR_UFFD_UNMAPPED',
      getterUnmaps: 'ERR_UFFD_UNMAPPED',
      unmappedAfter: 'false',
      getterShrinks: 'ERR_OUT_OF_RANGE',
      forkTouchGetterUnmaps: 'ERR_UFFD_UNMAPPED',
      forkTouchNeverMapped: 'ERR_UFFD_UNMAPPED',
      forkTouchProtNone: 'ERR_UFFD_UNMAPPED',
      forkTouchReadOnlyRead: 'none',
      forkTouchReadOnlyWrite: 'ERR_UFFD_UNMAPPED',
      stillWorks: 'yes',
    });
  });
});
