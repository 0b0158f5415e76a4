/**
 * close(): it always returns, drops nothing it was told about, and nothing is emitted after it.
 */
import { expect } from 'chai';
import { expectClean, runChildren } from './helpers/child';

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
