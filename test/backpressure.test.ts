/**
 * events() backpressure: an iterator nobody consumes fills its queue (highWaterMark) and pauses
 * the event thread. Meanwhile the deadlock guard and the native policies must go on resolving
 * faults, and the events held back must all arrive once the consumer reads again. (The iterator
 * itself, its delivery, abort and end at close(), is tested in events.test.ts.)
 *
 * Every case runs in a child process killed after a hard timeout: a fault left unresolved while
 * the queue is full hangs the thread that raised it. The child prints one JSON line.
 */
import { expect } from 'chai';
import { childJson } from './helpers/child';

describe('events() backpressure', () => {
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
