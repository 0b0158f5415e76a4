/**
 * examples/snapshot: incremental snapshots with WriteTracker. Each round must save exactly the
 * pages written since the round before, and every round must restore byte for byte.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import type { Mapping } from '../lib/index';
import { IncrementalSnapshot, restore } from '../examples/snapshot/snapshot';
import { MEMTYPES, kernel, skipIf, unavailable } from './helpers/memtypes';

describe('examples/snapshot: incremental snapshot of a Mapping', function () {
  const file = path.join(os.tmpdir(), `uffd-snapshot-test-${process.pid}.bin`);
  afterEach(() => fs.rmSync(file, { force: true }));

  for (const type of MEMTYPES.filter((t) => ['anon', 'shmem', 'hugetlb'].includes(t.name))) {
    it(`${type.name}: each round saves only the pages written since the last; every round restores byte for byte`, function () {
      skipIf(this, unavailable(type, 'WP_ASYNC') ?? (kernel().pagemapScan.supported ? undefined : 'PAGEMAP_SCAN is unsupported (Linux 6.7)'));
      // Ten units at least (the rounds write unit 9); with huge pages above 4 MiB (arm64 with
      // 16 KiB pages has 32 MiB ones) that is hundreds of MiB copied each round: skip there.
      skipIf(this, type.hugetlb && type.unit > 4 << 20 ? `huge pages of ${type.unit >> 20} MiB make this round trip too large` : undefined);
      const units = type.hugetlb ? 12 : 64;
      const mem: Mapping = type.create(units);
      try {
        const bytes = mem.bytes();
        bytes[17] = 1; // something before the first round
        const expected: Buffer[] = [];
        const writes: number[][] = [[], [3, 4, 9], [], [0, units - 1, 9], [5]];
        using snap = new IncrementalSnapshot(mem, file);
        writes.forEach((units, round) => {
          for (const u of units) bytes.fill(round + 1, u * type.unit + 100, u * type.unit + 200);
          const info = snap.round();
          expect(info.round).to.equal(round);
          if (round === 0) {
            expect(info.bytes).to.equal(mem.length);
          } else {
            expect(info.bytes, `round ${round}`).to.equal(new Set(units).size * type.unit);
          }
          expected.push(Buffer.from(bytes));
        });
        const fileSize = fs.statSync(file).size;
        // The log holds the full image once plus the written pages, headers and indexes.
        expect(fileSize).to.be.below(mem.length + 8 * type.unit + 4096);
        expected.forEach((image, round) => expect(restore(file, round).equals(image), `round ${round}`).to.equal(true));
        expect(restore(file).equals(expected[expected.length - 1])).to.equal(true);
      } finally {
        mem.unmap();
      }
    });
  }

  it('restore refuses a corrupted, truncated or foreign file, and a round it does not hold', function () {
    const anon = MEMTYPES[0];
    skipIf(this, unavailable(anon, 'WP_ASYNC'));
    using mem = anon.create(8);
    {
      using snap = new IncrementalSnapshot(mem, file);
      snap.round();
      mem.bytes()[4096 * 2] = 7;
      snap.round();
    }
    expect(restore(file, 1)[4096 * 2]).to.equal(7);
    expect(() => restore(file, 2)).to.throw(/holds rounds 0..1/);
    const data = fs.readFileSync(file);
    data[data.length - 1] ^= 0xff;
    fs.writeFileSync(file, data);
    expect(() => restore(file)).to.throw(/checksum/);
    fs.writeFileSync(file, data.subarray(0, data.length - 10));
    expect(() => restore(file)).to.throw(/truncated/);
    fs.writeFileSync(file, 'not a snapshot at all, no');
    expect(() => restore(file)).to.throw(/not a snapshot/);
  });
});
