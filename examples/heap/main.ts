/**
 * `node dist/examples/heap/main.js`: builds a random object graph in a toy heap, drops most of
 * it, collects three times with UFFDIO_MOVE compaction (stop-the-world, concurrent,
 * stop-the-world), and verifies every live object's bytes and references after each collection.
 */
import { Userfaultfd } from 'userfaultfd';
import { randomGraph, ToyHeap, verify } from './heap';

export async function main(): Promise<void> {
  const uffd = Userfaultfd.open({ features: ['MOVE'] });
  const heap = new ToyHeap(1024);
  try {
    const { edges } = randomGraph(heap, 6000, 12);
    for (let cycle = 1; cycle <= 3; cycle++) {
      const before = heap.top;
      const t0 = process.hrtime.bigint();
      // Cycles 1 and 3 stop the world; cycle 2 is concurrent.
      const concurrent = cycle === 2;
      const { live, compaction } = concurrent ? await heap.collectConcurrent(uffd) : heap.collect(uffd);
      const us = Number(process.hrtime.bigint() - t0) / 1000;
      const reached = verify(heap, edges);
      process.stdout.write(
        `cycle ${cycle} (${concurrent ? 'concurrent' : 'stop-the-world'}): ${live} live objects, ` +
          `${compaction.pagesMoved} pages moved (${compaction.faultsServed} on demand) in ${compaction.moves} moves ` +
          `(${before} -> ${compaction.bytes} bytes, ${us.toFixed(0)} us incl. mark and fix-up), ${reached.size} verified, ` +
          `atomic ${compaction.report.atomic}\n`,
      );
      // Drop half the roots so the next cycle has garbage to leave behind.
      heap.roots = heap.roots.filter((_, i) => i % 2 === 0);
    }
  } finally {
    heap.unmap();
    uffd.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exitCode = 1;
  });
}
