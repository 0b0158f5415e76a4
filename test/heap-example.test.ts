/**
 * examples/heap: a toy object heap collected by UFFDIO_MOVE compaction, stop-the-world and
 * concurrent; every live object's bytes and references are verified after each collection.
 */
import { expect } from 'chai';
import * as path from 'node:path';
import { Userfaultfd } from '../lib/index';
import { NULL_REF, randomGraph, ToyHeap, verify } from '../examples/heap/heap';
import { runChild } from './helpers/child';
import { skipIf, unavailable } from './helpers/memtypes';

describe('examples/heap', function () {
  before(function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
  });

  it('collects twice (stop-the-world) and every live object survives byte for byte', function () {
    const uffd = Userfaultfd.open({ features: ['MOVE'] });
    const heap = new ToyHeap(512);
    try {
      const { edges } = randomGraph(heap, 3000, 8, 11);
      const marked = heap.mark().size;
      const first = heap.collect(uffd);
      expect(first.live).to.equal(marked);
      expect(first.compaction.report.atomic).to.equal(true);
      expect(first.compaction.holes).to.equal(0);
      expect(verify(heap, edges).size).to.equal(marked);
      heap.roots = heap.roots.slice(0, 2);
      const liveNow = heap.mark().size;
      const second = heap.collect(uffd);
      expect(second.live).to.equal(liveNow);
      expect(second.compaction.bytes).to.be.at.most(first.compaction.bytes);
      expect(verify(heap, edges).size).to.equal(liveNow);
      expect(heap.roots.every((r) => r !== NULL_REF && r < second.compaction.bytes)).to.equal(true);
    } finally {
      heap.unmap();
      uffd.close();
    }
  });

  it('collects concurrently: pointers fixed at once through on-demand moves, every object intact', async function () {
    const uffd = Userfaultfd.open({ features: ['MOVE'] });
    const heap = new ToyHeap(512);
    try {
      const { edges } = randomGraph(heap, 3000, 8, 5);
      const marked = heap.mark().size;
      const { live, compaction } = await heap.collectConcurrent(uffd);
      expect(live).to.equal(marked);
      // The fix-up touched every live page before the background pass could: all on demand.
      expect(compaction.faultsServed).to.be.at.least(1);
      expect(compaction.pagesMoved).to.equal(compaction.forwarding.size);
      expect(verify(heap, edges).size).to.equal(marked);
      // And a stop-the-world cycle after it still finds everything.
      heap.collect(uffd);
      expect(verify(heap, edges).size).to.equal(marked);
    } finally {
      heap.unmap();
      uffd.close();
    }
  });

  it('the runnable example, and allocation after a collection, in a child with a hard timeout', function () {
    // After collect() the to-space is unregistered: allocating there must fault normally, not
    // sleep. Checked in a child so that a regression hangs the child, not the suite.
    const example = path.resolve(__dirname, '..', 'examples', 'heap');
    const r = runChild(
      `const { main } = require(${JSON.stringify(path.join(example, 'main.js'))});
       const { ToyHeap, randomGraph } = require(${JSON.stringify(path.join(example, 'heap.js'))});
       main().then(async () => {
         const u = uffd.Userfaultfd.open({ features: ['MOVE'] });
         const heap = new ToyHeap(64);
         randomGraph(heap, 200, 4);
         heap.collect(u);
         const a = heap.alloc(1, 100);
         await heap.collectConcurrent(u);
         const b = heap.alloc(1, 100);
         console.log('allocated', a >= 0 && b >= 0 && heap.intact(b));
         u.close();
       });`,
      { timeoutMs: 20000 },
    );
    expect(r.timedOut, r.stderr).to.equal(false);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/cycle 1 \(stop-the-world\): \d+ live objects, \d+ pages moved .* verified, atomic true/);
    expect(r.stdout).to.match(/cycle 2 \(concurrent\): \d+ live objects, \d+ pages moved \(\d+ on demand\).* verified, atomic true/);
    expect(r.stdout).to.match(/cycle 3 \(stop-the-world\): /);
    expect(r.stdout).to.include('allocated true');
  });
});
