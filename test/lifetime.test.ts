/**
 * Lifetime of the fault engine: close() with faults pending, Workers terminated mid-fault, several
 * Workers at once, ref()/unref() of the event thread, the deadlock guard (MISSING, WP and MINOR
 * faults, in the main thread and in a Worker), events() backpressure, the Worker pattern, and
 * environment teardown with the event thread running.
 *
 * Every case that could leave a thread asleep in a page fault (and so hang) runs in a child
 * process killed after a hard timeout; the child prints one JSON line with what it saw.
 */
import { expect } from 'chai';
import { childJson, expectClean, runChild, spawnChild } from './helpers/child';
import { scaled } from './helpers/speed';
import { MEMTYPES, skipIf, unavailable } from './helpers/memtypes';

describe('lifetime: close() with faults pending', () => {
  it('wakes faulting threads nobody reads for: they fault normally and the touch ends', () => {
    const out = childJson<{ pending: number; settledBefore: boolean; touched: number[]; sum: string }>(`
      (async () => {
        const page = uffd.pageSize();
        const u = uffd.Userfaultfd.open();
        const mem = uffd.Mapping.anonymous(8 * page);
        u.register(mem);
        let settled = false;
        const touch = uffd.testing.touch(mem, { threads: 2, mode: 'read', partition: false }).then((r) => { settled = true; return r; });
        // Reading the faults does not resolve them: both threads stay asleep in the kernel.
        const pending = [];
        const until = Date.now() + 5000;
        while (pending.length < 2 && Date.now() < until) pending.push(...u.readEvents({ timeoutMs: 50 }));
        await new Promise((r) => setTimeout(r, 100));
        const settledBefore = settled;
        u.close();
        const res = await touch;
        console.log(JSON.stringify({ pending: pending.length, settledBefore, touched: res.map((r) => r.touched), sum: String(res[0].sum + res[1].sum) }));
      })();
    `);
    expect(out.pending).to.equal(2);
    expect(out.settledBefore).to.equal(false);
    expect(out.touched).to.deep.equal([8, 8]);
    expect(out.sum).to.equal('0'); // unregistered by the release: plain zero pages
  });

  it('stops the event thread of a listener that never resolves, and wakes its faults', () => {
    const out = childJson<{ seen: number; settledBefore: boolean; touched: number[]; after: number }>(`
      (async () => {
        const page = uffd.pageSize();
        const u = uffd.Userfaultfd.open();
        const mem = uffd.Mapping.anonymous(16 * page);
        u.register(mem);
        let seen = 0;
        let after = 0;
        let closed = false;
        u.on('pagefault', () => { if (closed) after++; else seen++; });
        let settled = false;
        const touch = uffd.testing.touch(mem, { threads: 4, mode: 'write' }).then((r) => { settled = true; return r; });
        while (seen < 4) await new Promise((r) => setTimeout(r, 10));
        await new Promise((r) => setTimeout(r, 100));
        const settledBefore = settled;
        u.close();
        closed = true;
        const res = await touch;
        await new Promise((r) => setTimeout(r, 50));
        console.log(JSON.stringify({ seen, settledBefore, touched: res.map((r) => r.touched), after }));
      })();
    `);
    expect(out.seen).to.equal(4);
    expect(out.settledBefore).to.equal(false);
    expect(out.touched).to.deep.equal([4, 4, 4, 4]);
    expect(out.after, 'events delivered after close()').to.equal(0);
  });

  it('while faults stream in: no event reaches the listener after it (whose copy would throw ERR_UFFD_CLOSED)', () => {
    // No 'error' listener: a handler failing on the closed descriptor would crash the child.
    const out = childJson<{ served: number; after: number; touched: number[] }>(`
      (async () => {
        const page = uffd.pageSize();
        const pages = 8192;
        const u = uffd.Userfaultfd.open();
        const mem = uffd.Mapping.anonymous(pages * page);
        u.register(mem);
        const src = Buffer.alloc(page, 1);
        let served = 0, after = 0, closed = false;
        u.on('pagefault', (ev) => {
          if (closed) after++;
          u.copy(ev.address, src);
          served++;
        });
        const touch = uffd.testing.touch(mem, { threads: 2, mode: 'read', order: 'random', partition: false });
        while (served < 100) await new Promise((r) => setImmediate(r));
        // Keep the JS thread busy so that batches queue up for it, then close with them queued.
        const until = Date.now() + 20;
        while (Date.now() < until);
        u.close();
        closed = true;
        const res = await touch;
        await new Promise((r) => setTimeout(r, 50));
        console.log(JSON.stringify({ served, after, touched: res.map((r) => r.touched) }));
      })();
    `);
    expect(out.after, 'events delivered after close()').to.equal(0);
    expect(out.touched).to.deep.equal([8192, 8192]);
  });

  it('works when called from inside the pagefault listener', () => {
    const out = childJson<{ seen: number; touched: number[]; closed: boolean }>(`
      (async () => {
        const page = uffd.pageSize();
        const u = uffd.Userfaultfd.open();
        const mem = uffd.Mapping.anonymous(8 * page);
        u.register(mem);
        let seen = 0;
        u.on('pagefault', () => { seen++; u.close(); });
        const res = await uffd.testing.touch(mem, { threads: 2, mode: 'read', partition: false });
        console.log(JSON.stringify({ seen, touched: res.map((r) => r.touched), closed: u.closed }));
      })();
    `);
    expect(out.seen).to.be.at.least(1);
    expect(out.touched).to.deep.equal([8, 8]);
    expect(out.closed).to.equal(true);
  });

  it('wakes a writer waiting on a write-protected page; its write then lands', function () {
    skipIf(this, unavailable(MEMTYPES[0], 'PAGEFAULT_FLAG_WP'));
    const out = childJson<{ wp: boolean; settledBefore: boolean; words: string[] }>(`
      (async () => {
        const page = uffd.pageSize();
        const u = uffd.Userfaultfd.open();
        const mem = uffd.Mapping.anonymous(4 * page);
        new Uint8Array(mem.buffer).fill(0xaa); // present before registering
        u.register(mem, { wp: true });
        u.writeProtect(mem, true);
        let settled = false;
        const touch = uffd.testing.touch(mem, { threads: 1, mode: 'write' }).then((r) => { settled = true; return r; });
        let ev = [];
        const until = Date.now() + 5000;
        while (ev.length === 0 && Date.now() < until) ev = u.readEvents({ timeoutMs: 50 });
        await new Promise((r) => setTimeout(r, 50));
        const settledBefore = settled;
        u.close();
        await touch;
        const view = new DataView(mem.buffer);
        const words = [0, 1, 2, 3].map((i) => '0x' + view.getBigUint64(i * page, true).toString(16));
        console.log(JSON.stringify({ wp: ev.length > 0 && ev[0].flags.wp, settledBefore, words }));
      })();
    `);
    expect(out.wp).to.equal(true);
    expect(out.settledBefore).to.equal(false);
    expect(out.words).to.deep.equal(['0x1', '0x2', '0x3', '0x4']); // 'write' stores unit index + 1
  });
});

