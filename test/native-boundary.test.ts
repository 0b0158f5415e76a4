/**
 * The seam between the TS layer and the addon: one descriptor per policy kind, ids that are never
 * truncated, and the uffd_msg layout both sides decode by. Calls go straight to the native handle,
 * as a caller that skips the TS checks would make them: each must be refused with a JS error,
 * never reach the kernel with garbage or act on the wrong object.
 */
import { expect } from 'chai';
import { Mapping, Userfaultfd, testing } from '../lib/index';
import { native, type NativePolicySpec } from '../lib/core/binding';
import { EVENT, MSG, POLICY_KINDS, layoutMismatches } from '../lib/core/msg-layout';
import { pageSize } from '../lib/core/sysinfo';

const page = pageSize();

describe('native boundary: the uffd_msg layout', () => {
  it('the TS offsets, event codes and policy kinds are the ones the addon was compiled with', () => {
    expect(native.layout.msg.size).to.equal(MSG.size);
    expect(native.layout.events.pagefault).to.equal(EVENT.pagefault);
    expect(native.layout.policyKinds).to.deep.equal([...POLICY_KINDS]);
    expect(layoutMismatches(native.layout)).to.deep.equal([]);
  });

  it('a layout that differs in one field is named, field by field', () => {
    const moved = { ...native.layout, msg: { ...native.layout.msg, pagefaultAddress: 24 } };
    expect(layoutMismatches(moved)).to.deep.equal(['msg.pagefaultAddress: 16 != 24']);
    const renamed = { ...native.layout, policyKinds: ['zero'] };
    expect(layoutMismatches(renamed)).to.have.length(1);
  });
});

describe('native boundary: addPolicy descriptors', () => {
  let u: Userfaultfd;
  let mem: Mapping;
  beforeEach(() => {
    u = Userfaultfd.open();
    mem = Mapping.anonymous(4 * page);
    u.register(mem);
    u.events(); // starts the event thread, as handle() would
  });
  afterEach(() => {
    u.close();
    mem.unmap();
  });
  const range = () => ({ address: mem.address, length: mem.length, unit: page });
  const add = (spec: unknown) => u.native.addPolicy(spec as NativePolicySpec);

  it('refuses a descriptor that is not an object, or names no known kind', () => {
    expect(() => add(0)).to.throw(TypeError, /policy must be an object/);
    expect(() => add({ ...range() })).to.throw(TypeError, /policy kind must be one of/);
    expect(() => add({ ...range(), kind: 5 })).to.throw(TypeError, /policy kind must be one of/);
    expect(() => add({ ...range(), kind: 'moveFrom' })).to.throw(TypeError, /policy kind must be one of/);
  });

  it("refuses a kind's missing or mistyped fields", () => {
    expect(() => add({ kind: 'zero', length: mem.length, unit: page })).to.throw(TypeError, /policy address/);
    expect(() => add({ ...range(), kind: 'copyBuffer' })).to.throw(TypeError, /copy source must be a buffer/);
    expect(() => add({ ...range(), kind: 'copyFd', fd: 'x', offset: 0 })).to.throw(TypeError, /fd must be a number/);
    expect(() => add({ ...range(), kind: 'moveTable', table: new Uint8Array(4) })).to.throw(TypeError, /BigUint64Array/);
    expect(() => add({ ...range(), kind: 'moveTable', table: new BigUint64Array(4), claims: new Uint8Array(4) })).to.throw(TypeError, /SharedArrayBuffer/);
  });

  it('installs each kind from its descriptor, and the installed policy serves faults', async () => {
    const id = add({ ...range(), kind: 'copyBuffer', buffer: Buffer.alloc(mem.length, 7) });
    await testing.touch(mem.address, mem.length); // native threads: the policy serves them
    expect(mem.bytes()[page]).to.equal(7);
    expect(u.native.policyStats(id)?.faults).to.equal(4);
  });

  it('a policy id is never truncated: 2^32 + id names no policy', () => {
    const id = add({ ...range(), kind: 'zero' });
    expect(() => u.native.removePolicy(2 ** 32 + id)).to.throw(RangeError, /id must be an integer/);
    expect(() => u.native.policyStats(2 ** 32 + id)).to.throw(RangeError, /id must be an integer/);
    expect(u.native.policyStats(id)).to.not.equal(undefined); // still installed
    expect(u.native.removePolicy(id)).to.equal(true);
  });
});

describe('native boundary: test hooks', () => {
  it('this checkout built them in; without them, testing.forkHold and reapChild say so with a code', () => {
    expect(native.testHooks, 'a build from a checkout has the test hooks').to.not.equal(undefined);
    const hooks = native.testHooks;
    try {
      delete (native as { testHooks?: unknown }).testHooks; // as in a prebuild
      expect(() => testing.forkHold(1)).to.throw().with.property('code', 'ERR_UFFD_NO_TEST_HOOKS');
      expect(() => testing.reapChild(1)).to.throw().with.property('code', 'ERR_UFFD_NO_TEST_HOOKS');
    } finally {
      native.testHooks = hooks;
    }
  });
});
