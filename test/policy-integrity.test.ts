/**
 * A native policy puts the right bytes behind a page, or says it could not: never zeros it was
 * not told to serve, never another file's bytes, and bad configuration is refused up front.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Mapping, Userfaultfd, testing } from '../lib/index';
import { pageSize } from '../lib/core/sysinfo';
import { childJson, runChild } from './helpers/child';
import { kernel } from './helpers/memtypes';

const page = pageSize();

describe('policy integrity: copyFrom a file', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uffd-integrity-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('the policy owns its descriptor: closing ours, and another file taking its number, changes nothing', async () => {
    const ours = path.join(dir, 'ours');
    const theirs = path.join(dir, 'theirs');
    fs.writeFileSync(ours, Buffer.alloc(4 * page, 0x11));
    fs.writeFileSync(theirs, Buffer.alloc(4 * page, 0x22));
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(4 * page, { hugepage: false });
    uffd.register(mem);
    const fd = fs.openSync(ours, 'r');
    uffd.handle(mem, { copyFrom: { fd } });
    fs.closeSync(fd);
    const reused = fs.openSync(theirs, 'r'); // the lowest free number: the one just closed
    try {
      await testing.touch(mem);
      expect(new Uint8Array(mem.buffer).every((b) => b === 0x11)).to.equal(true);
    } finally {
      fs.closeSync(reused);
    }
  });

  it('handle() refuses a descriptor pread cannot read: a directory, a pipe, a write-only file', () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(page);
    uffd.register(mem);
    const dirFd = fs.openSync(dir, 'r');
    const writeOnly = fs.openSync(path.join(dir, 'w'), 'w');
    try {
      expect(() => uffd.handle(mem, { copyFrom: { fd: dirFd } })).to.throw().with.property('code', 'EISDIR');
      expect(() => uffd.handle(mem, { copyFrom: { fd: writeOnly } })).to.throw().with.property('code', 'EBADF');
      expect(() => uffd.handle(mem, { copyFrom: { fd: 0x7fff0000 } })).to.throw().with.property('code', 'EBADF');
    } finally {
      fs.closeSync(dirFd);
      fs.closeSync(writeOnly);
    }
    const out = childJson<{ code: string; syscall: string }>(`
      const { Userfaultfd, Mapping, pageSize } = uffd;
      const { execFileSync } = require('node:child_process');
      const u = Userfaultfd.open();
      const mem = Mapping.anonymous(pageSize());
      u.register(mem);
      // fd 0 of this child is a pipe (spawnSync's stdin).
      try { u.handle(mem, { copyFrom: { fd: 0 } }); console.log('{}'); }
      catch (e) { console.log(JSON.stringify({ code: e.code, syscall: e.syscall })); }
      u.close();
    `);
    expect(out).to.deep.equal({ code: 'ESPIPE', syscall: 'pread' });
  });

  it('a read that fails (EIO) is never served as zeros: SIGBUS where POISON exists, else an error event', function () {
    // pread on /proc/self/mem at an address with no mapping fails with EIO: a readable regular
    // file whose reads fail, as a failing disk's would.
    const poison = kernel().features.POISON === true;
    const r = runChild(
      `
      const { Userfaultfd, Mapping, testing, pageSize } = uffd;
      const fs = require('node:fs');
      const page = pageSize();
      const hole = Mapping.anonymous(4 * page);
      const address = Number(hole.address);
      hole.unmap();
      const u = Userfaultfd.open();
      const mem = Mapping.anonymous(4 * page, { hugepage: false });
      u.register(mem);
      const errors = [];
      u.on('error', (e) => errors.push({ code: e.code, syscall: e.syscall, address: String(e.address) }));
      const policy = u.handle(mem, { copyFrom: { fd: fs.openSync('/proc/self/mem', 'r'), offset: address } });
      console.log('touching');
      testing.touch(mem, { length: page });
      waitFor(() => errors.length > 0).then(() => {
        console.log(JSON.stringify({ errors, stats: policy.stats() }));
        u.close(); // the unresolved fault is woken by the close
        process.exit(0);
      });
    `,
      { timeoutMs: 20000 },
    );
    expect(r.timedOut, r.stderr).to.equal(false);
    if (poison) {
      expect(r.signal, `${r.stdout}\n${r.stderr}`).to.equal('SIGBUS');
      expect(r.stdout).to.include('touching');
    } else {
      expect(r.status, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { errors: { code: string; syscall: string }[]; stats: { errors: number } };
      expect(out.errors[0]).to.include({ code: 'EIO', syscall: 'pread' });
      expect(out.stats.errors).to.equal(1);
    }
  });
});

describe('policy integrity: arguments that cannot be honoured', () => {
  it('a unit larger than the range is a RangeError, in TS and in the addon (it used to abort)', () => {
    const out = childJson<{ ts: string; native: string }>(`
      const { Userfaultfd, Mapping, pageSize } = uffd;
      const fs = require('node:fs');
      const u = Userfaultfd.open();
      const mem = Mapping.anonymous(4 * pageSize());
      u.register(mem);
      const fd = fs.openSync('/proc/self/exe', 'r');
      const codeOf = (f) => { try { f(); return 'none'; } catch (e) { return e.name + ':' + (e.code ?? ''); } };
      const ts = codeOf(() => u.handle(mem, { copyFrom: { fd } }, { unit: 2 ** 36 }));
      u.events(); // starts the event thread, as handle() would have
      const native = codeOf(() => u.native.addPolicy({ kind: 'copyFd', address: mem.address, length: mem.length, unit: 2 ** 36, fd, offset: 0 }));
      console.log(JSON.stringify({ ts, native }));
      u.close();
    `);
    expect(out.ts).to.equal('RangeError:ERR_OUT_OF_RANGE');
    expect(out.native).to.match(/^RangeError:/);
  });
});

describe('policy integrity: copyFrom a Mapping', () => {
  it("unmap() of the source leaves its memory to the policy until removal: never a later mapping's bytes", () => {
    const out = childJson<{ bytes: number[]; stillMapped: boolean; errors: number }>(`
      const { Userfaultfd, Mapping, testing, pageSize } = uffd;
      const page = pageSize();
      (async () => {
        const u = Userfaultfd.open();
        const mem = Mapping.anonymous(4 * page, { hugepage: false });
        const src = Mapping.anonymous(4 * page, { hugepage: false });
        src.bytes().fill(0x5a);
        u.register(mem);
        const policy = u.handle(mem, { copyFrom: src.bytes() });
        src.unmap();
        // The kernel tends to put a new mapping of the same size where the old one was.
        const other = Mapping.anonymous(4 * page, { hugepage: false });
        other.bytes().fill(0x33);
        await testing.touch(mem);
        const bytes = [0, 1, 2, 3].map((i) => mem.bytes()[i * page + i]);
        const errors = policy.stats().errors;
        policy.remove();
        console.log(JSON.stringify({ bytes, stillMapped: src.mapped, errors }));
        u.close();
      })();
    `);
    expect(out).to.deep.equal({ bytes: [0x5a, 0x5a, 0x5a, 0x5a], stillMapped: false, errors: 0 });
  });
});

describe('policy integrity: a source the copying thread would fault on itself', () => {
  it('copy() refuses a source that overlaps its destination', () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(4 * page);
    uffd.register(mem);
    expect(() => uffd.copy(mem.address, mem.address + BigInt(page), 2 * page)).to.throw(RangeError, /overlaps the destination/);
  });

  it('handle() refuses a copy source inside a range registered for MISSING or MINOR faults, and forgets it once unregistered', () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(4 * page);
    using src = Mapping.anonymous(4 * page);
    uffd.register(mem);
    uffd.register(src);
    // The policy's own range, and another registered range: the event thread would wait for itself.
    expect(() => uffd.handle(mem, { copyFrom: mem.bytes() })).to.throw(RangeError, /registered with this userfaultfd/);
    expect(() => uffd.handle(mem, { copyFrom: src.bytes() })).to.throw(RangeError, /registered with this userfaultfd/);
    uffd.unregister({ address: src.address + BigInt(2 * page), length: 2 * page });
    expect(() => uffd.handle({ address: mem.address, length: 2 * page }, { copyFrom: src.bytes({ offset: 2 * page, length: 2 * page }) })).to.not.throw();
  });
});
