/**
 * PAGEMAP_SCAN (Linux >= 6.7): the ioctl on /proc/PID/pagemap that walks a range and reports runs
 * of pages by category (written, present, swapped, file, zero pfn, huge, soft-dirty, guard...),
 * and with `wpMatching` write-protects what matched in the same walk.
 * @module
 */
import * as fs from 'node:fs';
import { native } from '../core/binding';
import {
  PAGE_CATEGORIES,
  PAGE_CATEGORY_NAMES,
  PM_SCAN_CHECK_WPASYNC,
  PM_SCAN_WP_MATCHING,
  bitsOf,
  type PageCategory,
} from '../core/constants';
import { UffdError, UnsupportedError, invalidType, invalidValue, outOfRange } from '../core/errors';
import { PageRegions, REGION_WORDS, type PageRegion } from './regions';
import { describe, optBool, toAddress, toLength, toOptions, type Address, type Range } from '../core/validate';

/** Word indexes of struct pm_scan_arg, as native/pagemap.cc takes it. */
export const SCAN_ARG = {
  size: 0,
  flags: 1,
  start: 2,
  end: 3,
  walkEnd: 4,
  vec: 5,
  vecLen: 6,
  maxPages: 7,
  categoryInverted: 8,
  categoryMask: 9,
  categoryAnyofMask: 10,
  returnMask: 11,
} as const;
/** sizeof(struct pm_scan_arg). */
export const SCAN_ARG_SIZE = 96n;

/** Regions one scan may return unless `maxRegions` says otherwise (24 bytes each). */
export const DEFAULT_MAX_REGIONS = 4096;
/** The largest `maxRegions` accepted: 4 Mi regions, a 96 MiB output buffer. */
export const MAX_REGIONS_LIMIT = 1 << 22;
/** The largest scratch buffer a {@link Pagemap} keeps between scans, in regions (1.5 MiB). */
const MAX_KEPT_REGIONS = 65536;

/** What {@link probePagemapScan} found. */
export interface PagemapScanSupport {
  /** Whether the kernel has PAGEMAP_SCAN at all (Linux >= 6.7). */
  supported: boolean;
  /** Each category: accepted by this kernel's PAGEMAP_SCAN. */
  categories: Readonly<Record<PageCategory, boolean>>;
  /** Why it is unsupported (ENOTTY before 6.7), if it is. */
  error?: string;
}

/**
 * Whether this kernel has PAGEMAP_SCAN, and which categories it accepts: a zero-length scan
 * with one category bit each, since an unknown bit is EINVAL.
 */
export function probePagemapScan(): PagemapScanSupport {
  const categories = {} as Record<PageCategory, boolean>;
  for (const name of PAGE_CATEGORY_NAMES) categories[name] = false;
  let fd: number;
  try {
    fd = fs.openSync('/proc/self/pagemap', 'r');
  } catch (err) {
    return { supported: false, categories, error: (err as Error).message };
  }
  try {
    const args = new BigUint64Array(12);
    const tryScan = (mask: bigint): UffdError | undefined => {
      args.fill(0n);
      args[SCAN_ARG.size] = SCAN_ARG_SIZE;
      args[SCAN_ARG.start] = BigInt(native.pageSize());
      args[SCAN_ARG.end] = BigInt(native.pageSize());
      args[SCAN_ARG.returnMask] = mask;
      try {
        native.pagemapScan(fd, args, null);
        return undefined;
      } catch (err) {
        if (err instanceof UffdError) return err;
        throw err;
      }
    };
    const base = tryScan(0n);
    if (base) return { supported: false, categories, error: base.code };
    for (const name of PAGE_CATEGORY_NAMES) {
      categories[name] = tryScan(1n << BigInt(PAGE_CATEGORIES[name].bit)) === undefined;
    }
    return { supported: true, categories };
  } finally {
    fs.closeSync(fd);
  }
}

let cachedSupport: PagemapScanSupport | undefined;
/** probePagemapScan(), once per thread: consulted to explain a failure or fill a default. @internal */
export function pagemapSupport(): PagemapScanSupport {
  cachedSupport ??= probePagemapScan();
  return cachedSupport;
}

/**
 * What to scan and how. The range is `range` (a {@link Mapping} or `{ address, length }`) or
 * `start` + `end`. Category lists are names (`'WRITTEN'`, `'PRESENT'`...); a page matches when,
 * after flipping the `inverted` categories, it has every one of `categories` and, if `anyOf` is
 * given, at least one of `anyOf`. So `{ categories: ['PRESENT'], inverted: ['PRESENT'] }` finds
 * the pages that are not present.
 */
