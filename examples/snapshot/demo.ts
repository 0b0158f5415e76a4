/**
 * `node dist/examples/snapshot/demo.js [file]`: 64 MiB of memory, 10 rounds of random writes,
 * an incremental snapshot after each; then every round is restored and compared byte for byte.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Mapping, pageSize } from 'userfaultfd';
import { IncrementalSnapshot, restore } from './snapshot';

const file = process.argv[2] ?? path.join(os.tmpdir(), 'uffd-snapshot-demo.bin');
const page = pageSize();
using mem = Mapping.anonymous(64 << 20);
const bytes = mem.bytes();
const copies: Buffer[] = [];
{
  using snap = new IncrementalSnapshot(mem, file);
  for (let round = 0; round < 10; round++) {
    if (round > 0) {
      for (let i = 0; i < 200; i++) bytes[Math.floor(Math.random() * (mem.length / page)) * page + (i % page)] = round;
    }
    const info = snap.round();
    copies.push(Buffer.from(bytes));
    console.log(`round ${info.round}: ${info.regions} regions, ${info.bytes} bytes`);
  }
}
copies.forEach((expected, round) => {
  if (!restore(file, round).equals(expected)) throw new Error(`round ${round} does not restore`);
});
console.log(`every round restores byte for byte from ${file}`);
