/**
 * The deadlock guard: a fault that the JS thread raises itself, on memory that only its own
 * listener could serve, would never be served (the listener runs on the sleeping thread). The
 * event thread resolves it instead (MISSING: zeros, WP: un-protected, MINOR: continued) and
 * reports it as an 'error' event with code ERR_UFFD_DEADLOCK_GUARD; in the main thread and in a
 * Worker. Without the guard (deadlockGuard: false) the same fault hangs.
 *
 * Every case runs in a child process killed after a hard timeout: a guard that fails leaves the JS
 * thread asleep in its page fault for good. The child prints what it saw.
 */
import { expect } from 'chai';
import { childJson, childStdout, spawnChild } from './helpers/child';
import { scaled } from './helpers/speed';
import { MEMTYPES, skipIf, unavailable } from './helpers/memtypes';

describe('deadlock guard', () => {
  for (const type of MEMTYPES) {
    it(`[${type.name}] a fault raised by the JS thread itself is zero-filled and reported as ERR_UFFD_DEADLOCK_GUARD`, function () {
      skipIf(this, unavailable(type, type.missingFeature));
      interface GuardError {
        name: string;
        code: string;
        address: string;
        threadId: number;
      }
      const out = childJson<{ read: number; written: number; neighbour: number; faults: number; errors: GuardError[]; pid: number; base: string; unit: number }>(
        `
        const { MEMTYPES } = require(ARGS.memtypes);
        const type = MEMTYPES.find((t) => t.name === ARGS.type);
        const u = uffd.Userfaultfd.open();
        const mem = type.create(2);
        u.register(mem);
        let faults = 0;
        const errors = [];
        u.on('pagefault', () => faults++);
        u.on('error', (err) => errors.push({ name: err.name, code: err.code, address: '0x' + err.address.toString(16), threadId: err.threadId }));
        const v = new Uint8Array(mem.buffer);
        const read = v[100];           // a read fault on the first unit
        v[type.unit + 5] = 7;          // a write fault on the second
        const written = v[type.unit + 5];
        const neighbour = v[type.unit + 6];
        // Reports reach JS after the faults are resolved: wait for both, then a little longer for
        // any event that should not come.
        waitFor(() => errors.length >= 2).then(() => setTimeout(() => {
          u.close();
          console.log(JSON.stringify({ read, written, neighbour, faults, errors, pid: process.pid, base: '0x' + mem.address.toString(16), unit: type.unit }));
        }, 200));
      `,
        { args: { type: type.name }, timeoutMs: 10000 },
      );
      expect(out.read).to.equal(0);
      expect(out.written).to.equal(7);
      expect(out.neighbour).to.equal(0);
      expect(out.faults, 'the guarded faults are not handed to the listener').to.equal(0);
      expect(out.errors).to.have.length(2);
      const base = BigInt(out.base);
      const firstAddresses = [base, base + BigInt(out.unit)];
      out.errors.forEach((e, i) => {
        expect(e).to.deep.include({ name: 'FaultError', code: 'ERR_UFFD_DEADLOCK_GUARD', threadId: out.pid });
        // The reported address lies in the unit that faulted.
        const at = BigInt(e.address);
        expect(at >= firstAddresses[i] && at < firstAddresses[i] + BigInt(out.unit), `error ${i} at ${e.address}`).to.equal(true);
      });
    });
  }

  for (const type of MEMTYPES) {
    it(`[${type.name}] a write of the JS thread to a write-protected page is un-protected; the write lands, the rest is kept`, function () {
      skipIf(this, unavailable(type, type.wpFeature));
      const out = childJson<{ written: number; kept: boolean; faults: number; errors: { code: string; ioctl: string }[] }>(
        `
        const { MEMTYPES } = require(ARGS.memtypes);
        const type = MEMTYPES.find((t) => t.name === ARGS.type);
        const u = uffd.Userfaultfd.open();
        const mem = type.create(2);
        const v = new Uint8Array(mem.buffer);
        v.fill(9); // present before registering
        u.register(mem, { wp: true });
        u.writeProtect(mem, true);
        let faults = 0;
        const errors = [];
        u.on('pagefault', () => faults++);
        u.on('error', (err) => errors.push({ code: err.code, ioctl: err.ioctl }));
        v[type.unit + 10] = 42;
        const written = v[type.unit + 10];
        v[type.unit + 10] = 9;
        const kept = v.every((b) => b === 9);
        waitFor(() => errors.length > 0).then(() => setTimeout(() => {
          u.close();
          console.log(JSON.stringify({ written, kept, faults, errors }));
        }, 200));
      `,
        { args: { type: type.name }, timeoutMs: 10000 },
      );
      expect(out.written).to.equal(42);
      expect(out.kept).to.equal(true);
      expect(out.faults).to.equal(0);
      expect(out.errors).to.deep.equal([{ code: 'ERR_UFFD_DEADLOCK_GUARD', ioctl: 'UFFDIO_WRITEPROTECT' }]);
    });
  }

  for (const type of MEMTYPES.filter((t) => t.minorFeature !== undefined)) {
    it(`[${type.name}] a MINOR fault of the JS thread is continued: it reads the page cache's bytes`, function () {
      skipIf(this, unavailable(type, type.minorFeature));
      const out = childJson<{ read: number; faults: number; errors: { code: string; ioctl: string }[] }>(
        `
        const { MEMTYPES } = require(ARGS.memtypes);
        const type = MEMTYPES.find((t) => t.name === ARGS.type);
        const u = uffd.Userfaultfd.open();
        const mem = type.create(2);
        const alias = mem.alias();
        new Uint8Array(alias.buffer).fill(5); // in the page cache, not mapped in mem
        u.register(mem, { minor: true });
        let faults = 0;
        const errors = [];
        u.on('pagefault', () => faults++);
        u.on('error', (err) => errors.push({ code: err.code, ioctl: err.ioctl }));
        const read = new Uint8Array(mem.buffer)[type.unit + 3];
        waitFor(() => errors.length > 0).then(() => setTimeout(() => {
          u.close();
          console.log(JSON.stringify({ read, faults, errors }));
        }, 200));
      `,
        { args: { type: type.name }, timeoutMs: 10000 },
      );
      expect(out.read).to.equal(5);
      expect(out.faults).to.equal(0);
      expect(out.errors).to.deep.equal([{ code: 'ERR_UFFD_DEADLOCK_GUARD', ioctl: 'UFFDIO_CONTINUE' }]);
    });
  }

  it("in a Worker, the guard watches the Worker's own thread", () => {
    const out = childJson<{ read: number; faults: number; errors: { code: string; threadId: number }[]; pid: number }>(`
      const { Worker } = require('node:worker_threads');
      const w = new Worker(\`
        const { workerData, parentPort } = require('node:worker_threads');
        const lib = require(workerData.pkg);
        const u = lib.Userfaultfd.open();
        const mem = lib.Mapping.anonymous(2 * lib.pageSize());
        u.register(mem);
        let faults = 0;
        const errors = [];
        u.on('pagefault', () => faults++);
        u.on('error', (err) => errors.push({ code: err.code, threadId: err.threadId }));
        const read = new Uint8Array(mem.buffer)[0];
        // The Worker has no waitFor: the same wait, for the report, bounded by the child's limit.
        const done = () => { u.close(); parentPort.postMessage({ read, faults, errors }); };
        const poll = () => (errors.length > 0 ? setTimeout(done, 100) : setTimeout(poll, 2));
        poll();
      \`, { eval: true, workerData: { pkg: ARGS.pkg } });
      w.on('message', (m) => console.log(JSON.stringify({ ...m, pid: process.pid })));
    `);
    expect(out.read).to.equal(0);
    expect(out.faults).to.equal(0);
    expect(out.errors).to.have.length(1);
    expect(out.errors[0].code).to.equal('ERR_UFFD_DEADLOCK_GUARD');
    expect(out.errors[0].threadId, "the Worker's thread, not the main thread").to.be.a('number').and.not.equal(out.pid);
  });

  it('without the guard the same fault hangs the JS thread (the child is killed by the timeout)', async () => {
    // A fault the guard resolved would print at once; a hang prints nothing more. The wait after
    // 'faulting' scales with the machine's speed, so a slow machine is not mistaken for a hang.
    const r = await spawnChild(
      `
      const u = uffd.Userfaultfd.open({ deadlockGuard: false });
      const mem = uffd.Mapping.anonymous(uffd.pageSize());
      u.register(mem);
      u.on('pagefault', () => {});
      console.log('faulting');
      console.log(new Uint8Array(mem.buffer)[0]);
    `,
      { timeoutMs: 30000, killAfter: { line: 'faulting', ms: scaled(1000) } },
    );
    expect(r.stdout.trim()).to.equal('faulting');
    expect(r.timedOut).to.equal(true);
  });
});

describe('deadlock guard: JS handlers on the main loop', () => {
  it('the deadlock guard still rescues a fault the JS thread raises on itself', () => {
    const out = childStdout(`
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
});