export interface PagemapScanOptions {
  /** The range to scan; alternative to `start` / `end`. */
  range?: Range;
  /** Page-aligned start address. */
  start?: Address;
  /** End address (exclusive); the kernel rounds it up to a page. */
  end?: Address;
  /** Required categories: a page must have all of them (category_mask). */
  categories?: readonly PageCategory[];
  /** A page must have at least one of these (category_anyof_mask). */
  anyOf?: readonly PageCategory[];
  /** Categories whose sense is flipped before matching (category_inverted). */
  inverted?: readonly PageCategory[];
  /**
   * Categories reported per region (return_mask); regions split where these differ. Default:
   * `categories` and `anyOf` together, or every category this kernel knows if both are empty.
   */
  returnMask?: readonly PageCategory[];
  /** Stop after this many matching pages (max_pages); unlimited by default. */
  maxPages?: number;
  /**
   * Capacity of the output: at most this many regions per ioctl (default 4096; at most
   * {@link MAX_REGIONS_LIMIT}; never more than the range has pages).
   */
  maxRegions?: number;
  /** Write-protect the matching written pages in the same walk (PM_SCAN_WP_MATCHING): get-and-reset. */
  wpMatching?: boolean;
  /** Fail with EPERM unless the whole range is registered WP with a WP_ASYNC userfaultfd (PM_SCAN_CHECK_WPASYNC). */
  checkWpAsync?: boolean;
  /** Scan another process (its /proc/PID/pagemap; needs ptrace-read permission). Default: this process. */
  pid?: number;
}

/** What one PAGEMAP_SCAN call found. */
export interface PagemapScanResult {
  /** The matching runs of pages, read lazily from the output buffer. */
  regions: PageRegions;
  /** Where the walk stopped: the end of the range, or where the buffer or `maxPages` ran out. */
  walkEnd: bigint;
  /** The walk reached the end of the range (`walkEnd >= end`). */
  done: boolean;
}

/** Validated scan arguments, as the kernel takes them. @internal */
export interface ScanPlan {
  start: bigint;
  end: bigint;
  flags: bigint;
  mask: bigint;
  anyOf: bigint;
  inverted: bigint;
  returnMask: bigint;
  /** 0n: unlimited. */
  maxPages: bigint;
  maxRegions: number;
}

function categoryBits(v: unknown, name: string): bigint {
  if (v === undefined) return 0n;
  if (!Array.isArray(v)) throw invalidType(`option ${name} must be an array of category names`);
  for (const n of v) {
    if (typeof n !== 'string' || !Object.hasOwn(PAGE_CATEGORIES, n)) {
      throw invalidValue(`option ${name}: unknown page category ${describe(n)}; known: ${PAGE_CATEGORY_NAMES.join(', ')}`);
    }
  }
  return bitsOf(PAGE_CATEGORIES, v as PageCategory[]);
}

function allSupportedBits(): bigint {
  const s = pagemapSupport();
  return bitsOf(PAGE_CATEGORIES, PAGE_CATEGORY_NAMES.filter((n) => s.categories[n]));
}