describe('lifetime: Workers', () => {
  it('a Worker serving faults is terminated mid-fault: no crash, and close() then releases the threads', () => {
    const out = childJson<{ stuck: number[]; exitCode: number; settledBefore: boolean; touched: number[]; served: boolean; holes: boolean }>(`
      const { Worker } = require('node:worker_threads');
      (async () => {
        const page = uffd.pageSize();
        const pages = 16;
        const u = uffd.Userfaultfd.open();
        const mem = uffd.Mapping.anonymous(pages * page);
        u.register(mem);
        const stop = new Int32Array(new SharedArrayBuffer(4));
        // The Worker resolves the first half of the pages and leaves faults on the second half pending.
        const w = new Worker(\`
          const { workerData, parentPort } = require('node:worker_threads');
          const { openShared, serveFaults, pageSize } = require(workerData.pkg);
          const u = openShared(workerData.uffd);
          const page = BigInt(pageSize());
          const src = Buffer.alloc(pageSize(), 0x5a);
          serveFaults(u, (ev) => {
            if (ev.type !== 'pagefault') return;
            const index = Number((ev.address - workerData.base) / page);
            if (index < workerData.pages / 2) u.copy(ev.address - (ev.address % page), src);
            else parentPort.postMessage(index);
          }, { stop: workerData.stop, timeoutMs: 20 });
        \`, { eval: true, workerData: { pkg: ARGS.pkg, uffd: uffd.shareUffd(u), stop, base: mem.address, pages } });
        const stuck = [];
        const twoStuck = new Promise((resolve) => w.on('message', (i) => { stuck.push(i); if (stuck.length === 2) resolve(); }));
        let settled = false;
        const touch = uffd.testing.touch(mem, { threads: 2, mode: 'read' }).then((r) => { settled = true; return r; });
        await twoStuck;
        const exitCode = await w.terminate();
        await new Promise((r) => setTimeout(r, 100));
        const settledBefore = settled;
        u.close();
        const res = await touch;
        const bytes = new Uint8Array(mem.buffer);
        const half = (pages / 2) * page;
        console.log(JSON.stringify({
          stuck: stuck.sort((a, b) => a - b), exitCode, settledBefore, touched: res.map((r) => r.touched),
          served: bytes.subarray(0, half).every((b) => b === 0x5a),
          holes: bytes.subarray(half).every((b) => b === 0),
        }));
      })();
    `);
    // Thread 0 touches even pages, thread 1 odd ones: each stops at its first page of the second half.
    expect(out.stuck).to.deep.equal([8, 9]);
    expect(out.exitCode).to.equal(1); // what terminate() reports
    expect(out.settledBefore, 'threads were still waiting after the Worker was gone').to.equal(false);
    expect(out.touched).to.deep.equal([8, 8]);
    expect(out.served).to.equal(true);
    expect(out.holes).to.equal(true);
  });

  it('five Workers each open, register, serve their own faults (policy + listener), verify and close, at once', () => {
    interface WorkerResult {
      id: number;
      rounds: number;
      ok: boolean;
      sums: boolean;
      js: number;
      native: number;
    }
    const out = childJson<{ results: WorkerResult[]; codes: number[] }>(
      `
      const { Worker } = require('node:worker_threads');
      const code = \`
        const { workerData, parentPort } = require('node:worker_threads');
        const lib = require(workerData.pkg);
        (async () => {
          const id = workerData.id;
          const page = lib.pageSize();
          const pages = 64;
          const half = (pages / 2) * page;
          let ok = true, sums = true, js = 0, native = 0;
          for (let round = 0; round < workerData.rounds; round++) {
            const u = lib.Userfaultfd.open();
            const mem = lib.Mapping.anonymous(pages * page);
            u.register(mem);
            // Each Worker's and round's own bytes, so that any cross-talk shows.
            const src = Buffer.alloc(pages * page);
            for (let i = 0; i < src.length; i += 4) src.writeUInt32LE((id * 0x01000193 + round * 0x9e3779b9 + i * 2654435761) >>> 0, i);
            let expected = 0n;
            for (let p = 0; p < pages; p++) expected += src.readBigUInt64LE(p * page);
            const policy = u.handle({ address: mem.address, length: half }, { copyFrom: src.subarray(0, half) });
            u.on('pagefault', (ev) => {
              const off = Number(ev.address - mem.address);
              u.copy(ev.address, src.subarray(off, off + page));
              js++;
            });
            const res = await lib.testing.touch(mem, { threads: 2, mode: 'read' });
            const sum = res.reduce((s, r) => s + r.sum, 0n);
            sums = sums && (sum & 0xffffffffffffffffn) === (expected & 0xffffffffffffffffn);
            ok = ok && Buffer.compare(Buffer.from(mem.buffer), src) === 0;
            native += policy.stats().faults;
            u.close();
            mem.unmap();
          }
          parentPort.postMessage({ id, rounds: workerData.rounds, ok, sums, js, native });
        })();
      \`;
      (async () => {
        const results = [];
        const codes = await Promise.all([0, 1, 2, 3, 4].map((id) => new Promise((resolve, reject) => {
          const w = new Worker(code, { eval: true, workerData: { pkg: ARGS.pkg, id, rounds: 3 } });
          w.on('message', (m) => results.push(m));
          w.on('error', reject);
          w.on('exit', resolve);
        })));
        console.log(JSON.stringify({ results: results.sort((a, b) => a.id - b.id), codes }));
      })();
    `,
      { timeoutMs: 20000 },
    );
    expect(out.codes).to.deep.equal([0, 0, 0, 0, 0]);
    expect(out.results.map((r) => r.id)).to.deep.equal([0, 1, 2, 3, 4]);
    for (const r of out.results) {
      expect(r, `worker ${r.id}`).to.deep.include({ ok: true, sums: true });
      // One read per page, one fault per page: half served natively, half by the listener.
      expect(r.native, `worker ${r.id} native`).to.equal(r.rounds * 32);
      expect(r.js, `worker ${r.id} js`).to.equal(r.rounds * 32);
    }
  });
});

