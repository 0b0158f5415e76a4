/**
 * WriteTracker: exact, cheap dirty tracking with a WP_ASYNC userfaultfd and PAGEMAP_SCAN (Linux
 * >= 6.7), the mechanism Wine uses for GetWriteWatch.
 *
 * How it works: a userfaultfd opened with WP_ASYNC registers the range for write-protect faults
 * and protects it. A write to a protected page never raises an event: the kernel lifts the
 * protection in place and the page reads as WRITTEN to PAGEMAP_SCAN. One scan with
 * PM_SCAN_WP_MATCHING then reports the written pages and protects them again in the same walk,
 * under the page-table lock, so a write is either in this round or in the next, never lost.
 * @module
 */
import { native } from '../core/binding';
import { FEATURES, PAGE_CATEGORIES, PM_SCAN_CHECK_WPASYNC, PM_SCAN_WP_MATCHING } from '../core/constants';
import { UnsupportedError, invalidType, outOfRange } from '../core/errors';
import { Mapping, holdMapping } from '../core/mapping';
import { ScanWalk, ownPagemap, pagemapSupport, type ScanPlan } from './pagemap';
import { PageRegions, REGION_WORDS, type BufferOwner } from './regions';
import { Userfaultfd, availableFeatureBits } from '../core/userfaultfd';
import { optBool, toLength, toOptions, toRange, type Range } from '../core/validate';

/** Options of {@link WriteTracker}. */
export interface WriteTrackerOptions {
  /** With a Mapping: track only this many bytes from `offset` (default: to the end). */
  length?: number;
  /** With a Mapping: where the tracked range starts, in bytes (default 0). */
  offset?: number;
  /**
   * Keep transparent huge pages (default false: the range gets MADV_NOHUGEPAGE, so no new huge
   * page forms and every report is in base pages). With true, huge pages already there stay
   * until written: the kernel splits a protected huge page on its first write (so reports stay
   * exact, at the cost of the split and of the huge TLB entry), and a scan that must protect
   * part of one splits it too. hugetlb memory is always tracked in its own huge pages. Applies
   * to a Mapping target only: for a raw range, give the advice yourself.
   */
  hugePages?: boolean;
}

/** Options of {@link WriteTracker.written}. */
export interface WrittenOptions {
  /** Write-protect the reported pages again in the same walk (get-and-reset). Default false: peek. */
  reset?: boolean;
}

const WRITTEN = 1n << BigInt(PAGE_CATEGORIES.WRITTEN.bit);
const INITIAL_REGIONS = 1024;

/**
 * The error a tracker gives on a kernel that lacks WP_ASYNC or PAGEMAP_SCAN: both are named,
 * with the version that brought them. @internal
 */
export function trackerUnsupported(hasWpAsync: boolean, hasPagemapScan: boolean): UnsupportedError | undefined {
  if (hasWpAsync && hasPagemapScan) return undefined;
  const missing = [hasWpAsync ? '' : 'UFFD_FEATURE_WP_ASYNC', hasPagemapScan ? '' : 'PAGEMAP_SCAN'].filter(Boolean).join(' and ');
  return new UnsupportedError('WP_ASYNC + PAGEMAP_SCAN', FEATURES.WP_ASYNC.since, `WriteTracker needs both; this kernel lacks ${missing}`);
}

function closedError(): Error {
  return Object.assign(new Error('this WriteTracker is closed'), { code: 'ERR_UFFD_CLOSED' });
}

/**
 * Records which pages of a range are written, with no event per write: ask with
 * {@link WriteTracker.written}. Works on private and shared anonymous memory, memfd/shmem,
 * hugetlb (in huge pages) and file mappings. Owns a userfaultfd (WP_ASYNC + WP_UNPOPULATED): call
 * {@link WriteTracker.close} (or `using`) to stop tracking; the memory stays mapped and writable.
 * While a tracker is open, its Mapping refuses {@link Mapping.mremap} (`ERR_UFFD_MAPPING_BUSY`):
 * the kernel drops the registration of a remapped range, which would leave the tracker blind.
 *
 * @example
 * using mem = Mapping.anonymous(64 * 4096);
 * using tracker = new WriteTracker(mem);
 * mem.bytes()[5 * 4096] = 1;
 * for (const r of tracker.written({ reset: true })) console.log(r.start, r.end); // page 5
 */
export class WriteTracker implements Disposable {
  readonly #uffd: Userfaultfd;
  readonly #plan: ScanPlan;
  readonly #resetPlan: ScanPlan;
  readonly #owner: BufferOwner = { generation: 0 };
  // Held so that a Mapping cannot be collected (and unmapped) while it is being tracked.
  readonly #target: Mapping | Range;
  #vec: BigUint64Array;
  #closed = false;
  // Ends the hold that refuses mremap of a tracked Mapping (see close()).
  #release: (() => void) | undefined;
  /** First tracked byte. */
  readonly address: bigint;
  /** Tracked bytes. */
  readonly length: number;
  /**
   * The unit of the reports: the huge page size on a hugetlb Mapping, else the base page size
   * (a raw range is assumed to be base pages).
   */
  readonly pageSize: number;

