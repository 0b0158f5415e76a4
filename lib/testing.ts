/**
 * kselftest-style helpers for tests and benchmarks: raise faults from native threads, so the JS
 * thread stays free to serve them.
 * @module
 */
import { native } from './binding';
import { invalidType } from './errors';
import { toAddress, toLength, toOptions, type Address } from './validate';

export interface TouchOptions {
  /** Native threads to touch with (default 1). */
  threads?: number;
  /** Bytes between touches (default: the base page size; a multiple of 8). */
  stride?: number;
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

export interface TouchThreadResult {
  /** The thread's kernel thread id (what a THREAD_ID page fault reports as its thread). */
  tid: number;
  /** Touches made. */
  touched: number;
  /** Sum of the words read (read mode). */
  sum: bigint;
  latenciesNs?: Float64Array;
}

/**
 * Touch `length` bytes at `address` from native threads; resolves with one result per thread
 * once all have finished. A touch of a registered page waits until its fault is resolved.
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
  if (o.mode !== undefined && !['read', 'write', 'increment'].includes(o.mode)) throw invalidType(`unknown mode ${String(o.mode)}`);
  return native.testing.touch(addr, length, o);
}

/**
 * fork() this process; the child sleeps `ms` milliseconds, then exits. Until then every private
 * page not marked MADV_DONTFORK is shared copy-on-write with it, so UFFDIO_MOVE of such a page
 * fails with EBUSY. Returns the child's pid: pass it to {@link reapChild}. The child dies with
 * this process.
 */
export function forkHold(ms: number): number {
  return native.testing.forkHold(toLength(ms, 'ms', true));
}

/** Kill (SIGKILL) and wait for a {@link forkHold} child; returns its wait status. */
export function reapChild(pid: number): number {
  if (!Number.isSafeInteger(pid) || pid <= 0) throw invalidType('pid must be a positive integer');
  return native.testing.reapChild(pid);
}
