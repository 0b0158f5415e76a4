/**
 * Descriptors that are not ours are never closed or adopted: the process-wide table of
 * descriptors shared with Workers (shareUffd / openShared / closeShared), and fromFd's check
 * that a descriptor is a userfaultfd (and its making it non-blocking).
 *
 * Before the fixes, each case here closed or adopted whatever file had the number at the time,
 * so each runs in a child process: the file closed could have been one of mocha's.
 */
import { expect } from 'chai';
import * as path from 'node:path';
import { PACKAGE, childJson } from './helpers/child';

const BINDING = path.join(path.dirname(PACKAGE), 'core', 'binding.js');

describe('shared descriptors', () => {
  it('closeShared twice: the second is ERR_UFFD_NOT_SHARED and leaves the file that reused the number open', () => {
    const out = childJson<Record<string, unknown>>(`
      const fs = require('node:fs');
      const { Userfaultfd, shareUffd, closeShared } = require(ARGS.pkg);
      const code = (f) => { try { f(); return 'none'; } catch (e) { return e.code; } };
      const u = Userfaultfd.open();
      const s = shareUffd(u);
      closeShared(s);
      const other = fs.openSync('/dev/null', 'r'); // the lowest free number: the one just closed
      const out = { reused: other === s.fd, second: code(() => closeShared(s)), otherOpen: code(() => fs.fstatSync(other)) };
      u.close();
      console.log(JSON.stringify(out));
    `);
    expect(out).to.deep.equal({ reused: true, second: 'ERR_UFFD_NOT_SHARED', otherOpen: 'none' });
  });

  it('openShared twice, or openShared then closeShared: the second is refused and the adopted uffd keeps working', () => {
    const out = childJson<Record<string, unknown>>(`
      const { Userfaultfd, Mapping, shareUffd, openShared, closeShared } = require(ARGS.pkg);
      const code = (f) => { try { f(); return 'none'; } catch (e) { return e.code; } };
      const u = Userfaultfd.open();
      const s = shareUffd(u);
      const a = openShared(s);
      const out = { again: code(() => openShared(s)), close: code(() => closeShared(s)) };
      const mem = Mapping.anonymous(uffd.pageSize());
      a.register(mem); // the adopted descriptor is still open
      out.registered = true;
      out.fdSame = a.fd === s.fd;
      a.close();
      out.afterClose = code(() => closeShared(s));
      u.close();
      console.log(JSON.stringify(out));
    `);
    expect(out).to.deep.equal({ again: 'ERR_UFFD_NOT_SHARED', close: 'ERR_UFFD_NOT_SHARED', registered: true, fdSame: true, afterClose: 'ERR_UFFD_NOT_SHARED' });
  });

  it('closeShared of a descriptor shareUffd did not make, or one closed by other means, closes nothing', () => {
    const out = childJson<Record<string, unknown>>(`
      const fs = require('node:fs');
      const { Userfaultfd, shareUffd, closeShared } = require(ARGS.pkg);
      const code = (f) => { try { f(); return 'none'; } catch (e) { return e.code; } };
      const file = fs.openSync('/dev/null', 'r');
      const out = {
        forged: code(() => closeShared({ fd: file, token: 1, features: [], userModeOnly: true })),
        bare: code(() => closeShared({ fd: file })),
        nothing: code(() => closeShared(null)),
      };
      const u = Userfaultfd.open();
      const s = shareUffd(u);
      fs.closeSync(s.fd); // behind the table's back
      const other = fs.openSync('/dev/null', 'r');
      out.reused = other === s.fd;
      out.closedBehind = code(() => closeShared(s));
      out.fileOpen = code(() => fs.fstatSync(file));
      out.otherOpen = code(() => fs.fstatSync(other));
      u.close();
      console.log(JSON.stringify(out));
    `);
    expect(out).to.deep.equal({
      forged: 'ERR_UFFD_NOT_SHARED',
      bare: 'ERR_INVALID_ARG_TYPE',
      nothing: 'ERR_INVALID_ARG_TYPE',
      reused: true,
      closedBehind: 'ERR_UFFD_NOT_SHARED',
      fileOpen: 'none',
      otherOpen: 'none',
    });
  });

  it('the table is per process: a descriptor a Worker adopted cannot be closed from the main thread, and one given back in the main thread cannot be adopted by a Worker', () => {
    const out = childJson<Record<string, unknown>>(`
      (async () => {
        const { Worker } = require('node:worker_threads');
        const { Userfaultfd, shareUffd, closeShared } = require(ARGS.pkg);
        const code = (f) => { try { f(); return 'none'; } catch (e) { return e.code; } };
        const u = Userfaultfd.open();
        const run = (s) => new Promise((resolve, reject) => {
          const w = new Worker(\`
            const { workerData, parentPort } = require('node:worker_threads');
            const { openShared } = require(workerData.pkg);
            try { const a = openShared(workerData.s); parentPort.postMessage('adopted'); setTimeout(() => a.close(), 200); }
            catch (e) { parentPort.postMessage(e.code); }
          \`, { eval: true, workerData: { pkg: ARGS.pkg, s } });
          w.once('message', resolve);
          w.once('error', reject);
        });
        const s1 = shareUffd(u);
        const out = { worker: await run(s1), mainClose: code(() => closeShared(s1)) };
        const s2 = shareUffd(u);
        closeShared(s2);
        out.workerAfterClose = await run(s2);
        u.close();
        console.log(JSON.stringify(out));
      })();
    `);
    expect(out).to.deep.equal({ worker: 'adopted', mainClose: 'ERR_UFFD_NOT_SHARED', workerAfterClose: 'ERR_UFFD_NOT_SHARED' });
  });
});

