/**
 * Environment teardown with the event thread running: Workers that exit, are terminated or die of
 * an error, and a process that calls process.exit(), while their userfaultfd has listeners,
 * policies and faults in flight, without close(). Teardown must stop the event thread and release
 * the faults it served without crashing or hanging the process; the addon works on afterwards.
 *
 * Every case runs in a child process killed after a hard timeout: a teardown that goes wrong
 * crashes or hangs the whole process. The child prints what it saw.
 */
import { expect } from 'chai';
import { childJson, expectClean, PACKAGE, runChild } from './helpers/child';

describe('environment teardown with the event thread running', () => {
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

  it('a Worker with a listener is torn down cleanly, by terminate() and by process.exit()', () => {
    const r = runChild(
      `
      const { Worker } = require('node:worker_threads');
      const code = (exit) => \`
        const { parentPort } = require('node:worker_threads');
        const uffd = require(\${JSON.stringify(ARGS)});
        const page = uffd.pageSize();
        const u = uffd.Userfaultfd.open();
        const area = uffd.Mapping.anonymous(64 * page);
        u.register(area);
        u.on('pagefault', (ev) => u.copy(ev.address, Buffer.alloc(page, 3)));
        uffd.testing.touch(area, { threads: 2 }).then((r) => {
          parentPort.postMessage(r.length);
          if (\${exit}) process.exit(0);
        });
      \`;
      const first = new Worker(code(false), { eval: true });
      first.on('message', (n) => { console.log('served', n); first.terminate(); });
      first.on('exit', () => {
        console.log('terminated');
        const second = new Worker(code(true), { eval: true });
        second.on('exit', (c) => console.log('exited', c));
      });
    `,
      { args: PACKAGE, timeoutMs: 20000 },
    );
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.trim().split('\n')).to.deep.equal(['served 2', 'terminated', 'exited 0']);
  });
});
