/**
 * Fault events: the typed union the event thread, the async iterator and readEvents() deliver,
 * and the decoding of the kernel's 32-byte uffd_msg records.
 * @module
 */
import { EVENT, MSG } from './msg-layout';
import { UffdError } from './errors';
import type { NativeReport } from './binding';

/** A page fault in a registered range: the faulting thread waits until it is resolved. */
export interface PageFault {
  type: 'pagefault';
  /** The faulting address: page aligned, or exact with the EXACT_ADDRESS feature. */
  address: bigint;
  flags: {
    /** The access was a write. */
    write: boolean;
    /** A write to a write-protected page (resolve with writeProtect(range, false)). */
    wp: boolean;
    /** A MINOR fault: the page is in the page cache but not mapped (resolve with continue()). */
    minor: boolean;
  };
  /** The faulting thread's id; present only when THREAD_ID was negotiated. */
  threadId?: number;
}

/** The process forked; `uffd` serves the child's copy of the registered ranges. */
export interface ForkEvent<U = unknown> {
  type: 'fork';
  uffd: U;
}

/** A registered range was moved by mremap(2). */
export interface RemapEvent {
  type: 'remap';
  from: bigint;
  to: bigint;
  length: number;
}

/** Pages were dropped by madvise(MADV_DONTNEED / MADV_REMOVE): they will fault again. */
export interface RemoveEvent {
  type: 'remove';
  start: bigint;
  end: bigint;
}

/** A registered range was unmapped. */
export interface UnmapEvent {
  type: 'unmap';
  start: bigint;
  end: bigint;
}

/** Any event a userfaultfd delivers; `type` tells which. */
export type UffdEvent<U = unknown> = PageFault | ForkEvent<U> | RemapEvent | RemoveEvent | UnmapEvent;
/** The `type` of an event. */
export type UffdEventType = UffdEvent['type'];
export const EVENT_TYPES: readonly UffdEventType[] = ['pagefault', 'fork', 'remap', 'remove', 'unmap'];


const FLAG_WRITE = 1n;
const FLAG_WP = 2n;
const FLAG_MINOR = 4n;

/**
 * Decodes `raw` (whole uffd_msg records) into events. `wrapFork` turns a FORK event's new
 * descriptor into the caller's Userfaultfd object.
 */
export function decodeEvents<U>(raw: ArrayBuffer, threadIds: boolean, wrapFork: (fd: number) => U): UffdEvent<U>[] {
  const view = new DataView(raw);
  const out: UffdEvent<U>[] = [];
  for (let at = 0; at + MSG.size <= raw.byteLength; at += MSG.size) {
    const event = view.getUint8(at + MSG.event);
    switch (event) {
      case EVENT.pagefault: {
        const flags = view.getBigUint64(at + MSG.pagefaultFlags, true);
        const fault: PageFault = {
          type: 'pagefault',
          address: view.getBigUint64(at + MSG.pagefaultAddress, true),
          flags: { write: (flags & FLAG_WRITE) !== 0n, wp: (flags & FLAG_WP) !== 0n, minor: (flags & FLAG_MINOR) !== 0n },
        };
        if (threadIds) fault.threadId = view.getUint32(at + MSG.pagefaultThreadId, true);
        out.push(fault);
        break;
      }
      case EVENT.fork:
        out.push({ type: 'fork', uffd: wrapFork(view.getUint32(at + MSG.forkUfd, true)) });
        break;
      case EVENT.remap:
        out.push({
          type: 'remap',
          from: view.getBigUint64(at + MSG.remapFrom, true),
          to: view.getBigUint64(at + MSG.remapTo, true),
          length: Number(view.getBigUint64(at + MSG.remapLength, true)),
        });
        break;
      case EVENT.remove:
      case EVENT.unmap:
        out.push({
          type: event === EVENT.remove ? 'remove' : 'unmap',
          start: view.getBigUint64(at + MSG.removeStart, true),
          end: view.getBigUint64(at + MSG.removeEnd, true),
        });
        break;
      default:
        // A kernel newer than this library: skip what we cannot name rather than misread it.
        break;
    }
  }
  return out;
}