describe('lifetime: ref() and unref()', () => {
  const cases: { title: string; setup: string; alive: boolean }[] = [
    { title: 'an idle listener with unref() lets the process exit', setup: `u.on('pagefault', () => {}); u.unref();`, alive: false },
    { title: 'unref() before the first listener holds too', setup: `u.unref(); u.on('pagefault', () => {});`, alive: false },
    { title: 'an unref()ed events() iterator lets the process exit', setup: `u.unref(); (async () => { for await (const ev of u.events()) void ev; })();`, alive: false },
    { title: 'an unref()ed uffd serving through a native policy lets the process exit', setup: `u.handle(mem, { zero: true }); u.unref();`, alive: false },
    { title: 'an idle listener keeps the process alive', setup: `u.on('pagefault', () => {});`, alive: true },
    { title: 'ref() after unref() keeps it alive again', setup: `u.on('pagefault', () => {}); u.unref(); u.ref();`, alive: true },
  ];
  for (const c of cases) {
    it(c.title, async () => {
      // Kept alive: an unref()ed timer, which cannot keep the loop alive itself, fires and
      // shows it still turning; the child is then killed. Not kept alive: it exits by itself
      // right after 'ready', long before the timer or the limit.
      const r = await spawnChild(
        `
        const u = uffd.Userfaultfd.open();
        const mem = uffd.Mapping.anonymous(4 * uffd.pageSize());
        u.register(mem);
        ${c.setup}
        console.log('ready');
        setTimeout(() => console.log('alive'), 500).unref();
      `,
        { timeoutMs: 10000, killAfter: { line: 'alive', ms: 100 } },
      );
      if (c.alive) {
        expect(r.stdout.trim(), r.stderr).to.equal('ready\nalive');
        expect(r.timedOut, 'the child should have been kept alive until killed').to.equal(true);
      } else {
        expect(r.stdout.trim(), r.stderr).to.equal('ready');
        expectClean(r);
      }
    });
  }

  it('an unref()ed uffd still serves faults while something else keeps the process alive', () => {
    const out = childJson<{ served: number; sum: string }>(`
      const page = uffd.pageSize();
      const u = uffd.Userfaultfd.open();
      const mem = uffd.Mapping.anonymous(8 * page);
      u.register(mem);
      u.unref();
      let served = 0;
      const src = Buffer.alloc(page);
      u.on('pagefault', (ev) => { src.writeBigUInt64LE(BigInt(++served), 0); u.copy(ev.address, src); });
      // The pending touch (its own thread-safe function) is what keeps the loop alive.
      uffd.testing.touch(mem, { mode: 'read' }).then((r) => console.log(JSON.stringify({ served, sum: String(r[0].sum) })));
    `);
    expect(out.served).to.equal(8);
    expect(out.sum).to.equal(String((8 * 9) / 2));
  });
});

