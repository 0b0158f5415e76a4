/**
 * JS handlers served from the JS thread's own loop (native/reader.*: the uffd is polled by the
 * loop while no policy is installed; the event thread is the backstop). Each test runs in a child
 * with a hard timeout: a mistake here leaves a thread asleep in a fault forever. The deadlock
 * guard, the process's exit and a Worker's teardown with such a listener are tested with their
 * features: deadlock-guard.test.ts, ref-unref.test.ts, teardown.test.ts.
 */
import { expect } from 'chai';
import { childStdout } from './helpers/child';

// The child's common part: a registered area whose faults a listener serves with page `i + 1`
// in every byte of page i, counting what it served.
const SETUP = `
  const page = uffd.pageSize();
  const PAGES = 256;
  const u = uffd.Userfaultfd.open();
  const area = uffd.Mapping.anonymous(PAGES * page);
  u.register(area);
  const served = new Map();
  u.on('pagefault', (ev) => {
    const i = Number((ev.address - area.address) / BigInt(page));
    served.set(i, (served.get(i) ?? 0) + 1);
    u.copy(ev.address, Buffer.alloc(page, (i + 1) & 0xff));
  });
  function check() {
    const b = new Uint8Array(area.buffer);
    for (let i = 0; i < PAGES; i++) if (b[i * page] !== ((i + 1) & 0xff)) throw new Error('page ' + i + ' holds ' + b[i * page]);
    for (const [i, n] of served) if (n !== 1) throw new Error('page ' + i + ' served ' + n + ' times');
    if (served.size !== PAGES) throw new Error('served ' + served.size + ' pages');
  }
`;

describe('JS handlers on the main loop', () => {
  it('serve faults from native threads, each page once', () => {
    const out = childStdout(`${SETUP}
      uffd.testing.touch(area, { threads: 4, order: 'random' }).then(() => { check(); u.close(); console.log('ok'); });
    `);
    expect(out.trim()).to.equal('ok');
  });

  it('keep serving while the JS thread is busy (the event thread steps in and delivers later)', () => {
    const out = childStdout(`${SETUP}
      // Busy stretches far longer than the grace period, between which faults are served.
      const busy = setInterval(() => { const end = Date.now() + 10; while (Date.now() < end); }, 1);
      uffd.testing.touch(area, { threads: 2, order: 'random' }).then(() => { clearInterval(busy); check(); u.close(); console.log('ok'); });
    `);
    expect(out.trim()).to.equal('ok');
  });

  it('a policy takes the range from JS, and removing it gives the faults back', () => {
    const out = childStdout(`${SETUP}
      const policy = u.handle(area, { zero: true });
      // The JS thread may touch what a policy serves: the event thread resolves it, no JS involved.
      const zero = new Uint8Array(area.buffer)[0];
      area.madvise('DONTNEED');
      policy.remove();
      uffd.testing.touch(area, { threads: 2 }).then(() => { check(); u.close(); console.log(zero, 'ok'); });
    `);
    expect(out.trim()).to.equal('0 ok');
  });
});
