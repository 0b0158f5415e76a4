/**
 * Mappings at their limits: larger than one ArrayBuffer can be (views of ranges instead of an
 * abort), and growth that would hand out pages raising SIGBUS (refused, or the file grown first).
 * Every case that crashed the process before runs in a child.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Mapping } from '../lib/index';
import { pageSize } from '../lib/core/sysinfo';
import { childJson } from './helpers/child';
import { skipIf } from './helpers/memtypes';

const page = pageSize();

describe('mapping limits', () => {
  describe('a mapping larger than buffer.constants.MAX_LENGTH', () => {
    // 5 GiB of address space, never touched but for two pages: MAP_NORESERVE (and shmem / memfd,
    // which charge per page) make it cost nothing. Before the fix, .buffer and .bytes() aborted
    // the process with "free(): double free".
    for (const kind of ['anonymous', 'shared', 'memfd'] as const) {
      it(`${kind}: .buffer is a coded RangeError, bytes(range) a view of just the range that unmap detaches`, function () {
        const out = childJson<Record<string, unknown>>(
          `(() => {
           const { Mapping } = require(ARGS.pkg);
           const { constants } = require('node:buffer');
           const size = 5 * 2 ** 30;
           if (size <= constants.MAX_LENGTH) { console.log(JSON.stringify({ skip: 'this Node makes buffers of ' + constants.MAX_LENGTH + ' bytes' })); return; }
           let m;
           try {
             m = ARGS.kind === 'memfd' ? Mapping.memfd(size) : Mapping[ARGS.kind](size, { noreserve: true });
           } catch (e) {
             console.log(JSON.stringify({ skip: 'cannot map 5 GiB here: ' + e.code })); return;
           }
           const code = (f) => { try { f(); return 'none'; } catch (e) { return e.constructor.name + ' ' + e.code; } };
           const out = { buffer: code(() => m.buffer), whole: code(() => m.bytes()) };
           const at = 4.5 * 2 ** 30;
           const v = m.bytes({ offset: at, length: 2 * ARGS.page });
           v[0] = 7; v[v.length - 1] = 9;
           out.viewBytes = v.buffer.byteLength;
           out.readBack = [m.bytes({ offset: at, length: 1 })[0], m.bytes({ offset: at + 2 * ARGS.page - 1, length: 1 })[0]];
           out.tail = m.bytes({ offset: size - 8, length: 8 }).length;
           out.outside = code(() => m.bytes({ offset: size - 8, length: 16 }));
           m.unmap();
           out.afterUnmap = { length: v.length, byteLength: v.buffer.byteLength, read: v[0] === undefined };
           out.newView = code(() => new Uint8Array(v.buffer));
           console.log(JSON.stringify(out));
           })();`,
          { args: { kind, page }, timeoutMs: 30000 },
        );
        skipIf(this, out.skip as string | undefined);
        expect(out).to.deep.equal({
          buffer: 'RangeError ERR_BUFFER_TOO_LARGE',
          whole: 'RangeError ERR_BUFFER_TOO_LARGE',
          viewBytes: 2 * page,
          readBack: [7, 9],
          tail: 8,
          outside: 'RangeError ERR_OUT_OF_RANGE',
          afterUnmap: { length: 0, byteLength: 0, read: true },
          newView: 'TypeError undefined',
        });
      });
    }

    it('mremap detaches every view handed out, and the views of many calls are all tracked', function () {
      const out = childJson<Record<string, unknown>>(
        `(() => {
         const { Mapping } = require(ARGS.pkg);
         const { constants } = require('node:buffer');
         const size = 5 * 2 ** 30;
         if (size <= constants.MAX_LENGTH) { console.log(JSON.stringify({ skip: 'this Node makes buffers of ' + constants.MAX_LENGTH + ' bytes' })); return; }
         let m;
         try { m = Mapping.anonymous(size, { noreserve: true }); } catch (e) { console.log(JSON.stringify({ skip: 'cannot map 5 GiB here: ' + e.code })); return; }
         const views = [];
         for (let i = 0; i < 100; i++) { m.bytes({ offset: i * ARGS.page, length: 8 }); views.push(m.bytes({ offset: i * ARGS.page, length: 8 })); }
         views.forEach((v, i) => { v[0] = i; });
         m.mremap(size - ARGS.page);
         const stillLive = views.filter((v) => v.buffer.byteLength !== 0).length;
         const fresh = m.bytes({ offset: 99 * ARGS.page, length: 1 })[0];
         m.unmap();
         console.log(JSON.stringify({ stillLive, fresh }));
         })();`,
        { args: { page }, timeoutMs: 30000 },
      );
      skipIf(this, out.skip as string | undefined);
      expect(out).to.deep.equal({ stillLive: 0, fresh: 99 });
    });

    it('a mapping within the limit keeps one buffer: bytes(range) views it', () => {
      using mem = Mapping.anonymous(4 * page, { noreserve: true });
      const v = mem.bytes({ offset: page, length: 16 });
      expect(v.buffer).to.equal(mem.buffer);
      expect(v.byteOffset).to.equal(page);
    });
  });

  describe('growth never hands out pages that raise SIGBUS', () => {
    let dir: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uffd-limits-'));
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('Mapping.shared cannot grow (its shmem object has a fixed size); it can shrink', () => {
      // Before the fix the mremap succeeded and the first touch of the new page was SIGBUS.
      const out = childJson<Record<string, unknown>>(
        `const { Mapping } = require(ARGS.pkg);
         const m = Mapping.shared(ARGS.page);
         let grow;
         try { m.mremap(2 * ARGS.page); m.bytes()[ARGS.page] = 1; grow = 'grew'; } catch (e) { grow = e.code; }
         const s = Mapping.shared(2 * ARGS.page);
         s.mremap(ARGS.page);
         console.log(JSON.stringify({ grow, length: m.length, shrunk: s.length }));`,
        { args: { page } },
      );
      expect(out).to.deep.equal({ grow: 'ERR_UFFD_CANNOT_GROW', length: page, shrunk: page });
    });

    for (const shared of [true, false]) {
      it(`a ${shared ? 'shared' : 'private'} memfd mapping grows its memfd first: the new pages are usable, and an alias sees them`, () => {
        const out = childJson<Record<string, unknown>>(
          `const { Mapping } = require(ARGS.pkg);
           const fs = require('node:fs');
           const m = Mapping.memfd(ARGS.page, { shared: ARGS.shared });
           m.bytes()[0] = 3;
           m.mremap(4 * ARGS.page);
           const b = m.bytes();
           b[3 * ARGS.page] = 5;
           const alias = m.alias();
           const out = { size: fs.fstatSync(m.fd).size, first: b[0], last: b[3 * ARGS.page], aliasLength: alias.length, aliasLast: alias.bytes()[3 * ARGS.page] };
           m.mremap(2 * ARGS.page);
           out.afterShrink = fs.fstatSync(m.fd).size;
           console.log(JSON.stringify(out));`,
          { args: { page, shared } },
        );
        expect(out).to.deep.equal({
          size: 4 * page,
          first: 3,
          last: 5,
          aliasLength: 4 * page,
          aliasLast: shared ? 5 : 0,
          afterShrink: 4 * page, // never shrunk: an alias may still map the tail
        });
      });
    }

    it('Mapping.file refuses a length past the end of the file, naming both', () => {
      const file = path.join(dir, 'short');
      fs.writeFileSync(file, Buffer.alloc(page + 100, 1));
      let err: (Error & { code?: string }) | undefined;
      try {
        Mapping.file(file, { length: 4 * page }).unmap();
      } catch (e) {
        err = e as Error;
      }
      expect(err).to.be.instanceOf(RangeError);
      expect(err?.code).to.equal('ERR_OUT_OF_RANGE');
      expect(err?.message).to.include(String(4 * page)).and.include(String(page + 100));
      expect(() => Mapping.file(file, { offset: page, length: 2 * page })).to.throw(RangeError, /past the end/);
      // A partial last page is fine (its tail reads as zeros); so is the default length.
      using tail = Mapping.file(file, { length: 2 * page });
      expect(tail.bytes()[page + 99]).to.equal(1);
      expect(tail.bytes()[page + 100]).to.equal(0);
      using whole = Mapping.file(file);
      expect(whole.length).to.equal(2 * page);
    });

    it('a file mapping grows only within its file, by path or by descriptor', () => {
      const file = path.join(dir, 'grow');
      fs.writeFileSync(file, Buffer.alloc(3 * page, 2));
      using m = Mapping.file(file, { length: page });
      m.mremap(3 * page);
      expect(m.bytes()[3 * page - 1]).to.equal(2);
      expect(() => m.mremap(4 * page)).to.throw(RangeError, /past the end/).with.property('code', 'ERR_OUT_OF_RANGE');
      expect(m.length).to.equal(3 * page);
      const fd = fs.openSync(file, 'r');
      try {
        using byFd = Mapping.file(fd, { length: page, shared: false });
        expect(() => byFd.mremap(4 * page)).to.throw(RangeError, /past the end/);
        byFd.mremap(2 * page);
        expect(byFd.bytes()[2 * page - 1]).to.equal(2);
      } finally {
        fs.closeSync(fd);
      }
    });

    it('a device file (no size) still maps', () => {
      using zero = Mapping.file('/dev/zero', { length: 2 * page, shared: false });
      expect(zero.bytes()[page]).to.equal(0);
    });
  });
});