describe('lifetime: deadlock guard', () => {
  for (const type of MEMTYPES) {
    it(`[${type.name}] a fault raised by the JS thread itself is zero-filled and reported as ERR_UFFD_DEADLOCK_GUARD`, function () {
      skipIf(this, unavailable(type, type.missingFeature));
      interface GuardError {
        name: string;
        code: string;
        address: string;
        threadId: number;
      }
      const out = childJson<{ read: number; written: number; neighbour: number; faults: number; errors: GuardError[]; pid: number; base: string; unit: number }>(
        `
        const { MEMTYPES } = require(ARGS.memtypes);
        const type = MEMTYPES.find((t) => t.name === ARGS.type);
        const u = uffd.Userfaultfd.open();
        const mem = type.create(2);
        u.register(mem);
        let faults = 0;
        const errors = [];
        u.on('pagefault', () => faults++);
        u.on('error', (err) => errors.push({ name: err.name, code: err.code, address: '0x' + err.address.toString(16), threadId: err.threadId }));
        const v = new Uint8Array(mem.buffer);
        const read = v[100];           // a read fault on the first unit
        v[type.unit + 5] = 7;          // a write fault on the second
        const written = v[type.unit + 5];
        const neighbour = v[type.unit + 6];
        // Reports reach JS after the faults are resolved: wait for both, then a little longer for
        // any event that should not come.
        waitFor(() => errors.length >= 2).then(() => setTimeout(() => {
          u.close();
          console.log(JSON.stringify({ read, written, neighbour, faults, errors, pid: process.pid, base: '0x' + mem.address.toString(16), unit: type.unit }));
        }, 200));
      `,
        { args: { type: type.name }, timeoutMs: 10000 },
      );
      expect(out.read).to.equal(0);
      expect(out.written).to.equal(7);
      expect(out.neighbour).to.equal(0);
      expect(out.faults, 'the guarded faults are not handed to the listener').to.equal(0);
      expect(out.errors).to.have.length(2);
      const base = BigInt(out.base);
      const firstAddresses = [base, base + BigInt(out.unit)];
      out.errors.forEach((e, i) => {
        expect(e).to.deep.include({ name: 'FaultError', code: 'ERR_UFFD_DEADLOCK_GUARD', threadId: out.pid });
        // The reported address lies in the unit that faulted.
        const at = BigInt(e.address);
        expect(at >= firstAddresses[i] && at < firstAddresses[i] + BigInt(out.unit), `error ${i} at ${e.address}`).to.equal(true);
      });
    });
  }

  for (const type of MEMTYPES) {
    it(`[${type.name}] a write of the JS thread to a write-protected page is un-protected; the write lands, the rest is kept`, function () {
      skipIf(this, unavailable(type, type.wpFeature));
      const out = childJson<{ written: number; kept: boolean; faults: number; errors: { code: string; ioctl: string }[] }>(
        `
        const { MEMTYPES } = require(ARGS.memtypes);
        const type = MEMTYPES.find((t) => t.name === ARGS.type);
        const u = uffd.Userfaultfd.open();
        const mem = type.create(2);
        const v = new Uint8Array(mem.buffer);
        v.fill(9); // present before registering
        u.register(mem, { wp: true });
        u.writeProtect(mem, true);
        let faults = 0;
        const errors = [];
        u.on('pagefault', () => faults++);
        u.on('error', (err) => errors.push({ code: err.code, ioctl: err.ioctl }));
        v[type.unit + 10] = 42;
        const written = v[type.unit + 10];
        v[type.unit + 10] = 9;
        const kept = v.every((b) => b === 9);
        waitFor(() => errors.length > 0).then(() => setTimeout(() => {
          u.close();
          console.log(JSON.stringify({ written, kept, faults, errors }));
        }, 200));
      `,
        { args: { type: type.name }, timeoutMs: 10000 },
      );
      expect(out.written).to.equal(42);
      expect(out.kept).to.equal(true);
      expect(out.faults).to.equal(0);
      expect(out.errors).to.deep.equal([{ code: 'ERR_UFFD_DEADLOCK_GUARD', ioctl: 'UFFDIO_WRITEPROTECT' }]);
    });
  }

  for (const type of MEMTYPES.filter((t) => t.minorFeature !== undefined)) {
    it(`[${type.name}] a MINOR fault of the JS thread is continued: it reads the page cache's bytes`, function () {
      skipIf(this, unavailable(type, type.minorFeature));
      const out = childJson<{ read: number; faults: number; errors: { code: string; ioctl: string }[] }>(
        `
        const { MEMTYPES } = require(ARGS.memtypes);
        const type = MEMTYPES.find((t) => t.name === ARGS.type);
        const u = uffd.Userfaultfd.open();
        const mem = type.create(2);
        const alias = mem.alias();
        new Uint8Array(alias.buffer).fill(5); // in the page cache, not mapped in mem
        u.register(mem, { minor: true });
        let faults = 0;
        const errors = [];
        u.on('pagefault', () => faults++);
        u.on('error', (err) => errors.push({ code: err.code, ioctl: err.ioctl }));
        const read = new Uint8Array(mem.buffer)[type.unit + 3];
        waitFor(() => errors.length > 0).then(() => setTimeout(() => {
          u.close();
          console.log(JSON.stringify({ read, faults, errors }));
        }, 200));
      `,
        { args: { type: type.name }, timeoutMs: 10000 },
      );
      expect(out.read).to.equal(5);
      expect(out.faults).to.equal(0);
      expect(out.errors).to.deep.equal([{ code: 'ERR_UFFD_DEADLOCK_GUARD', ioctl: 'UFFDIO_CONTINUE' }]);
    });
  }

  it("in a Worker, the guard watches the Worker's own thread", () => {
    const out = childJson<{ read: number; faults: number; errors: { code: string; threadId: number }[]; pid: number }>(`
      const { Worker } = require('node:worker_threads');
      const w = new Worker(\`
        const { workerData, parentPort } = require('node:worker_threads');
        const lib = require(workerData.pkg);
        const u = lib.Userfaultfd.open();
        const mem = lib.Mapping.anonymous(2 * lib.pageSize());
        u.register(mem);
        let faults = 0;
        const errors = [];
        u.on('pagefault', () => faults++);
        u.on('error', (err) => errors.push({ code: err.code, threadId: err.threadId }));
        const read = new Uint8Array(mem.buffer)[0];
        // The Worker has no waitFor: the same wait, for the report, bounded by the child's limit.
        const done = () => { u.close(); parentPort.postMessage({ read, faults, errors }); };
        const poll = () => (errors.length > 0 ? setTimeout(done, 100) : setTimeout(poll, 2));
        poll();
      \`, { eval: true, workerData: { pkg: ARGS.pkg } });
      w.on('message', (m) => console.log(JSON.stringify({ ...m, pid: process.pid })));
    `);
    expect(out.read).to.equal(0);
    expect(out.faults).to.equal(0);
    expect(out.errors).to.have.length(1);
    expect(out.errors[0].code).to.equal('ERR_UFFD_DEADLOCK_GUARD');
    expect(out.errors[0].threadId, "the Worker's thread, not the main thread").to.be.a('number').and.not.equal(out.pid);
  });

  it('without the guard the same fault hangs the JS thread (the child is killed by the timeout)', async () => {
    // A fault the guard resolved would print at once; a hang prints nothing more. The wait after
    // 'faulting' scales with the machine's speed, so a slow machine is not mistaken for a hang.
    const r = await spawnChild(
      `
      const u = uffd.Userfaultfd.open({ deadlockGuard: false });
      const mem = uffd.Mapping.anonymous(uffd.pageSize());
      u.register(mem);
      u.on('pagefault', () => {});
      console.log('faulting');
      console.log(new Uint8Array(mem.buffer)[0]);
    `,
      { timeoutMs: 30000, killAfter: { line: 'faulting', ms: scaled(1000) } },
    );
    expect(r.stdout.trim()).to.equal('faulting');
    expect(r.timedOut).to.equal(true);
  });
});

