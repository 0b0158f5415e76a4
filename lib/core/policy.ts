/**
 * Native policies: faults in a range resolved inside the event thread, with no JS hop.
 * @module
 */
import { types } from 'node:util';
import type { NativePolicyKindSpec, NativeUffd, PolicyStats } from './binding';
import { invalidType, outOfRange } from './errors';
import { toBufferSource, toLength } from './validate';

/**
 * How a policy resolves the MISSING faults of its range. In every policy range, WP faults are
 * resolved by un-protecting the page and MINOR faults by UFFDIO_CONTINUE.
 *
 * - `{ zero: true }`: zero pages.
 * - `{ copyFrom: buffer }`: the bytes at the fault's offset in the range, from a Buffer,
 *   TypedArray or ArrayBuffer at least as long as the range (kept alive by the policy). It is
 *   not copied: do not transfer it (postMessage, structuredClone, `transfer()`) or shrink it
 *   while the policy is installed, or the kernel copies from memory it no longer owns (wrong
 *   bytes, or EFAULT error events). Not a SharedArrayBuffer: Node-API cannot reach its memory.
 * - `{ copyFrom: { fd, offset } }`: the bytes at `offset` + the fault's offset in a file (read
 *   with pread; past the end of the file: zeros, as in a file mapping). The policy keeps its own
 *   duplicate of the descriptor, so the caller may close theirs. A descriptor pread cannot read
 *   (a directory, pipe, socket or write-only file) is refused by `handle()`. A read that fails
 *   later (EIO) never becomes zeros: the unit is poisoned (UFFDIO_POISON, Linux 6.6), so the
 *   faulting thread gets SIGBUS as it would from a file mapping, and an 'error' event (FaultError,
 *   `syscall: 'pread'`) is counted in `stats().errors`. Without POISON the fault stays unresolved
 *   and the 'error' event carries its address for you to resolve (the JS thread's own fault,
 *   which cannot wait for its handler, gets zeros there, with the event).
 * - `{ continue: true }`: for MINOR registrations. A MISSING fault in its range (a page never
 *   populated, where a MISSING registration is combined with MINOR) gets a zero page, as
 *   anonymous memory would.
 * - `{ unprotect: true }`: for WP registrations. A MISSING fault in its range (a page never
 *   written, where MISSING is registered too) likewise gets a zero page.
 * - `{ moveFrom: table }`: UFFDIO_MOVE from `table[i]`, the source address of the range's unit
 *   `i` (0: a zero page) — the on-demand half of a concurrent compactor. A source page that is a
 *   hole maps a zero page. A source no longer mapped at all (unmapped after the table was made)
 *   also maps a zero page, so that the faulting thread goes on, but it is an 'error' event too
 *   (FaultError, code ENOENT, ioctl UFFDIO_MOVE), because its data is gone. The table is copied
 *   when the policy is installed: later changes to it have no effect. With `claims` (a Uint8Array
 *   over a SharedArrayBuffer, one byte per table entry), the event thread sets `claims[i]` to 1
 *   before it tries unit `i`: a concurrent mover whose UFFDIO_MOVE fails with EEXIST reads it
 *   (`Atomics.load`) to tell a page moved on demand from a destination someone else mapped.
 *   Checking the source instead is not enough: khugepaged may fill a moved-out hole with a zeroed
 *   page. (The event thread writes the claims in place, so they must live in memory that JS can
 *   never detach or shrink under it: a plain ArrayBuffer can be transferred away and freed.)
 */
export type Policy =
  | { zero: true }
  | { copyFrom: ArrayBufferView | ArrayBuffer }
  | { copyFrom: { fd: number; offset?: number } }
  | { continue: true }
  | { unprotect: true }
  | { moveFrom: BigUint64Array; claims?: Uint8Array };

