/**
 * Userfaultfds and Worker threads: the Worker pattern (a Worker serves the faults with
 * serveFaults() over a descriptor that shareUffd() and openShared() handed it, while the main
 * thread touches the memory directly), such a Worker terminated in the middle of a fault, and
 * several Workers each opening, serving and closing their own userfaultfd at once.
 *
 * Every case runs in a child process killed after a hard timeout: a thread faulting on memory a
 * Worker serves sleeps until the Worker resolves its fault, so a Worker that fails to hangs it.
 * The child prints one JSON line with what it saw.
 */
import { expect } from 'chai';
import { childJson } from './helpers/child';
import { MEMTYPES, skipIf, unavailable } from './helpers/memtypes';

describe('the Worker pattern (a Worker serves, the main thread touches the buffer directly)', () => {
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

describe('Workers: a serving Worker that goes, several Workers at once', () => {
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