/** Checks every option and turns it into the kernel's arguments. @internal */
export function planScan(options: PagemapScanOptions | undefined): ScanPlan {
  const opts = toOptions(options);
  let start: bigint;
  let end: bigint;
  if (opts.range !== undefined) {
    if (opts.start !== undefined || opts.end !== undefined) throw invalidType('give either range or start/end, not both');
    const r = opts.range;
    if (typeof r !== 'object' || r === null) throw invalidType('option range must be a Mapping or { address, length }');
    start = toAddress(r.address, 'range.address');
    end = start + BigInt(toLength(r.length, 'range.length', true));
  } else {
    if (opts.start === undefined || opts.end === undefined) throw invalidType('pagemapScan needs range, or start and end');
    start = toAddress(opts.start, 'start');
    end = toAddress(opts.end, 'end');
  }
  const page = BigInt(native.pageSize());
  if (start % page !== 0n) throw outOfRange(`start 0x${start.toString(16)} must be a multiple of the page size ${page}`);
  if (end < start) throw outOfRange(`end 0x${end.toString(16)} is below start 0x${start.toString(16)}`);
  const mask = categoryBits(opts.categories, 'categories');
  const anyOf = categoryBits(opts.anyOf, 'anyOf');
  const inverted = categoryBits(opts.inverted, 'inverted');
  let returnMask = opts.returnMask === undefined ? mask | anyOf : categoryBits(opts.returnMask, 'returnMask');
  if (opts.returnMask === undefined && returnMask === 0n) returnMask = allSupportedBits();
  let maxPages = 0n;
  if (opts.maxPages !== undefined) maxPages = BigInt(toLength(opts.maxPages, 'option maxPages'));
  const pages = (end - start + page - 1n) / page;
  const maxRegions = opts.maxRegions === undefined ? DEFAULT_MAX_REGIONS : toLength(opts.maxRegions, 'option maxRegions');
  if (maxRegions > MAX_REGIONS_LIMIT) throw outOfRange(`option maxRegions must be at most ${MAX_REGIONS_LIMIT}; continue from walkEnd (or use pagemapScanAll) for more`);
  let cap = BigInt(maxRegions);
  // More regions than pages (or than maxPages) can never be filled: do not allocate them.
  if (pages < cap) cap = pages;
  if (maxPages !== 0n && maxPages < cap) cap = maxPages;
  const flags = (optBool(opts, 'wpMatching', false) ? PM_SCAN_WP_MATCHING : 0n) | (optBool(opts, 'checkWpAsync', false) ? PM_SCAN_CHECK_WPASYNC : 0n);
  return { start, end, flags, mask, anyOf, inverted, returnMask, maxPages, maxRegions: Number(cap > 0n ? cap : 1n) };
}

/**
 * One walk over a plan's range: PAGEMAP_SCAN calls, each continued from where the last one
 * stopped, until the walk reaches the end of the range. Every loop over PAGEMAP_SCAN steps
 * through this one (Pagemap.scanAll, WriteTracker.written, the scans of movePages and the
 * compactor), each with a buffer of its own; {@link Pagemap.scanPlan} corrects a stale walk_end.
 * @internal
 */
export class ScanWalk {
  readonly #pagemap: Pagemap;
  readonly #plan: ScanPlan;
  #at: bigint;
  #done = false;

  constructor(pagemap: Pagemap, plan: ScanPlan) {
    this.#pagemap = pagemap;
    this.#plan = plan;
    this.#at = plan.start;
  }

  /** Whether the walk has reached the end of the range. */
  get done(): boolean {
    return this.#done;
  }

  /**
   * One call, from where the walk stands, into `vec` (room for `room` regions). Returns the
   * regions written there.
   * @throws RangeError (ERR_OUT_OF_RANGE) where the kernel made no progress.
   */
  step(vec: BigUint64Array, room: number): number {
    const { count, walkEnd } = this.#pagemap.scanPlan(this.#plan, this.#at, vec, room);
    if (walkEnd >= this.#plan.end) {
      this.#done = true;
    } else if (count === 0 && walkEnd <= this.#at) {
      // Continuing would spin here forever. With wpMatching the kernel will not protect part of
      // a hugetlb page, so a maxPages below the huge page size stops at the huge page, every time.
      throw outOfRange(`PAGEMAP_SCAN made no progress at 0x${walkEnd.toString(16)}: with wpMatching on hugetlb memory, maxPages must cover a whole huge page`);
    } else {
      this.#at = walkEnd;
    }
    return count;
  }
}

function toPid(v: unknown): number | undefined {
  if (v === undefined || v === process.pid) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw invalidType(`option pid must be a positive integer, got ${describe(v)}`);
  return v;
}

/**
 * An open /proc/PID/pagemap, for repeated PAGEMAP_SCAN calls. {@link pagemapScan} keeps one for
 * this process open for the life of the thread; open your own for another process (and close
 * it: it pins that process's address space structure while open).
 */
export class Pagemap implements Disposable {
  #fd: number;
  readonly #args = new BigUint64Array(12);
  /** The process scanned: a pid, or `'self'`. */
  readonly pid: number | 'self';

  private constructor(fd: number, pid: number | 'self') {
    this.#fd = fd;
    this.pid = pid;
  }

  /** Open the pagemap of `pid` (this process by default). */
  static open(pid?: number): Pagemap {
    const p = toPid(pid);
    const fd = fs.openSync(p === undefined ? '/proc/self/pagemap' : `/proc/${p}/pagemap`, 'r');
    return new Pagemap(fd, p ?? 'self');
  }

  /**
   * Wrap an open descriptor, which the Pagemap then owns and closes. For a pagemap opened some
   * other way (say, received from a privileged helper); any other file fails every scan. @internal
   */
  static fromFd(fd: number, pid: number | 'self' = 'self'): Pagemap {
    if (!Number.isInteger(fd) || fd < 0) throw invalidType('fd must be a file descriptor number');
    return new Pagemap(fd, pid);
  }