/** Options of {@link Userfaultfd.handle}. */
export interface PolicyOptions {
  /**
   * Bytes resolved per fault: a power of two, at least the page size (the default) and at most
   * the range's length. Larger units fault in read-ahead; hugetlbfs ranges need their huge page
   * size.
   */
  unit?: number;
  /**
   * An object the policy keeps referenced while it is installed, so the garbage collector cannot
   * unmap it under the event thread: the Mapping a `moveFrom` table points into, say. A Mapping
   * that holds every address of a `moveFrom` table is also pinned: an explicit `unmap()` hides
   * it from JS at once but leaves the munmap to the policy's removal, so no later mapping at
   * that address is ever moved from.
   */
  retain?: object;
}

/** An installed policy: its counters, and removal. */
export class PolicyHandle {
  /** @internal */
  constructor(
    private readonly uffd: NativeUffd,
    /** The policy's id, as 'error' events name it. */
    readonly id: number,
    /** The range it covers. */
    readonly address: bigint,
    readonly length: number,
    private readonly onRemoved: () => void = () => {},
  ) {}

  /** The counters: faults, bytes, eexist, retries, errors. Zeros once removed. */
  stats(): PolicyStats {
    return this.uffd.policyStats(this.id) ?? { faults: 0, bytes: 0, eexist: 0, retries: 0, errors: 0 };
  }

  /** Stop resolving this range natively: its faults go to JS again. Returns false if already removed. */
  remove(): boolean {
    const removed = this.uffd.removePolicy(this.id);
    if (removed) this.onRemoved();
    return removed;
  }
}

/** The native descriptor of a policy spec, without its range and unit (see NativePolicySpec). */
export function nativePolicy(policy: Policy, length: number): NativePolicyKindSpec {
  if (typeof policy !== 'object' || policy === null) throw invalidType('policy must be an object');
  const p = policy as Record<string, unknown>;
  const keys = Object.keys(p).filter((k) => !(k === 'claims' && 'moveFrom' in p));
  if (keys.length !== 1) throw invalidType(`a policy has exactly one of zero, copyFrom, continue, unprotect, moveFrom; got ${keys.join(', ') || 'none'}`);
  if (p.zero === true) return { kind: 'zero' };
  if (p.continue === true) return { kind: 'continue' };
  if (p.unprotect === true) return { kind: 'unprotect' };
  if (p.moveFrom !== undefined) {
    if (!(p.moveFrom instanceof BigUint64Array)) throw invalidType('moveFrom must be a BigUint64Array of source addresses');
    const units = p.moveFrom.length;
    if (p.claims === undefined) return { kind: 'moveTable', table: p.moveFrom };
    if (!(p.claims instanceof Uint8Array)) throw invalidType('claims must be a Uint8Array');
    if (p.claims.length < units) throw outOfRange(`claims holds ${p.claims.length} bytes, fewer than the table's ${units} entries`);
    if (!types.isSharedArrayBuffer(p.claims.buffer)) throw invalidType('claims must be a Uint8Array over a SharedArrayBuffer (the event thread writes to it; a plain ArrayBuffer could be detached under it)');
    return { kind: 'moveTable', table: p.moveFrom, claims: p.claims };
  }
  const from = toBufferSource(p.copyFrom, 'copyFrom');
  if (from) {
    if (from.byteLength < length) throw outOfRange(`copyFrom holds ${from.byteLength} bytes, fewer than the range's ${length}`);
    return { kind: 'copyBuffer', buffer: from };
  }
  if (typeof p.copyFrom === 'object' && p.copyFrom !== null && 'fd' in p.copyFrom) {
    const { fd, offset } = p.copyFrom as { fd: unknown; offset?: unknown };
    if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) throw invalidType('copyFrom.fd must be a file descriptor');
    return { kind: 'copyFd', fd, offset: toLength(offset ?? 0, 'copyFrom.offset', true) };
  }
  throw invalidType('unknown policy: use { zero: true }, { copyFrom }, { continue: true }, { unprotect: true } or { moveFrom }');
}
