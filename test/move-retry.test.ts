/**
 * The mmap_changing EAGAIN: while a non-cooperative event (here REMOVE) is unread, every MOVE
 * fails with EAGAIN and moves nothing. movePages waits and retries a bounded number of times,
 * then reports it; once the event is read the move goes through. Runs in a child process: the
 * thread that raised the event sleeps until it is read.
 */
import { expect } from 'chai';
import * as path from 'node:path';
import { runChild } from './helpers/child';
import { skipIf, unavailable } from './helpers/memtypes';

const BINDING = path.resolve(__dirname, '..', 'lib', 'core', 'binding.js');

const SCRIPT = `
const { Worker } = require('node:worker_threads');
const fs = require('node:fs');
const u = uffd.Userfaultfd.open({ features: ['MOVE', 'EVENT_REMOVE'] });
const page = uffd.pageSize();
const src = uffd.Mapping.anonymous(4 * page);
src.bytes().fill(9);
const dst = uffd.Mapping.anonymous(4 * page);
const victim = uffd.Mapping.anonymous(page);
victim.bytes()[0] = 1;
u.register(dst);
u.register(victim);
// A worker zaps the registered victim page: the REMOVE event holds it until someone reads it.
const w = new Worker(
  'const { native } = require(' + JSON.stringify(ARGS.binding) + ');' +
  'const { workerData, parentPort } = require("node:worker_threads");' +
  'native.madviseRange(BigInt(workerData.address), workerData.length, 4);' +
  'parentPort.postMessage("zapped");',
  { eval: true, workerData: { address: String(victim.address), length: page } });
const out = { page };
// Wait until the REMOVE event is pending (a Worker takes its time to start, more so under
// emulation), without reading it.
const whenPending = (run) => (u.native.waitReadable(0) ? run() : setTimeout(() => whenPending(run), 5));
whenPending(() => {
  try { u.move(dst.address, src.address, page); } catch (e) { out.raw = { code: e.code, bytes: e.bytes }; }
  const t0 = Date.now();
  try {
    uffd.movePages(u, dst.address, src.address, 4 * page, { retry: { attempts: 3, delayMs: 5 } });
  } catch (e) {
    out.exhausted = { name: e.name, code: e.code, bytes: e.bytes, offset: e.offset, retries: e.report.retries, ioctls: e.report.ioctls };
  }
  out.waitedMs = Date.now() - t0;
  const msg = Buffer.alloc(32);
  out.eventBytes = fs.readSync(u.fd, msg, 0, 32, null);
  out.eventType = msg[0];
  w.once('message', () => {
    const r = uffd.movePages(u, dst.address, src.address, 4 * page);
    out.after = { moved: r.moved, retries: r.retries };
    out.data = Array.from(dst.bytes()).every((b) => b === 9);
    console.log(JSON.stringify(out));
    process.exit(0);
  });
});
`;

describe('movePages: the mmap_changing EAGAIN', function () {
  before(function () {
    skipIf(this, unavailable(undefined, 'MOVE', 'EVENT_REMOVE'));
  });

  it('retries with bounded backoff, reports EAGAIN when the event stays unread, succeeds once it is read', function () {
    const r = runChild(SCRIPT, { timeoutMs: 15000, args: { binding: BINDING } });
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as Record<string, unknown>;
    // The raw ioctl: EAGAIN with nothing done (the result field preset and read signed).
    expect(out.raw).to.deep.equal({ code: 'EAGAIN', bytes: 0 });
    expect(out.exhausted).to.deep.equal({ name: 'MoveError', code: 'EAGAIN', bytes: 0, offset: 0, retries: 3, ioctls: 4 });
    // 5 + 10 + 20 ms of backoff.
    expect(out.waitedMs).to.be.at.least(30);
    expect(out.eventBytes).to.equal(32);
    expect(out.eventType).to.equal(0x15); // UFFD_EVENT_REMOVE
    expect(out.after).to.deep.equal({ moved: 4 * (out.page as number), retries: 0 });
    expect(out.data).to.equal(true);
  });
});
