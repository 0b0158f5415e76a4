/**
 * The fault round trip: a native thread reads one word of every page of a registered area and
 * each fault is resolved with UFFDIO_COPY from a source at the same offset, by
 *   1. a native policy (copyFrom a buffer) on our event thread,
 *   2. a JS 'pagefault' listener on the main thread (uffd.copy),
 *   3. a JS handler in a Worker owning the loop with readEvents (serveFaults + uffd.copy),
 *   4. a native policy with 4 faulting threads: aggregate wall time per fault (1 / throughput).
 * The C reference (bench/c/faults.c) does the same with one poll + read + UFFDIO_COPY handler
 * thread. Every figure is wall time / faults in us, lower is better; and, since wall time on a
 * small shared VM swings with other load, (5) the CPU time our event thread spends per fault
 * against the C handler thread's, which barely does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Mapping, Userfaultfd, shareUffd, testing } from '../../lib/index';
import { pageSize } from '../../lib/core/sysinfo';
import { interleaved, runC, usSince, type BenchCase } from '../harness';
import type { FaultServerData } from '../workers/fault-server';

/** 64 MiB of 4 KiB pages: long enough per run to swamp thread start-up and timer noise. */
const PAGES = 16384;
const ROUNDS = 9;

/** A registered area, a populated source with a different byte in every page, and the uffd. */
class Bench implements Disposable {
  readonly page = pageSize();
  readonly uffd = Userfaultfd.open();
  readonly area = Mapping.anonymous(PAGES * this.page);
  readonly source = Mapping.anonymous(PAGES * this.page, { populate: true });

  constructor() {
    const bytes = this.source.bytes();
    for (let p = 0; p < PAGES; p++) bytes.fill(p & 0xff, p * this.page, (p + 1) * this.page);
    this.uffd.register(this.area);
  }

  /** One run: touch every page from `threads` native threads; us per fault. */
  async run(threads: number): Promise<number> {
    const t = process.hrtime.bigint();
    await testing.touch(this.area, { threads });
    const us = usSince(t) / PAGES;
    // Spot-check the restore (every page is present now, so reading cannot fault), then drop the
    // pages so the next run faults them all again.
    const got = this.area.bytes();
    for (let p = 0; p < PAGES; p += 97) {
      if (got[p * this.page] !== (p & 0xff)) throw new Error(`page ${p} was not restored from the source`);
    }
    this.area.madvise('DONTNEED');
    return us;
  }

  [Symbol.dispose](): void {
    this.uffd.close();
    this.area.unmap();
    this.source.unmap();
  }
}

interface CResult {
  us_per_fault: number;
  handler_cpu_us: number;
}

function cReference(threads: number): number {
  return runC<CResult>('faults', [PAGES, 1, threads]).us_per_fault;
}

/** On-CPU time so far of this process's event threads (named uffd-events), in us. */
function eventThreadCpuUs(): number {
  let ns = 0;
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      if (fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== 'uffd-events') continue;
      ns += Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and the read: it is not ours to count.
    }
  }
  return ns / 1000;
}

async function nativePolicyCpu(): Promise<{ ours: number; c: number }> {
  using b = new Bench();
  b.uffd.handle(b.area, { copyFrom: b.source.buffer });
  const ours = async (): Promise<number> => {
    const before = eventThreadCpuUs();
    await b.run(1);
    return (eventThreadCpuUs() - before) / PAGES;
  };
  return await interleaved(ROUNDS, ours, () => runC<CResult>('faults', [PAGES, 1, 1]).handler_cpu_us);
}

async function nativePolicy(threads: number): Promise<{ ours: number; c: number }> {
  using b = new Bench();
  b.uffd.handle(b.area, { copyFrom: b.source.buffer });
  // await, not return: `using` must not unmap the area while the runs still touch it.
  return await interleaved(ROUNDS, () => b.run(threads), () => cReference(threads));
}

async function jsMainThread(): Promise<{ ours: number; c: number }> {
  using b = new Bench();
  const { uffd, page } = b;
  const area = b.area.address;
  const source = b.source.address;
  uffd.on('pagefault', (ev) => {
    uffd.copy(ev.address, source + (ev.address - area), page);
  });
  // await, not return: `using` must not unmap the area while the runs still touch it.
  return await interleaved(ROUNDS, () => b.run(1), () => cReference(1));
}

async function jsWorker(): Promise<{ ours: number; c: number }> {
  using b = new Bench();
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const data: FaultServerData = { uffd: shareUffd(b.uffd), area: b.area.address, source: b.source.address, stop };
  const worker = new Worker(path.join(__dirname, '..', 'workers', 'fault-server.js'), { workerData: data });
  const exited = new Promise<void>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', () => resolve());
  });
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    return await interleaved(ROUNDS, () => b.run(1), () => cReference(1));
  } finally {
    Atomics.store(stop, 0, 1);
    await exited;
  }
}

export const cases: BenchCase[] = [
  { name: 'fault round trip: native policy', unit: 'us', target: 1.1, run: () => nativePolicy(1) },
  { name: 'fault round trip: JS handler, main thread', unit: 'us', target: 2, run: jsMainThread },
  { name: 'fault round trip: JS handler in a Worker', unit: 'us', target: 1.3, run: jsWorker },
  // Throughput as its inverse, so that every row reads the same way: ratio <= 1/0.9 is >= 0.9x.
  { name: 'faults, 4 threads: native policy (us/fault)', unit: 'us', target: 1 / 0.9, run: () => nativePolicy(4) },
  { name: 'native policy: handler thread CPU per fault', unit: 'us', target: 1.1, run: nativePolicyCpu },
];