  /** The descriptor; -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * One PAGEMAP_SCAN call; see {@link pagemapScan}. The kernel writes into a scratch buffer this
   * Pagemap keeps; the result gets its own copy of just the regions found, so it never goes
   * stale and a large `maxRegions` costs memory only once.
   */
  scan(options: Omit<PagemapScanOptions, 'pid'>): PagemapScanResult {
    const plan = this.#plan(options);
    const vec = this.#scratchFor(plan.maxRegions);
    const { count, walkEnd } = this.scanPlan(plan, plan.start, vec, plan.maxRegions);
    return { regions: new PageRegions(vec.slice(0, count * REGION_WORDS), count, plan.returnMask), walkEnd, done: walkEnd >= plan.end };
  }

  // The process is the Pagemap's: a pid in the options would be silently ignored, so refuse it.
  #plan(options: Omit<PagemapScanOptions, 'pid'>): ScanPlan {
    if ((toOptions(options) as PagemapScanOptions).pid !== undefined) throw invalidType('option pid does not apply to Pagemap#scan: open the Pagemap of that pid');
    return planScan(options);
  }

  #scratch: BigUint64Array | undefined;
  // Up to MAX_KEPT_REGIONS the scratch buffer is kept for the next scan; beyond, it is one-off.
  #scratchFor(regions: number): BigUint64Array {
    const words = regions * REGION_WORDS;
    if (this.#scratch !== undefined && this.#scratch.length >= words) return this.#scratch;
    const vec = new BigUint64Array(words);
    if (regions <= MAX_KEPT_REGIONS) this.#scratch = vec;
    return vec;
  }

  /**
   * Every matching region of the range: PAGEMAP_SCAN calls continued from `walkEnd` until the
   * range is done, reusing one buffer. `maxPages` and `maxRegions` bound each call (with
   * `wpMatching`, that bounds how long one call holds the address space lock).
   */
  *scanAll(options: Omit<PagemapScanOptions, 'pid'>): Generator<PageRegion, void, undefined> {
    const plan = this.#plan(options);
    const vec = new BigUint64Array(plan.maxRegions * REGION_WORDS);
    const walk = new ScanWalk(this, plan);
    while (!walk.done) {
      const count = walk.step(vec, plan.maxRegions);
      // Copy the batch out before yielding: the consumer may run another scan meanwhile.
      yield* new PageRegions(vec.slice(0, count * REGION_WORDS), count, plan.returnMask);
    }
  }

  /**
   * One ioctl from `at` to the plan's end into `vec` (capacity `vecLen` regions). @internal
   */
  scanPlan(plan: ScanPlan, at: bigint, vec: BigUint64Array | null, vecLen: number): { count: number; walkEnd: bigint } {
    const a = this.#args;
    a[SCAN_ARG.size] = SCAN_ARG_SIZE;
    a[SCAN_ARG.flags] = plan.flags;
    a[SCAN_ARG.start] = at;
    a[SCAN_ARG.end] = plan.end;
    a[SCAN_ARG.walkEnd] = 0n;
    a[SCAN_ARG.vec] = 0n;
    a[SCAN_ARG.vecLen] = BigInt(vecLen);
    a[SCAN_ARG.maxPages] = plan.maxPages;
    a[SCAN_ARG.categoryInverted] = plan.inverted;
    a[SCAN_ARG.categoryMask] = plan.mask;
    a[SCAN_ARG.categoryAnyofMask] = plan.anyOf;
    a[SCAN_ARG.returnMask] = plan.returnMask;
    const count = this.#ioctl(a, vec, plan);
    let walkEnd = a[SCAN_ARG.walkEnd];
    // Kernel quirk (seen on 6.18, still in mainline's do_pagemap_scan): the walk refills a
    // 512-region bounce buffer and sets walk_end at each refill, but a walk that then completes
    // leaves walk_end at the last refill point instead of the end. A walk_end before the end of
    // the last region returned can only be that stale value: the walk did complete.
    if (count > 0 && vec !== null && walkEnd < vec[(count - 1) * REGION_WORDS + 1]) walkEnd = plan.end;
    return { count, walkEnd };
  }

  /**
   * PAGEMAP_SCAN with raw arguments, for experts and tests: `args` laid out as struct
   * pm_scan_arg (see {@link SCAN_ARG}), `vec` the output (3 words per region) or null for a
   * NULL vec. Nothing is checked here beyond what the native layer checks: the kernel's own
   * EINVAL / EFAULT / EPERM come back as {@link UffdError}. walk_end is written into `args`
   * as the kernel left it: after a walk of more than 512 regions it can be stale (the kernel
   * leaves it at its last bounce-buffer refill); {@link Pagemap.scan} corrects that.
   */
  scanRaw(args: BigUint64Array, vec: BigUint64Array | null): number {
    return this.#ioctl(args, vec, undefined);
  }

  #ioctl(args: BigUint64Array, vec: BigUint64Array | null, plan: ScanPlan | undefined): number {
    if (this.#fd < 0) throw Object.assign(new Error('this Pagemap is closed'), { code: 'ERR_UFFD_CLOSED' });
    try {
      return native.pagemapScan(this.#fd, args, vec);
    } catch (err) {
      throw explain(err, plan);
    }
  }

  /** Close the descriptor. A second call does nothing. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    if (selfPagemap === this) selfPagemap = undefined;
    fs.closeSync(fd);
  }

  /** Same as {@link close}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.close();
  }
}

// ENOTTY: the kernel has no PAGEMAP_SCAN. EINVAL naming a category this kernel rejects: say which.
function explain(err: unknown, plan?: Pick<ScanPlan, 'mask' | 'anyOf' | 'inverted' | 'returnMask'>): unknown {
  if (!(err instanceof UffdError)) return err;
  if (err.code === 'ENOTTY') return new UnsupportedError('PAGEMAP_SCAN', '6.7', 'ioctl on /proc/PID/pagemap');
  if (err.code === 'EINVAL' && plan) {
    const used = plan.mask | plan.anyOf | plan.inverted | plan.returnMask;
    const s = pagemapSupport();
    const missing = PAGE_CATEGORY_NAMES.find((n) => s.supported && !s.categories[n] && (used & (1n << BigInt(PAGE_CATEGORIES[n].bit))) !== 0n);
    if (missing) return new UnsupportedError(`PAGEMAP_SCAN category ${missing}`, PAGE_CATEGORIES[missing].since);
  }
  return err;
}

let selfPagemap: Pagemap | undefined;

/**
 * This thread's shared /proc/self/pagemap, opened on first use and kept open (closed at exit).
 * @internal
 */
export function ownPagemap(): Pagemap {
  if (selfPagemap === undefined || selfPagemap.fd < 0) {
    selfPagemap = Pagemap.open();
    process.once('exit', () => selfPagemap?.close());
  }
  return selfPagemap;
}

/**
 * One PAGEMAP_SCAN over a range of this process (or of `pid`). Returns the matching regions,
 * read lazily from one buffer the result owns, and `walkEnd`: if the buffer (`maxRegions`) or
 * `maxPages` ran out first, `done` is false and a scan from `walkEnd` continues the walk (or use
 * {@link pagemapScanAll}).
 *
 * @example
 * const { regions } = pagemapScan({ range: mem, categories: ['PRESENT'] });
 * for (const r of regions) console.log(r.start, r.end);
 * @throws TypeError for unknown category names or options of the wrong type; RangeError for an
 *   unaligned start or end below start; {@link UffdError} with the kernel's errno (EPERM for
 *   `checkWpAsync` on a range without a WP_ASYNC registration); {@link UnsupportedError}
 *   (`ERR_UFFD_UNSUPPORTED`) before Linux 6.7.
 */
export function pagemapScan(options: PagemapScanOptions): PagemapScanResult {
  const { pid, ...rest } = toOptions(options);
  const p = toPid(pid);
  if (p === undefined) return ownPagemap().scan(rest);
  using pm = Pagemap.open(p);
  return pm.scan(rest);
}

/**
 * Every matching region of the range, as an iterator that continues from `walkEnd` until the
 * range is done. `maxPages` and `maxRegions` bound each underlying call, not the total.
 *
 * @example
 * let present = 0;
 * for (const r of pagemapScanAll({ range: mem, categories: ['PRESENT'] })) present += Number(r.end - r.start);
 */
export function* pagemapScanAll(options: PagemapScanOptions): Generator<PageRegion, void, undefined> {
  const { pid, ...rest } = toOptions(options);
  const p = toPid(pid);
  if (p === undefined) {
    yield* ownPagemap().scanAll(rest);
    return;
  }
  using pm = Pagemap.open(p);
  yield* pm.scanAll(rest);
}