/**
 * An 'error' event of the fault engine: a policy's resolution failed (a UffdError with
 * `address`, `threadId`, `policy`), or the deadlock guard resolved a fault the JS thread raised
 * on itself (`code: 'ERR_UFFD_DEADLOCK_GUARD'`).
 */
export class FaultError extends UffdError {
  override name = 'FaultError';
  readonly address: bigint;
  readonly threadId: number;
  /** The policy id whose resolution failed, if any. */
  readonly policy?: number;

  /** @internal */
  constructor(report: NativeReport) {
    // The native op is an ioctl (UFFDIO_*) or a syscall of its own (pread, for a copy-from-file policy).
    const isIoctl = report.ioctl.startsWith('UFFDIO_');
    super({ errno: report.errno || -35, syscall: isIoctl ? 'ioctl' : report.ioctl, ioctl: isIoctl ? report.ioctl : undefined });
    this.address = report.address;
    this.threadId = report.tid;
    if (report.policy) this.policy = report.policy;
    if (report.guard) {
      Object.defineProperty(this, 'code', { value: 'ERR_UFFD_DEADLOCK_GUARD' });
      this.message =
        `the handler thread itself (tid ${report.tid}) faulted on registered page 0x${report.address.toString(16)}, ` +
        'which only it could resolve: the event thread resolved it with zeros (or un-protected it) instead of hanging. ' +
        'Touch registered memory from other threads (Workers, testing.touch) or add a native policy for the range.';
    } else {
      this.message = `resolving the fault at 0x${report.address.toString(16)} failed: ${this.message}`;
    }
  }
}

/**
 * A bounded FIFO behind `uffd.events()`. When it holds `highWaterMark` events it asks the
 * producer to pause (it holds the rest back: nothing is dropped) and to resume at half.
 */
export class EventQueue<T> implements AsyncIterableIterator<T> {
  readonly #items: T[] = [];
  #waiter: ((r: IteratorResult<T>) => void) | undefined;
  #failer: ((err: unknown) => void) | undefined;
  #done = false;
  #error: unknown;
  #paused = false;

  constructor(
    readonly highWaterMark: number,
    private readonly setPaused: (paused: boolean) => void,
    private readonly onClose: () => void,
  ) {}

  push(item: T): void {
    if (this.#done) return;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = this.#failer = undefined;
      w({ value: item, done: false });
      return;
    }
    this.#items.push(item);
    if (!this.#paused && this.#items.length >= this.highWaterMark) {
      this.#paused = true;
      this.setPaused(true);
    }
  }

  fail(err: unknown): void {
    if (this.#done) return;
    this.#error = err;
    if (this.#failer) {
      const f = this.#failer;
      this.#waiter = this.#failer = undefined;
      this.#finish();
      f(err);
    }
  }

  end(): void {
    if (this.#done) return;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = this.#failer = undefined;
      this.#finish();
      w({ value: undefined, done: true });
      return;
    }
    this.#finish();
  }

  next(): Promise<IteratorResult<T>> {
    if (this.#items.length > 0) {
      const value = this.#items.shift() as T;
      if (this.#paused && this.#items.length <= this.highWaterMark / 2) {
        this.#paused = false;
        this.setPaused(false);
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.#error !== undefined) {
      const err = this.#error;
      this.#error = undefined;
      this.#finish();
      return Promise.reject(err);
    }
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.#waiter = resolve;
      this.#failer = reject;
    });
  }

  return(): Promise<IteratorResult<T>> {
    this.#finish();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#items.length = 0;
    if (this.#paused) {
      this.#paused = false;
      this.setPaused(false);
    }
    this.onClose();
  }
}
