/**
 * MOVE fault resolution by a native policy: handle(range, { moveFrom: table }) resolves a fault on
 * page i of the range in the event thread, with no JS involved, by moving the page at table[i]
 * there. Here, a source page that is not there: a hole maps zeros (and the policy does not
 * spin on it); an unmapped source maps zeros too, and is an error event, for its data is gone.
 * Faults are raised by native threads only; the JS thread never touches an unresolved page here.
 *
 * The move table among the other policies is in events.test.ts; that the table is copied when
 * the policy is added (the caller may free it at once), in lifetime.test.ts; the raw ioctl in
 * move.test.ts.
 */
import { expect } from 'chai';
import { FaultError, Mapping, Userfaultfd, testing } from '../lib/index';
import { pageSize } from '../lib/core/sysinfo';
import { skipIf, unavailable } from './helpers/memtypes';
import { waitFor } from './helpers/wait';

const page = pageSize();

describe('move policy: handle() with moveFrom', () => {
  it('a move table entry pointing at a hole in the source maps zeros (and does not spin)', async function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(2 * page);
    using from = Mapping.anonymous(2 * page);
    new Uint8Array(from.buffer, 0, page).fill(0x31); // page 0 present, page 1 a hole
    uffd.register(mem);
    const mover = uffd.handle(mem, { moveFrom: new BigUint64Array([from.address, from.address + BigInt(page)]) });
    await testing.touch(mem);
    expect([0, 1].map((i) => new Uint8Array(mem.buffer)[i * page])).to.deep.equal([0x31, 0]);
    expect(mover.stats()).to.include({ faults: 2, errors: 0 });
  });

  it('a move table entry whose source was unmapped maps zeros and is an ENOENT error event (the data is gone)', async function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(3 * page);
    using kept = Mapping.anonymous(2 * page);
    const gone = Mapping.anonymous(page);
    new Uint8Array(kept.buffer).fill(0x31, 0, page); // kept page 1 stays a hole
    new Uint8Array(gone.buffer).fill(0x32);
    uffd.register(mem);
    const errors: FaultError[] = [];
    uffd.on('error', (err) => errors.push(err as FaultError));
    const table = new BigUint64Array([kept.address, kept.address + BigInt(page), gone.address]);
    const mover = uffd.handle(mem, { moveFrom: table });
    gone.unmap();
    await testing.touch(mem);
    await waitFor(() => errors.length > 0);
    expect([0, 1, 2].map((i) => new Uint8Array(mem.buffer)[i * page])).to.deep.equal([0x31, 0, 0]);
    expect(errors).to.have.length(1);
    expect(errors[0]).to.include({ code: 'ENOENT', ioctl: 'UFFDIO_MOVE', address: mem.address + BigInt(2 * page), policy: mover.id });
    expect(mover.stats()).to.include({ faults: 3, errors: 1 });
  });
});