describe('lifetime: events() backpressure', () => {
  it('while the queue is full, the deadlock guard still resolves a fault of the JS thread', () => {
    const out = childJson<{ read: number; errors: string[]; touched: number[] }>(`
      (async () => {
        const page = uffd.pageSize();
        const u = uffd.Userfaultfd.open();
        const mem = uffd.Mapping.anonymous(16 * page);
        const self = uffd.Mapping.anonymous(2 * page);
        u.register(mem);
        u.register(self);
        const errors = [];
        u.on('error', (err) => errors.push(err.code));
        u.events({ highWaterMark: 2 }); // never consumed: 4 faults fill it and pause the event thread
        const touch = uffd.testing.touch(mem, { threads: 4 });
        await new Promise((r) => setTimeout(r, 200));
        const read = new Uint8Array(self.buffer)[0]; // only the guard can resolve this
        await waitFor(() => errors.length > 0);
        u.close();
        const res = await touch;
        console.log(JSON.stringify({ read, errors, touched: res.map((r) => r.touched) }));
      })();
    `);
    expect(out.read).to.equal(0);
    expect(out.errors).to.deep.equal(['ERR_UFFD_DEADLOCK_GUARD']);
    expect(out.touched).to.deep.equal([4, 4, 4, 4]);
  });

  it('while the queue is full, native policies keep resolving; the held events then arrive, none lost', () => {
    const out = childJson<{ policySum: string; expected: string; events: number; distinct: number; touched: number[] }>(`
      (async () => {
        const page = uffd.pageSize();
        const u = uffd.Userfaultfd.open();
        const js = uffd.Mapping.anonymous(64 * page);
        const pol = uffd.Mapping.anonymous(64 * page);
        u.register(js);
        u.register(pol);
        const src = Buffer.alloc(64 * page);
        let expected = 0n;
        for (let p = 0; p < 64; p++) { src.writeBigUInt64LE(BigInt(p * 11 + 1), p * page); expected += BigInt(p * 11 + 1); }
        u.handle(pol, { copyFrom: src });
        const it = u.events({ highWaterMark: 2 });
        const jsTouch = uffd.testing.touch(js, { threads: 4 });
        await new Promise((r) => setTimeout(r, 100));
        // JS is taking no events now; the policy range is served anyway.
        const res = await uffd.testing.touch(pol, { threads: 2, mode: 'read' });
        const policySum = res[0].sum + res[1].sum;
        // Drain: every page of the JS range faults exactly once, in some order.
        const pages = new Set();
        let events = 0;
        for await (const ev of it) {
          events++;
          pages.add(ev.address);
          u.zeropage(ev.address, page);
          if (pages.size === 64) break;
        }
        const touched = (await jsTouch).map((r) => r.touched);
        u.close();
        console.log(JSON.stringify({ policySum: String(policySum), expected: String(expected), events, distinct: pages.size, touched }));
      })();
    `);
    expect(out.policySum).to.equal(out.expected);
    expect(out.distinct).to.equal(64);
    expect(out.events).to.equal(64);
    expect(out.touched).to.deep.equal([16, 16, 16, 16]);
  });
});

