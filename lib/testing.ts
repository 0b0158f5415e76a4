/**
 * kselftest-style helpers for tests and benchmarks: raise faults from native threads, so the JS
 * thread stays free to serve them.
 * @module
 */
import { constants as osConstants } from 'node:os';
import { native, type TouchThreadResult } from './core/binding';
import { MADVISE, type MadviseName } from './core/constants';
import { invalidType } from './core/errors';
import { nativeMappingOf } from './core/mapping';
import { describe, toAddress, toLength, toOptions, type Address } from './core/validate';

// Declared in the binding, beside the native call that makes it.
export type { TouchThreadResult } from './core/binding';

/** Options of {@link touch}. */
export interface TouchOptions {
  /** Native threads to touch with (default 1). */
  threads?: number;
  /** Bytes between touches (default: the base page size; a multiple of 8). */
  stride?: number;
  /** Byte offset of the touched word inside each stride (default 0; a multiple of 8). */
  offset?: number;
  /**
   * 'read' loads a 64-bit word per stride, 'write' stores `unit index + 1` there, 'increment'
   * atomically adds 1 to it (per-page counters). Default 'read'.
   */
  mode?: 'read' | 'write' | 'increment';
  /** 'sequential' (default) or 'random' (each thread shuffles its units every pass). */
  order?: 'sequential' | 'random';
  /** true (default): thread i takes units i, i+N, ...; false: every thread touches every unit (racing). */
  partition?: boolean;
  /** Passes over the units (default 1). */
  passes?: number;
  /** Keep making passes for this long instead of a fixed count. */
  durationMs?: number;
  seed?: number;
  /** Record each touch's duration in `latenciesNs`. */
  recordLatency?: boolean;
}

/**
 * Touch `length` bytes at `address` from native threads; resolves with one result per thread
 * once all have finished. A touch of a registered page waits until its fault is resolved.
 * @throws Error with code ERR_UFFD_UNMAPPED when part of the range is not mapped with the
 * access the mode needs (read, or write), or when the Mapping was unmapped before the threads
 * start (an option getter can do that); RangeError ERR_OUT_OF_RANGE when it moved or shrank.
 * A raw address must stay mapped until the promise settles: that is the caller's care.
 */
export function touch(address: Address | { address: Address; length: number }, lengthOrOptions?: number | TouchOptions, options?: TouchOptions): Promise<TouchThreadResult[]> {
  let addr: bigint;
  let length: number;
  let opts: TouchOptions | undefined;
  if (typeof address === 'object' && address !== null) {
    addr = toAddress(address.address);
    length = toLength(address.length);
    opts = lengthOrOptions as TouchOptions | undefined;
  } else {
    addr = toAddress(address);
    length = toLength(lengthOrOptions);
    opts = options;
  }
  const o = toOptions(opts);
  if (o.mode !== undefined && !['read', 'write', 'increment'].includes(o.mode)) throw invalidType(`unknown mode ${describe(o.mode)}`);
  // Checked here: the native side would turn a non-string into one, and that can throw (a view of
  // a detached buffer) with an engine error that names nothing.
  if (o.order !== undefined && o.order !== 'sequential' && o.order !== 'random') throw invalidType(`unknown order ${describe(o.order)}`);
  // The threads touch raw memory: the native side pins a Mapping passed in before it reads any
  // option, and keeps it mapped until they end, through garbage collection, a Worker's
  // termination and unmap() alike.
  return native.testing.touch(addr, length, o, nativeMappingOf(address));
}

/** Options of {@link forkTouch}. */
export interface ForkTouchOptions {
  /** What the child does to each unit after the optional madvise/mremap (default 'read'). */
  mode?: 'read' | 'write' | 'increment';
  stride?: number;
  /** madvise(MADV_DONTNEED) the range first: a REMOVE event. */
  dontneed?: boolean;
  /** Then mremap it elsewhere and use the new place: a REMAP event. */
  mremap?: boolean;
  /** In read mode, what each unit's first word must hold, else the child exits 1. */
  expect?: 'index' | 'zero';
}

