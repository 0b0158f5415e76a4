/**
 * fork() in a process whose uffd has EVENT_FORK: the forking thread sleeps in the kernel until
 * the FORK event is read, and glibc's fork() holds every malloc lock meanwhile. The event thread
 * must read that event without allocating, whatever it was doing when the fork began; it used to
 * hang here within a few hundred forks (it waited for a malloc lock the forking thread held).
 *
 * Each case runs in a child process killed after a hard timeout.
 */
import { expect } from 'chai';
import { childJson } from './helpers/child';
import { kernelModeUnavailable, skipIf, unavailable } from './helpers/memtypes';

describe('fork: a fork() never waits forever for the event thread', () => {
  before(function () {
    skipIf(this, unavailable(undefined, 'EVENT_FORK'));
    skipIf(this, kernelModeUnavailable());
  });

  it('a native thread forks 600 times while the event thread serves a stream of faults: every child runs', () => {
    const out = childJson<{ forks: number; children: number; failed: string[]; rounds: number }>(
      `
      (async () => {
        const { Userfaultfd, Mapping, testing, pageSize } = uffd;
        const page = pageSize();
        const u = Userfaultfd.open({ features: ['EVENT_FORK'], userModeOnly: false });
        // The child reads only pages the parent populated: it never faults on its own uffd.
        const small = Mapping.anonymous(16 * page, { hugepage: false });
        new Uint8Array(small.buffer).fill(1);
        const churned = Mapping.anonymous(1024 * page, { hugepage: false });
        u.register(small);
        u.register(churned);
        let forks = 0;
        u.on('fork', (ev) => { forks++; ev.uffd.close(); });
        // Faults resolved natively and emptied again: the event thread reads, resolves and
        // hands on all the time, so the forks land in the middle of that work.
        u.handle(churned, { zero: true });
        let stop = false;
        let rounds = 0;
        const churn = (async () => {
          while (!stop) {
            await testing.touch(churned, { threads: 2 });
            await testing.madvise(churned, 'DONTNEED');
            rounds++;
          }
        })();
        const failed = [];
        for (let i = 0; i < ARGS.forks; i++) {
          const r = await testing.forkTouch(small);
          if (r.status !== 0) failed.push(JSON.stringify(r));
        }
        stop = true;
        await churn;
        // Every fork's event was read before its fork() returned; JS hears of it a little later.
        await waitFor(() => forks === ARGS.forks);
        console.log(JSON.stringify({ forks, children: ARGS.forks - failed.length, failed, rounds }));
        u.close();
      })();
    `,
      { timeoutMs: 60000, args: { forks: 600 } },
    );
    expect(out.failed).to.deep.equal([]);
    expect(out.children).to.equal(600);
    expect(out.forks).to.equal(600);
    expect(out.rounds).to.be.greaterThan(0);
  });

  it('child_process.spawnSync from the JS thread is a FORK event, and completes while faults are served', () => {
    // The JS thread is inside fork() and cannot read: the event thread reads the FORK event
    // (the backstop of the main-loop reader), and the spawn returns.
    const out = childJson<{ statuses: number[]; forks: number }>(`
      (async () => {
        const { spawnSync } = require('node:child_process');
        const { Userfaultfd, Mapping, testing, pageSize } = uffd;
        const u = Userfaultfd.open({ features: ['EVENT_FORK'], userModeOnly: false });
        const mem = Mapping.anonymous(256 * pageSize(), { hugepage: false });
        u.register(mem);
        let forks = 0;
        u.on('fork', (ev) => { forks++; ev.uffd.close(); });
        u.on('pagefault', (f) => u.zeropage(f.address & ~BigInt(pageSize() - 1), pageSize()));
        const touching = testing.touch(mem, { threads: 2 });
        const statuses = [];
        for (let i = 0; i < 20; i++) {
          statuses.push(spawnSync(process.execPath, ['-e', '0']).status);
          await new Promise((r) => setImmediate(r));
        }
        await touching;
        // As above: wait for the last FORK events to reach JS, however slow the machine.
        await waitFor(() => forks === 20);
        console.log(JSON.stringify({ statuses, forks }));
        u.close();
      })();
    `);
    expect(out.statuses).to.deep.equal(new Array(20).fill(0));
    expect(out.forks).to.equal(20);
  });
});
