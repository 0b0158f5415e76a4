/**
 * Mappings: kinds, the external ArrayBuffer, unmap safety, the finalizer, madvise / mprotect /
 * mremap, aliases of a memfd, and file mappings.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import { Mapping } from '../lib/index';
import { pageSize } from '../lib/core/sysinfo';
import { runChild } from './helpers/child';
import { MEMTYPES, skipIf, unavailable } from './helpers/memtypes';
import { isPresent } from './helpers/pagemap';

const page = pageSize();

/** Whether `address` lies inside some mapping (the kernel may merge neighbours into one line). */
function inMaps(address: bigint): boolean {
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .some((l) => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(l);
      return m !== null && BigInt(`0x${m[1]}`) <= address && address < BigInt(`0x${m[2]}`);
    });
}

describe('mapping', () => {
  for (const type of MEMTYPES) {
    it(`${type.name}: an aligned address, its length, and a buffer over the same memory`, function () {
      skipIf(this, unavailable(type));
      using mem = type.create(2);
      expect(typeof mem.address).to.equal('bigint');
      expect(mem.address % BigInt(type.unit)).to.equal(0n);
      expect(mem.length).to.equal(2 * type.unit);
      expect(mem.pageSize).to.equal(type.unit);
      expect(mem.shared).to.equal(type.shared);
      expect(mem.buffer.byteLength).to.equal(2 * type.unit);
      expect(mem.buffer).to.equal(mem.buffer); // the same object each time
      mem.bytes({ offset: type.unit, length: 8 }).set([1, 2, 3]);
      expect(new Uint8Array(mem.buffer)[type.unit + 2]).to.equal(3);
      expect(inMaps(mem.address)).to.equal(true);
    });
  }

  it('unmap detaches the buffer first: later access throws or reads nothing, never segfaults', () => {
    const mem = Mapping.anonymous(4 * page);
    const view = new Uint8Array(mem.buffer);
    view[0] = 1;
    const buffer = mem.buffer;
    const address = mem.address;
    mem.unmap();
    expect(inMaps(address)).to.equal(false);
    expect(mem.mapped).to.equal(false);
    expect(mem.length).to.equal(0);
    expect(view.length).to.equal(0);
    expect(view[0]).to.equal(undefined);
    expect(buffer.byteLength).to.equal(0);
    expect(() => new Uint8Array(buffer)).to.throw(TypeError);
    expect(() => mem.buffer).to.throw(Error, /unmapped/).with.property('code', 'ERR_UFFD_UNMAPPED');
    expect(() => mem.address).to.throw(Error, /unmapped/);
    expect(() => mem.madvise('DONTNEED')).to.throw(Error, /unmapped/);
    mem.unmap(); // double unmap is a no-op
  });

  it('a forgotten mapping is unmapped by the finalizer; a live view keeps it mapped (child with --expose-gc)', () => {
    const r = runChild(
      `const fs = require('fs');
       const inMaps = (a) => fs.readFileSync('/proc/self/maps', 'utf8').split('\\n').some((l) => {
         const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(l);
         return m !== null && BigInt('0x' + m[1]) <= a && a < BigInt('0x' + m[2]);
       });
       let a = uffd.Mapping.anonymous(1 << 20); const addrA = a.address; a = null;
       let b = uffd.Mapping.anonymous(1 << 20); const addrB = b.address; const view = new Uint8Array(b.buffer); view[5] = 42; b = null;
       (async () => {
         for (let i = 0; i < 10; i++) { global.gc(); await new Promise((r) => setImmediate(r)); }
         console.log(JSON.stringify({ a: inMaps(addrA), b: inMaps(addrB), v: view[5] }));
       })();`,
      { nodeArgs: ['--expose-gc'] },
    );
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ a: false, b: true, v: 42 });
  });

  it('the GC is told the external size once a buffer exists', () => {
    // V8's heap statistics count external ArrayBuffer backing stores; the mapping's own
    // napi_adjust_external_memory feeds GC scheduling but does not show in these counters.
    const mem = Mapping.anonymous(64 << 20);
    void mem.buffer;
    const during = v8.getHeapStatistics().external_memory;
    mem.unmap();
    expect(during).to.be.at.least(64 << 20);
  });

  it('madvise DONTNEED drops private anonymous pages (they read as zeros again)', () => {
    using mem = Mapping.anonymous(2 * page);
    new Uint8Array(mem.buffer).fill(7);
    expect(isPresent(mem.address)).to.equal(true);
    mem.madvise('DONTNEED', { offset: 0, length: page });
    expect(isPresent(mem.address)).to.equal(false);
    expect(new Uint8Array(mem.buffer)[0]).to.equal(0);
    expect(new Uint8Array(mem.buffer)[page]).to.equal(7);
  });

  it('madvise names are checked', () => {
    using mem = Mapping.anonymous(page);
    expect(() => mem.madvise('EVERYTHING' as never)).to.throw(TypeError, /advice/);
    expect(() => mem.madvise('DONTNEED', { offset: page, length: page })).to.throw(RangeError, /outside/);
  });

  it('mprotect to read-only makes writes fault (SIGSEGV in a child)', () => {
    const r = runChild(`const m = uffd.Mapping.anonymous(uffd.pageSize() * 4); m.mprotect('r'); console.log('read', new Uint8Array(m.buffer)[0]); new Uint8Array(m.buffer)[0] = 1; console.log('wrote');`);
    expect(r.stdout).to.include('read 0');
    expect(r.stdout).to.not.include('wrote');
    expect(r.signal).to.equal('SIGSEGV');
  });

  it('mremap grows the mapping, keeps the data and detaches the old buffer', () => {
    using mem = Mapping.anonymous(2 * page);
    const old = mem.buffer;
    new Uint8Array(old)[page + 1] = 99;
    const address = mem.mremap(8 * page);
    expect(address).to.equal(mem.address);
    expect(mem.length).to.equal(8 * page);
    expect(old.byteLength).to.equal(0);
    expect(mem.buffer.byteLength).to.equal(8 * page);
    expect(new Uint8Array(mem.buffer)[page + 1]).to.equal(99);
    expect(() => mem.mremap(page + 1)).to.throw(RangeError);
  });

  it('a memfd alias shows the same pages, and survives the primary being unmapped', () => {
    const mem = Mapping.memfd(2 * page, { name: 'alias-test' });
    const alias = mem.alias();
    expect(alias.address).to.not.equal(mem.address);
    new Uint8Array(mem.buffer)[10] = 33;
    expect(new Uint8Array(alias.buffer)[10]).to.equal(33);
    new Uint8Array(alias.buffer)[page] = 44;
    expect(new Uint8Array(mem.buffer)[page]).to.equal(44);
    mem.unmap();
    expect(new Uint8Array(alias.buffer)[10]).to.equal(33);
    const second = alias.alias();
    expect(new Uint8Array(second.buffer)[page]).to.equal(44);
    second.unmap();
    alias.unmap();
  });

  it('an anonymous mapping has no file to alias', () => {
    using mem = Mapping.anonymous(page);
    expect(() => mem.alias()).to.throw(TypeError, /no file/);
  });

  it('unmap closes the memfd the mapping owns', () => {
    const mem = Mapping.memfd(page);
    const fd = mem.fd!;
    expect(fs.existsSync(`/proc/self/fd/${fd}`)).to.equal(true);
    mem.unmap();
    expect(mem.fd).to.equal(undefined);
    const now = fs.existsSync(`/proc/self/fd/${fd}`) ? fs.readlinkSync(`/proc/self/fd/${fd}`) : 'closed';
    expect(now).to.not.match(/memfd:userfaultfd/);
  });

  describe('file mappings', () => {
    let dir: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uffd-mapping-'));
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('maps a file by path, shared: writes reach the file', () => {
      const file = path.join(dir, 'shared');
      fs.writeFileSync(file, Buffer.alloc(2 * page, 1));
      const mem = Mapping.file(file);
      expect(mem.length).to.equal(2 * page);
      expect(new Uint8Array(mem.buffer)[page]).to.equal(1);
      new Uint8Array(mem.buffer)[0] = 2;
      mem.unmap();
      expect(fs.readFileSync(file)[0]).to.equal(2);
    });

    it('maps part of a file by descriptor, privately: writes stay in memory', () => {
      const file = path.join(dir, 'private');
      const content = Buffer.alloc(3 * page);
      content.fill(5, page);
      fs.writeFileSync(file, content);
      const fd = fs.openSync(file, 'r');
      try {
        using mem = Mapping.file(fd, { offset: page, length: page, shared: false });
        expect(new Uint8Array(mem.buffer)[0]).to.equal(5);
        new Uint8Array(mem.buffer)[0] = 6;
        expect(fs.readFileSync(file)[page]).to.equal(5);
        expect(mem.fd).to.equal(fd);
      } finally {
        fs.closeSync(fd); // borrowed: ours to close
      }
    });

    it('a missing file is ENOENT from fs', () => {
      expect(() => Mapping.file(path.join(dir, 'nope'))).to.throw(Error).with.property('code', 'ENOENT');
    });
  });
});
