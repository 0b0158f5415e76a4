/**
 * uffd-unit-tests wp-fork and wp-fork-with-event, on every memory type: a write-protected page's
 * uffd-wp bit (pagemap bit 57) is dropped in a forked child without EVENT_FORK, and kept with it,
 * for a present pte and again after the pte was zapped (MADV_DONTNEED on shared memory, which
 * leaves a marker; MADV_PAGEOUT on private memory, which swaps the page out where swap exists).
 *
 * Node cannot fork itself, so the child is testing.forkHold's (a copy of this process asleep),
 * and its pagemap is read from here. With EVENT_FORK the fork waits until the event thread has
 * read the FORK message, so each case runs in a child process with a hard timeout.
 */
import { expect } from 'chai';
import * as os from 'node:os';
import { childJson } from './helpers/child';
import { MEMTYPES, kernelModeUnavailable, skipIf, unavailable } from './helpers/memtypes';
import { uffdWpBitUnavailable } from './helpers/pagemap';

/**
 * A kernel defect, not ours: Linux 6.1 (seen on Debian's 6.1.0-57, x86_64) keeps the uffd-wp bit
 * of a private hugetlb page in a child forked without EVENT_FORK, where 6.12 and later drop it as
 * uffd-unit-tests expects. The child has no uffd there, so its writes are ordinary copy-on-write
 * faults; only the stale bit shows. Kernels between the two were not tried.
 */
function hugetlbForkKeepsBit(): string | undefined {
  const [major, minor] = os.release().split('.').map(Number);
  return major < 6 || (major === 6 && minor < 12) ? 'Linux < 6.12 keeps the uffd-wp bit of a private hugetlb page in a child forked without EVENT_FORK (a kernel defect, seen on 6.1)' : undefined;
}

interface ForkBits {
  parentPresent: boolean;
  childPresent: boolean;
  zap: string;
  parentZapped: boolean;
  childZapped: boolean;
  forks: number;
}

for (const type of MEMTYPES) {
  describe(`wp-fork [${type.name}]`, () => {
    for (const withEvent of [false, true]) {
      const name = withEvent ? 'wp-fork-with-event' : 'wp-fork';
      it(`${name}: the child ${withEvent ? 'keeps' : 'drops'} the uffd-wp bit, of a present pte and of a zapped one`, function () {
        skipIf(this, unavailable(type, type.wpFeature, withEvent ? 'EVENT_FORK' : undefined) ?? uffdWpBitUnavailable());
        skipIf(this, withEvent ? kernelModeUnavailable() : undefined);
        skipIf(this, !withEvent && type.name === 'hugetlb-private' ? hugetlbForkKeepsBit() : undefined);
        const out = childJson<ForkBits>(
          `
          const fs = require('node:fs');
          const { MEMTYPES } = require(ARGS.memtypes);
          const type = MEMTYPES.find((t) => t.name === ARGS.type);
          const page = uffd.pageSize();
          // Bit 57 of the pagemap entry of one address in process pid.
          const wpBit = (pid, address) => {
            const fd = fs.openSync('/proc/' + pid + '/pagemap', 'r');
            try {
              const b = Buffer.alloc(8);
              fs.readSync(fd, b, 0, 8, Number(address / BigInt(page)) * 8);
              return (b.readBigUInt64LE(0) & (1n << 57n)) !== 0n;
            } finally {
              fs.closeSync(fd);
            }
          };
          // A forked copy of this process, its bit, and the copy killed again.
          const childBit = (address) => {
            const pid = uffd.testing.forkHold(60000);
            try {
              return wpBit(pid, address);
            } finally {
              uffd.testing.reapChild(pid);
            }
          };
          const u = uffd.Userfaultfd.open(ARGS.withEvent ? { features: ['EVENT_FORK'], userModeOnly: false } : {});
          let forks = 0;
          u.on('fork', (ev) => { forks++; ev.uffd.close(); });
          const mem = type.create(2);
          u.register(mem, { wp: true });
          mem.bytes()[0] = 1;                                  // present, before it is protected
          u.writeProtect({ address: mem.address, length: type.unit }, true);
          const parentPresent = wpBit(process.pid, mem.address);
          const childPresent = childBit(mem.address);
          // Zap the pte: shared memory keeps a marker where the page was; private memory is
          // paged out (a swap entry keeps the bit), or stays present where there is no swap.
          let zap = type.shared ? 'DONTNEED' : 'PAGEOUT';
          try {
            mem.madvise(zap, { offset: 0, length: type.unit });
          } catch (err) {
            if (err.code !== 'EINVAL') throw err;
            zap = zap + ': EINVAL';                            // hugetlbfs takes no PAGEOUT
          }
          const parentZapped = wpBit(process.pid, mem.address);
          const childZapped = childBit(mem.address);
          const done = () => forks >= (ARGS.withEvent ? 2 : 0);
          waitFor(done).then(() => {
            u.close();
            console.log(JSON.stringify({ parentPresent, childPresent, zap, parentZapped, childZapped, forks }));
          });
          `,
          { args: { type: type.name, withEvent }, timeoutMs: 30000 },
        );
        expect(out.parentPresent, 'protected in this process').to.equal(true);
        expect(out.childPresent, `present pte in the child (${name})`).to.equal(withEvent);
        expect(out.parentZapped, `after ${out.zap}, still protected here`).to.equal(true);
        expect(out.childZapped, `zapped pte (${out.zap}) in the child (${name})`).to.equal(withEvent);
        expect(out.forks).to.equal(withEvent ? 2 : 0);
      });
    }
  });
}
