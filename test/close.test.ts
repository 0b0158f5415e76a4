/**
 * close(): it always returns, drops nothing it was told about, and nothing is emitted after it;
 * the threads still waiting on its faults are woken (the kernel releases them) and end normally.
 *
 * Every case runs in a child process killed after a hard timeout: a close() that hangs, or a
 * fault it fails to release, would leave a thread asleep for good. The child prints what it saw.
 */
import { expect } from 'chai';
import { childJson, expectClean, runChildren } from './helpers/child';
import { MEMTYPES, skipIf, unavailable } from './helpers/memtypes';

describe('close', () => {
  it('never hangs: six processes race open, register, handle and close for seconds', async function () {
    // close() joins the event thread. It once read its stop flag before draining its wake-up
    // eventfd, so a stop landing between the two was swallowed (an earlier wake-up, from adding
    // the policy, had woken it) and close() waited forever for a thread asleep in poll(-1).
    // The window is a few instructions wide: many cycles, on both cores, find it.
    this.timeout(120000);
    const script = `
      const { Userfaultfd, Mapping, pageSize } = uffd;
      const mem = Mapping.anonymous(16 * pageSize(), { hugepage: false });
      const until = Date.now() + ARGS.ms;
      let cycles = 0;
      while (Date.now() < until) {
        const u = Userfaultfd.open();
        u.register(mem);
        // Each policy added or removed wakes the thread: the close lands among many wake-ups.
        for (let i = 0; i < 8; i++) u.handle(mem, { zero: true }).remove();
        u.handle(mem, { zero: true });
        u.close();
        cycles++;
      }
      console.log(JSON.stringify({ cycles }));
    `;
    const results = await runChildren(Array(6).fill(script), { args: { ms: 8000 }, timeoutMs: 60000 });
    for (const r of results) {
      expectClean(r);
      expect(JSON.parse(r.stdout).cycles).to.be.greaterThan(0);
    }
  });
});

describe('close: nothing lost, nothing after', () => {
  it('a deadlock-guard report pending when close() runs in the same tick becomes a process warning', () => {
    const out = childJson<{ warnings: { name: string; code: string }[]; errors: number }>(`
      const { Userfaultfd, Mapping, pageSize } = uffd;
      const warnings = [];
      process.on('warning', (w) => warnings.push({ name: w.name, code: w.code }));
      const u = Userfaultfd.open();
      let errors = 0;
      u.on('error', () => errors++);
      u.on('pagefault', () => {});
      const mem = Mapping.anonymous(pageSize(), { hugepage: false });
      u.register(mem);
      // The JS thread faults on its own registered page: the guard resolves it (zeros) and
      // queues a report, which the loop has had no chance to deliver before close().
      const first = mem.bytes()[0];
      u.close();
      setTimeout(() => console.log(JSON.stringify({ first, warnings, errors })), 50);
    `);
    expect(out.errors).to.equal(0);
    expect(out.warnings).to.deep.equal([{ name: 'FaultError', code: 'ERR_UFFD_DEADLOCK_GUARD' }]);
  });

  it('close() inside a pagefault listener: the rest of the batch is not emitted', () => {
    const out = childJson<{ emitted: number; faults: number }>(`
      const { Userfaultfd, Mapping, testing, pageSize } = uffd;
      const page = pageSize();
      const u = Userfaultfd.open();
      const mem = Mapping.anonymous(8 * page, { hugepage: false });
      u.register(mem);
      let emitted = 0;
      u.on('pagefault', () => { emitted++; u.close(); });
      // Eight threads fault while the JS thread is busy: the event thread reads their faults in
      // one batch, which JS receives at once.
      const touched = testing.touch(mem, { threads: 8 });
      const until = Date.now() + 300;
      while (Date.now() < until);
      touched.then((r) => console.log(JSON.stringify({ emitted, faults: r.length })));
    `);
    expect(out.emitted).to.equal(1);
    expect(out.faults).to.equal(8);
  });
});

describe('close() with faults pending', () => {
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