describe('lifetime: the Worker pattern (a Worker serves, the main thread touches the buffer directly)', () => {
  for (const type of MEMTYPES) {
    it(`[${type.name}] every byte the main thread reads and writes is right`, function () {
      skipIf(this, unavailable(type, type.missingFeature));
      const out = childJson<{ badUnits: number[]; faults: number; served: number; wrongThread: number; units: number; code: number }>(
        `
        const { Worker } = require('node:worker_threads');
        const { MEMTYPES } = require(ARGS.memtypes);
        const type = MEMTYPES.find((t) => t.name === ARGS.type);
        const unit = type.unit;
        const units = type.hugetlb ? 4 : 64;
        const pattern = (index) => {
          const b = Buffer.alloc(unit);
          for (let i = 0; i < unit; i += 4) b.writeUInt32LE(((index + 1) * 2246822519 + i * 3266489917) >>> 0, i);
          return b;
        };
        const u = uffd.Userfaultfd.open();
        const mem = type.create(units);
        u.register(mem);
        const stop = new Int32Array(new SharedArrayBuffer(4));
        const w = new Worker(\`
          const { workerData, parentPort } = require('node:worker_threads');
          const { openShared, serveFaults } = require(workerData.pkg);
          const unit = workerData.unit;
          const pattern = \${pattern.toString()};
          const u = openShared(workerData.uffd);
          let faults = 0, wrongThread = 0;
          const served = serveFaults(u, (ev) => {
            if (ev.type !== 'pagefault') return;
            faults++;
            if (ev.threadId !== workerData.mainTid) wrongThread++;
            const at = ev.address - (ev.address % BigInt(unit));
            u.copy(at, pattern(Number((at - workerData.base) / BigInt(unit))));
          }, { stop: workerData.stop });
          u.close();
          parentPort.postMessage({ faults, served, wrongThread });
        \`, { eval: true, workerData: { pkg: ARGS.pkg, uffd: uffd.shareUffd(u), stop, base: mem.address, unit, mainTid: process.pid } });
        let result;
        w.on('message', (m) => { result = m; });
        w.on('online', () => {
          // The main thread faults on every unit; the Worker fills it while this thread sleeps.
          const bytes = new Uint8Array(mem.buffer);
          const badUnits = [];
          for (let i = 0; i < units; i++) {
            const want = pattern(i);
            const at = i * unit;
            if (i % 2 === 1) {
              // Odd units: written first (a write fault), then the rest must still be the pattern.
              bytes[at + 3] = 0xee;
              new DataView(mem.buffer).setFloat64(at + unit - 8, 1.5, true);
              want[3] = 0xee;
              want.writeDoubleLE(1.5, unit - 8);
            }
            if (Buffer.compare(Buffer.from(mem.buffer, at, unit), want) !== 0) badUnits.push(i);
          }
          Atomics.store(stop, 0, 1);
          w.on('exit', (code) => {
            u.close();
            console.log(JSON.stringify({ badUnits, units, code, ...result }));
          });
        });
      `,
        { args: { type: type.name } },
      );
      expect(out.code).to.equal(0);
      expect(out.badUnits).to.deep.equal([]);
      expect(out.faults, 'one fault per unit').to.equal(out.units);
      expect(out.served).to.equal(out.units);
      expect(out.wrongThread, 'every fault reports the main thread as its thread').to.equal(0);
    });
  }
});

