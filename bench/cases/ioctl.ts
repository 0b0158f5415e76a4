/**
 * Per-call overhead of the ioctl wrappers: UFFDIO_WAKE (no work in the kernel to speak of) and
 * UFFDIO_COPY of one 4 KiB page, ours through the binding vs the same loop in C.
 */
import { Mapping, Userfaultfd } from '../../lib/index';
import { pageSize } from '../../lib/core/sysinfo';
import { runC, usSince, type BenchCase } from '../harness';

const ITERATIONS = 200000;
const PAGES = 4096;

function measureOurs(): { wake: number; copy: number } {
  const page = pageSize();
  using uffd = Userfaultfd.open();
  using area = Mapping.anonymous(PAGES * page);
  const src = Buffer.alloc(page, 0x5a);
  uffd.register(area);
  const range = { address: area.address, length: page };
  let t = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) uffd.wake(range);
  const wake = usSince(t) / ITERATIONS;
  let copyTotal = 0;
  for (let round = 0; round < 4; round++) {
    t = process.hrtime.bigint();
    for (let p = 0; p < PAGES; p++) uffd.copy(area.address + BigInt(p * page), src, page);
    copyTotal += usSince(t);
    area.madvise('DONTNEED');
  }
  return { wake, copy: copyTotal / (4 * PAGES) };
}

let cached: { ours: { wake: number; copy: number }; c: { wake_us: number; copy_us: number } } | undefined;
function both(): NonNullable<typeof cached> {
  cached ??= { ours: measureOurs(), c: runC('ioctl_overhead', [ITERATIONS, PAGES]) };
  return cached;
}

export const cases: BenchCase[] = [
  { name: 'ioctl overhead: UFFDIO_WAKE', unit: 'us', run: async () => ({ ours: both().ours.wake, c: both().c.wake_us }) },
  { name: 'ioctl overhead: UFFDIO_COPY 4 KiB', unit: 'us', run: async () => ({ ours: both().ours.copy, c: both().c.copy_us }) },
];