/** How the forked child ended. */
export interface ForkTouchResult {
  /** The child's exit code (0: everything as expected), or null if a signal ended it. */
  status: number | null;
  /** The signal that ended the child, e.g. 'SIGBUS', or null. */
  signal: NodeJS.Signals | null;
}

/**
 * Fork a child process (from a native thread) that touches `range` and exits; resolves with how
 * it ended. With EVENT_FORK negotiated the child's faults arrive on the FORK event's uffd.
 */
export async function forkTouch(range: { address: Address; length: number }, options?: ForkTouchOptions): Promise<ForkTouchResult> {
  const o = toOptions(options);
  const { address, length } = spanOf(range, 'forkTouch');
  // The addon coerces mode to a string, which throws an uncoded engine error for some values.
  if (o.mode !== undefined && !['read', 'write', 'increment'].includes(o.mode)) throw invalidType(`unknown mode ${describe(o.mode)}`);
  const expect = o.expect === undefined ? 0 : o.expect === 'index' ? 1 : o.expect === 'zero' ? 2 : -1;
  if (expect < 0) throw invalidType(`unknown expect ${describe(o.expect)}`);
  const r = await native.testing.forkTouch(address, length, { ...o, expect }, nativeMappingOf(range));
  const signal = r.signal === null ? null : ((Object.entries(osConstants.signals).find(([, n]) => n === r.signal)?.[0] ?? `SIG${r.signal}`) as NodeJS.Signals);
  return { status: r.status, signal };
}

/**
 * madvise(2) from a native thread. With EVENT_REMOVE negotiated, MADV_DONTNEED on a registered
 * range waits until the REMOVE event is read, which the JS thread must never wait for.
 */
export async function madvise(range: { address: Address; length: number }, advice: MadviseName): Promise<void> {
  const value = typeof advice === 'string' && Object.hasOwn(MADVISE, advice) ? MADVISE[advice] : undefined;
  if (value === undefined) throw invalidType(`unknown advice ${describe(advice)}`);
  const { address, length } = spanOf(range, 'madvise');
  await native.testing.madvise(address, length, value, nativeMappingOf(range));
}

/** The address and length of a range argument (any object with both, a Mapping included). */
function spanOf(range: unknown, what: string): { address: bigint; length: number } {
  if (typeof range !== 'object' || range === null) throw invalidType(`${what}: range must be a Mapping or { address, length }, got ${describe(range)}`);
  const r = range as { address?: unknown; length?: unknown };
  return { address: toAddress(r.address, 'range.address'), length: toLength(r.length, 'range.length') };
}

/**
 * fork() this process; the child sleeps `ms` milliseconds, then exits. Until then every private
 * page not marked MADV_DONTFORK is shared copy-on-write with it, so UFFDIO_MOVE of such a page
 * fails with EBUSY. Returns the child's pid: pass it to {@link reapChild}. The child dies with
 * this process.
 * @throws Error with code ERR_UFFD_NO_TEST_HOOKS where the addon was built without its test hooks:
 * the prebuilds and a build of the published package (they carry no fork/kill helpers); a build
 * from a checkout of the repository has them.
 */
export function forkHold(ms: number): number {
  return testHooks().forkHold(toLength(ms, 'ms', true));
}

/** Kill (SIGKILL) and wait for a {@link forkHold} child; returns its wait status. */
export function reapChild(pid: number): number {
  if (!Number.isSafeInteger(pid) || pid <= 0) throw invalidType('pid must be a positive integer');
  return testHooks().reapChild(pid);
}

/** The addon's test hooks, or the coded error that says why there are none. */
function testHooks(): NonNullable<typeof native.testHooks> {
  if (native.testHooks) return native.testHooks;
  throw Object.assign(new Error('this build of the userfaultfd addon has no test hooks (fork/kill helpers): build it from a checkout of the repository'), { code: 'ERR_UFFD_NO_TEST_HOOKS' });
}