describe('Userfaultfd.fromFd adopts only a userfaultfd', () => {
  it('a regular file, stdin or a closed number is refused with a coded error naming the fd, and stays open', () => {
    // Before, fromFd took any descriptor: on a file the event thread decoded its bytes as
    // events (fake FORKs adopting and closing random descriptor numbers) and spun.
    const out = childJson<Record<string, unknown>>(`
      const fs = require('node:fs');
      const { Userfaultfd } = require(ARGS.pkg);
      const code = (f) => { try { f(); return 'none'; } catch (e) { return { name: e.name, code: e.code, fd: e.fd, named: /fd[ /]\\d+/.test(e.message) }; } };
      const file = fs.openSync(process.execPath, 'r');
      const { native } = require(ARGS.binding);
      const out = {
        file: code(() => Userfaultfd.fromFd(file)),
        fileNoDup: code(() => Userfaultfd.fromFd(file, { dup: false })),
        stdin: code(() => Userfaultfd.fromFd(0, { dup: false })),
        notOpen: code(() => Userfaultfd.fromFd(100000)),
        nativeToo: code(() => new native.UffdHandle(file, false)),
        fileOpen: fs.fstatSync(file).isFile(),
        expectedFd: file,
      };
      console.log(JSON.stringify(out));
    `, { args: { binding: BINDING } });
    const refused = (fd: unknown) => ({ name: 'TypeError', code: 'ERR_UFFD_NOT_USERFAULTFD', fd, named: true });
    expect(out).to.deep.equal({
      file: refused(out.expectedFd),
      fileNoDup: refused(out.expectedFd),
      stdin: refused(0),
      notOpen: { name: 'UffdError', code: 'EBADF', fd: 100000, named: true },
      nativeToo: refused(out.expectedFd),
      fileOpen: true,
      expectedFd: out.expectedFd,
    });
  });

  it('a blocking userfaultfd is made O_NONBLOCK, so readEvents() keeps its timeout (it used to block in read(2) forever)', () => {
    // A blocking uffd polls as POLLERR at once; the read that follows then sleeps until a fault
    // comes, so a Worker's serveFaults loop never saw its stop flag again.
    const out = childJson<Record<string, unknown>>(`
      const { Userfaultfd, Mapping, pageSize } = require(ARGS.pkg);
      const { native } = require(ARGS.binding);
      const owner = Userfaultfd.open();
      native.testHooks.nonblocking(owner.fd, false);
      const blockingBefore = !native.testHooks.nonblocking(owner.fd);
      const u = Userfaultfd.fromFd(owner.fd, { features: owner.features });
      const out = { blockingBefore, nonblockingAfter: native.testHooks.nonblocking(u.fd) };
      u.register(Mapping.anonymous(pageSize()));
      out.events = u.readEvents({ timeoutMs: 50 }).length;
      u.close();
      owner.close();
      console.log(JSON.stringify(out));
    `, { args: { binding: BINDING }, timeoutMs: 10000 });
    expect(out).to.deep.equal({ blockingBefore: true, nonblockingAfter: true, events: 0 });
  });
});