  /**
   * Start tracking `target` (a {@link Mapping}, or a page-aligned `{ address, length }` whose
   * memory you keep mapped): everything is write-protected now, so the first `written()` reports
   * the writes from here on.
   * @throws UnsupportedError (`ERR_UFFD_UNSUPPORTED`) without WP_ASYNC or PAGEMAP_SCAN (Linux < 6.7).
   */
  constructor(target: Mapping | Range, options?: WriteTrackerOptions) {
    const opts = toOptions(options);
    this.#target = target;
    const unsupported = trackerUnsupported((availableFeatureBits() & (1n << BigInt(FEATURES.WP_ASYNC.bit))) !== 0n, pagemapSupport().supported);
    if (unsupported) throw unsupported;
    let range: { address: bigint; length: number };
    if (target instanceof Mapping) {
      const offset = toLength(opts.offset ?? 0, 'option offset', true);
      const length = toLength(opts.length ?? target.length - offset, 'option length');
      if (offset + length > target.length) throw outOfRange(`the tracked range [${offset}, +${length}) lies outside the mapping of ${target.length} bytes`);
      range = toRange({ address: target.address + BigInt(offset), length }, target.pageSize, 'WriteTracker');
      this.pageSize = target.pageSize;
      // hugetlb pages never split, and MADV_NOHUGEPAGE means nothing there.
      if (target.kind !== 'hugetlb' && !optBool(opts, 'hugePages', false)) target.madvise('NOHUGEPAGE', { offset, length });
    } else {
      if (opts.offset !== undefined || opts.length !== undefined) throw invalidType('offset and length apply to a Mapping target; give a range instead');
      optBool(opts, 'hugePages', false);
      range = toRange(target, native.pageSize(), 'WriteTracker');
      this.pageSize = native.pageSize();
    }
    this.address = range.address;
    this.length = range.length;
    const wanted = ['WP_ASYNC', 'WP_UNPOPULATED', 'WP_HUGETLBFS_SHMEM'] as const;
    const available = availableFeatureBits();
    this.#uffd = Userfaultfd.open({ features: wanted.filter((f) => (available & (1n << BigInt(FEATURES[f].bit))) !== 0n) });
    try {
      this.#uffd.register(range, { wp: true });
      this.#uffd.writeProtect(range, true);
    } catch (err) {
      this.#uffd.close();
      throw err;
    }
    // mremap moves (or resizes) the VMA without this uffd's registration (no EVENT_REMAP): the
    // tracker would then report nothing, with no error. So a tracked Mapping refuses mremap
    // until close(). A raw range is the caller's to keep in place.
    if (target instanceof Mapping) this.#release = holdMapping(target, this);
    const end = range.address + BigInt(range.length);
    const base = { start: range.address, end, mask: WRITTEN, anyOf: 0n, inverted: 0n, returnMask: WRITTEN, maxPages: 0n };
    this.#plan = { ...base, flags: PM_SCAN_CHECK_WPASYNC, maxRegions: 0 };
    this.#resetPlan = { ...base, flags: PM_SCAN_CHECK_WPASYNC | PM_SCAN_WP_MATCHING, maxRegions: 0 };
    const units = Math.ceil(range.length / native.pageSize());
    this.#vec = new BigUint64Array(Math.min(units, INITIAL_REGIONS) * REGION_WORDS);
  }

  /** What is tracked: the Mapping or range given to the constructor. */
  get target(): Mapping | Range {
    return this.#target;
  }

  /** Whether close() has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The page ranges written since tracking began or since the last reset, in address order.
   * With `reset: true` they are write-protected again in the same walk (atomically per page:
   * a write racing with the call lands in this result or in the next one).
   *
   * The result reads a buffer this tracker reuses: it is valid until the next `written()`,
   * `reset()` or `close()` (then it throws `ERR_UFFD_STALE_REGIONS`); `copy()` keeps one.
   */
  written(options?: WrittenOptions): PageRegions {
    const reset = optBool(toOptions(options), 'reset', false);
    if (this.#closed) throw closedError();
    this.#owner.generation++;
    const walk = new ScanWalk(ownPagemap(), reset ? this.#resetPlan : this.#plan);
    let filled = 0;
    while (!walk.done) {
      const room = this.#vec.length / REGION_WORDS - filled;
      const count = walk.step(filled === 0 ? this.#vec : this.#vec.subarray(filled * REGION_WORDS), room);
      filled = this.#append(filled, count);
      // The buffer ran out: grow it and continue from where the walk stopped. What was
      // reported is already protected again, so continuing keeps every page in one round.
      if (!walk.done && count === room) this.#grow(filled);
    }
    return new PageRegions(this.#vec, filled, WRITTEN, this.#owner);
  }

  /**
   * Forget every write so far: write-protect the whole range again, in one walk that fills no
   * output (the kernel's fast path).
   */
  reset(): void {
    if (this.#closed) throw closedError();
    this.#owner.generation++;
    ownPagemap().scanPlan(this.#resetPlan, this.#resetPlan.start, null, 0);
  }

  /** Stop tracking and close the userfaultfd; the memory stays mapped and writable. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#owner.generation++;
    this.#uffd.close();
    this.#release?.();
  }

  /** Same as {@link close}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.close();
  }

  // Regions from a continued walk are appended after `filled`; a run the buffer split in two
  // is merged back so that callers see each run once.
  #append(filled: number, count: number): number {
    if (filled === 0 || count === 0) return filled + count;
    const v = this.#vec;
    const last = (filled - 1) * REGION_WORDS;
    const first = filled * REGION_WORDS;
    if (v[last + 1] !== v[first] || v[last + 2] !== v[first + 2]) return filled + count;
    v[last + 1] = v[first + 1];
    v.copyWithin(first, first + REGION_WORDS, (filled + count) * REGION_WORDS);
    return filled + count - 1;
  }

  #grow(filled: number): void {
    const bigger = new BigUint64Array(this.#vec.length * 2);
    bigger.set(this.#vec.subarray(0, filled * REGION_WORDS));
    this.#vec = bigger;
  }
}