describe('lifetime: environment teardown with the event thread running', () => {
  it('Workers that start a listener and leave without close() (process.exit, terminate, unref) do not crash or hang the process', () => {
    const out = childJson<{ codes: number[]; after: string }>(`
      const { Worker } = require('node:worker_threads');
      const body = (ending) => \`
        const { workerData, parentPort } = require('node:worker_threads');
        const lib = require(workerData.pkg);
        const u = lib.Userfaultfd.open();
        const mem = lib.Mapping.anonymous(16 * lib.pageSize());
        u.register(mem);
        u.on('pagefault', (ev) => u.zeropage(ev.address, lib.pageSize()));
        u.handle({ address: mem.address, length: 8 * lib.pageSize() }, { zero: true });
        lib.testing.touch({ address: mem.address, length: 16 * lib.pageSize() }, { threads: 2 }).then(() => {
          parentPort.postMessage('served');
          \${ending}
        });
      \`;
      const run = (ending, terminate) => new Promise((resolve, reject) => {
        const w = new Worker(body(ending), { eval: true, workerData: { pkg: ARGS.pkg } });
        w.on('error', reject);
        w.on('exit', resolve);
        w.on('message', () => { if (terminate) w.terminate(); });
      });
      (async () => {
        const codes = [];
        for (let i = 0; i < 3; i++) {
          codes.push(await run('process.exit(0);', false));
          codes.push(await run('', true));
          codes.push(await run('u.unref();', false));
        }
        // The addon still works in this thread afterwards.
        const u = uffd.Userfaultfd.open();
        const mem = uffd.Mapping.anonymous(4 * uffd.pageSize());
        u.register(mem);
        u.handle(mem, { zero: true });
        const r = await uffd.testing.touch(mem, { threads: 2 });
        u.close();
        console.log(JSON.stringify({ codes, after: String(r[0].sum + r[1].sum) }));
      })();
    `);
    expect(out.codes).to.deep.equal([0, 1, 0, 0, 1, 0, 0, 1, 0]);
    expect(out.after).to.equal('0');
  });

  it('a Worker whose listener throws (no error listener) dies of it; its teardown releases the faults it served', () => {
    const out = childJson<{ err: string; code: number; touched: number[] }>(`
      const { Worker } = require('node:worker_threads');
      (async () => {
        const page = uffd.pageSize();
        // Registered only once the Worker has started (seconds under emulation): without
        // MADV_NOHUGEPAGE, khugepaged could fill it with zeros first, and no fault would come.
        const mem = uffd.Mapping.anonymous(64 * page, { hugepage: false });
        const w = new Worker(\`
          const { workerData, parentPort } = require('node:worker_threads');
          const lib = require(workerData.pkg);
          const u = lib.Userfaultfd.open();
          u.register({ address: workerData.address, length: workerData.length });
          let n = 0;
          u.on('pagefault', (ev) => {
            if (++n === 5) throw new Error('boom');
            u.zeropage(ev.address, lib.pageSize());
          });
          parentPort.postMessage('ready');
        \`, { eval: true, workerData: { pkg: ARGS.pkg, address: mem.address, length: 64 * page } });
        let err;
        w.on('error', (e) => { err = e.message; });
        await new Promise((r) => w.once('message', r));
        // Populated pages would raise no fault, and the Worker would never die: say so at once.
        const fs = require('node:fs');
        const pagemap = Buffer.alloc(64 * 8);
        const pm = fs.openSync('/proc/self/pagemap', 'r');
        fs.readSync(pm, pagemap, 0, pagemap.length, (Number(mem.address) / page) * 8);
        fs.closeSync(pm);
        for (let i = 0; i < 64; i++) if (pagemap.readBigUInt64LE(i * 8) >> 63n) throw new Error('page ' + i + ' was present before the touch');
        const touch = uffd.testing.touch(mem, { threads: 2 });
        const code = await new Promise((r) => w.on('exit', r));
        const res = await touch;
        console.log(JSON.stringify({ err, code, touched: res.map((r) => r.touched) }));
      })();
    `);
    expect(out.err).to.equal('boom');
    expect(out.code).to.equal(1);
    expect(out.touched).to.deep.equal([32, 32]);
  });

  it('process.exit() with the event thread running and faults pending exits cleanly', () => {
    const r = runChild(
      `
      const page = uffd.pageSize();
      const u = uffd.Userfaultfd.open();
      const mem = uffd.Mapping.anonymous(64 * page);
      u.register(mem);
      let seen = 0;
      u.on('pagefault', () => {
        if (++seen === 2) setTimeout(() => { console.log('exiting'); process.exit(0); }, 20);
      });
      uffd.testing.touch(mem, { threads: 2 });
    `,
      { timeoutMs: 10000 },
    );
    expectClean(r);
    expect(r.stdout.trim()).to.equal('exiting');
  });

  it('a Worker whose uffd serves the main thread\'s memory is terminated with faults in flight: its teardown releases them', () => {
    const out = childJson<{ seen: number; touched: number[]; intact: boolean }>(`
      const { Worker } = require('node:worker_threads');
      (async () => {
        const page = uffd.pageSize();
        const pages = 4096;
        // No huge pages: see the test above (khugepaged before the Worker registers).
        const mem = uffd.Mapping.anonymous(pages * page, { hugepage: false });
        // The Worker opens its own uffd over the main thread's mapping and serves it slowly from its
        // event thread, so batches are still queued for it when it goes.
        const w = new Worker(\`
          const { workerData, parentPort } = require('node:worker_threads');
          const lib = require(workerData.pkg);
          const page = lib.pageSize();
          const u = lib.Userfaultfd.open();
          u.register({ address: workerData.address, length: workerData.length });
          const src = Buffer.alloc(page, 0x33);
          let seen = 0;
          u.on('pagefault', (ev) => {
            const until = Date.now() + 1;
            while (Date.now() < until);
            try { u.copy(ev.address, src); } catch (err) { if (err.code !== 'EEXIST') throw err; }
            if (++seen === 64) parentPort.postMessage(seen);
          });
          parentPort.postMessage('ready');
        \`, { eval: true, workerData: { pkg: ARGS.pkg, address: mem.address, length: pages * page } });
        let seen = 0;
        const started = new Promise((resolve) => w.on('message', (m) => { if (m === 'ready') resolve(); else { seen = m; w.terminate(); } }));
        const exited = new Promise((resolve) => w.on('exit', resolve));
        await started;
        const res = await uffd.testing.touch(mem, { threads: 4, mode: 'read', order: 'random', partition: false });
        await exited;
        const bytes = new Uint8Array(mem.buffer);
        let intact = true;
        for (let p = 0; p < pages; p++) {
          const b = bytes[p * page];
          if (b !== 0 && b !== 0x33) intact = false;
        }
        console.log(JSON.stringify({ seen, touched: res.map((r) => r.touched), intact }));
      })();
    `);
    expect(out.seen).to.equal(64);
    expect(out.touched).to.deep.equal([4096, 4096, 4096, 4096]);
    expect(out.intact).to.equal(true);
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
