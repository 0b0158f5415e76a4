/**
 * What keeps the process alive: the event thread keeps it alive, as a server would, while
 * something consumes its events (a listener, an iterator or a policy), and no longer once the
 * last consumer is gone (off(), the iterator's return(), close()). unref() lets the process exit
 * anyway, ref() undoes that, and an unref()ed userfaultfd still serves its faults while
 * something else keeps the process alive.
 *
 * Every case runs in a child process: whether it exits by itself is what is tested. A child that
 * should stay alive is killed once it has shown that it does.
 */
import { expect } from 'chai';
import { childJson, childStdout, expectClean, runChild, spawnChild } from './helpers/child';

describe('ref() and unref()', () => {
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

  it('close() inside the listener, and an idle unref()ed uffd, let the process exit', () => {
    const out = childStdout(`
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
});
