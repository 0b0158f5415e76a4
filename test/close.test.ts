/**
 * close(): it always returns, drops nothing it was told about, and nothing is emitted after it.
 */
import { expect } from 'chai';
import { childJson, expectClean, runChild, runChildren } from './helpers/child';

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

describe('the event thread does not outlive its consumers', () => {
  it('off() of the last listener lets the process exit', () => {
    const r = runChild(`
      const u = uffd.Userfaultfd.open();
      const onFault = () => {};
      u.on('pagefault', onFault);
      u.off('pagefault', onFault);
      const it = u.events();
      it.return();
      setTimeout(() => console.log('idle'), 10);
    `);
    expectClean(r);
    expect(r.stdout.trim()).to.equal('idle');
  });

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
