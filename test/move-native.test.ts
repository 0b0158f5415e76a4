/**
 * The addon's own checks on the move entry points (the second line behind lib/memory/move.ts): anything
 * at all passed straight to the binding throws TypeError / RangeError and never crashes.
 */
import { expect } from 'chai';
import { native, type NativeUffd } from '../lib/core/binding';
import { Userfaultfd } from '../lib/index';
import { PAGE } from './helpers/move';

describe('native move guards', function () {
  const state = (): Float64Array => new Float64Array(4);
  const op = (dst: bigint, src: bigint, len: bigint): BigUint64Array => new BigUint64Array([dst, src, len]);
  const P = BigInt(PAGE);

  let uffd: Userfaultfd;
  let h: NativeUffd;
  beforeEach(function () {
    uffd = Userfaultfd.open();
    h = uffd.native;
  });
  afterEach(function () {
    uffd.close();
  });

  it('moveBatch takes only an open Userfaultfd handle', function () {
    expect(() => native.moveBatch(3 as unknown as NativeUffd, op(P, 2n * P, P), 1, 0n, state())).to.throw(TypeError);
    expect(() => native.moveBatch({} as NativeUffd, op(P, 2n * P, P), 1, 0n, state())).to.throw(TypeError);
    uffd.close();
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, state())).to.throw().with.property('code', 'ERR_UFFD_CLOSED');
  });

  it('moveBatch rejects bad arguments before any ioctl', function () {
    expect(() => native.moveBatch(h, [] as unknown as BigUint64Array, 0, 0n, state())).to.throw(TypeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 2, 0n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P + 1n, 2n * P, P), 1, 0n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, 0n), 1, 0n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(-P & ((1n << 64n) - 1n), 2n * P, 2n * P), 1, 0n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 4n, state())).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, new Float64Array(2))).to.throw(TypeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, new Float64Array([5, 0, 0, 0]))).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, new Float64Array([0, 1, 0, 0]))).to.throw(RangeError);
    expect(() => native.moveBatch(h, op(P, 2n * P, P), 1, 0n, new Float64Array([0, Number(P), 0, 0]))).to.throw(RangeError);
  });

  it('madviseRange takes only DONTNEED and REMOVE, on aligned ranges', function () {
    expect(() => native.madviseRange(PAGE, PAGE, 14)).to.throw(RangeError);
    expect(() => native.madviseRange(PAGE + 1, PAGE, 4)).to.throw(RangeError);
    expect(() => native.madviseRange(PAGE, 0, 4)).to.throw(RangeError);
    expect(() => native.madviseRange('x' as unknown as number, PAGE, 4)).to.throw(TypeError);
  });

  it('forkHold and reapChild check their numbers', function () {
    expect(() => native.testing.forkHold(10 ** 9)).to.throw(RangeError);
    expect(() => native.testing.forkHold(-1)).to.throw(RangeError);
    expect(() => native.testing.reapChild(0)).to.throw(RangeError);
    // Never our own pid or anyone else's: only children forkHold made (errno ECHILD).
    expect(() => native.testing.reapChild(process.pid)).to.throw().with.property('errno', -10);
  });
});
