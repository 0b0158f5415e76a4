/**
 * JS handlers served from the JS thread's own loop (native/reader.*: the uffd is polled by the
 * loop while no policy is installed; the event thread is the backstop). Each test runs in a child
 * with a hard timeout: a mistake here leaves a thread asleep in a fault forever.
 */
import { expect } from 'chai';
import { PACKAGE, runChild } from './helpers/child';

function ok(script: string, timeoutMs = 20000): string {
  const r = runChild(script, { timeoutMs });
  expect(r.timedOut, `timed out; stderr: ${r.stderr}`).to.equal(false);
  expect(r.status, r.stderr).to.equal(0);
  return r.stdout;
}

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
    const out = ok(`${SETUP}
      uffd.testing.touch(area, { threads: 4, order: 'random' }).then(() => { check(); u.close(); console.log('ok'); });
    `);
    expect(out.trim()).to.equal('ok');
  });

  it('keep serving while the JS thread is busy (the event thread steps in and delivers later)', () => {
    const out = ok(`${SETUP}
      // Busy stretches far longer than the grace period, between which faults are served.
      const busy = setInterval(() => { const end = Date.now() + 10; while (Date.now() < end); }, 1);
      uffd.testing.touch(area, { threads: 2, order: 'random' }).then(() => { clearInterval(busy); check(); u.close(); console.log('ok'); });
    `);
    expect(out.trim()).to.equal('ok');
  });

  it('the deadlock guard still rescues a fault the JS thread raises on itself', () => {
    const out = ok(`
      const page = uffd.pageSize();
      const u = uffd.Userfaultfd.open();
      const area = uffd.Mapping.anonymous(4 * page);
      u.register(area);
      let errors = [];
      u.on('pagefault', () => { throw new Error('the JS thread cannot serve its own fault'); });
      u.on('error', (err) => errors.push(err.code));
      const v = new Uint8Array(area.buffer)[page]; // asleep in the kernel until the guard steps in
      // The report reaches JS after the fault is resolved, however slow the machine: wait for it,
      // then a little longer for anything that should not come.
      waitFor(() => errors.length > 0).then(() => setTimeout(() => { console.log(v, errors.join(',')); u.close(); }, 50));
    `);
    expect(out.trim()).to.equal('0 ERR_UFFD_DEADLOCK_GUARD');
  });

  it('a policy takes the range from JS, and removing it gives the faults back', () => {
    const out = ok(`${SETUP}
      const policy = u.handle(area, { zero: true });
      // The JS thread may touch what a policy serves: the event thread resolves it, no JS involved.
      const zero = new Uint8Array(area.buffer)[0];
      area.madvise('DONTNEED');
      policy.remove();
      uffd.testing.touch(area, { threads: 2 }).then(() => { check(); u.close(); console.log(zero, 'ok'); });
    `);
    expect(out.trim()).to.equal('0 ok');
  });

  it('close() inside the listener, and an idle unref()ed uffd, let the process exit', () => {
    const out = ok(`
      const page = uffd.pageSize();
      const u = uffd.Userfaultfd.open();
      const area = uffd.Mapping.anonymous(4 * page);
      u.register(area);
      u.on('pagefault', (ev) => { u.copy(ev.address, Buffer.alloc(page, 9)); u.close(); });
      uffd.testing.touch({ address: area.address, length: page }).then((r) => {
        console.log('closed', u.closed);
        const idle = uffd.Userfaultfd.open();
        const m = uffd.Mapping.anonymous(page);
        idle.register(m);
        idle.on('pagefault', () => {});
        idle.unref();
      });
    `);
    expect(out.trim()).to.equal('closed true');
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
