/**
 * A compactor for GC experiments: live pages of a from-space laid out densely in a to-space by
 * UFFDIO_MOVE, with the forwarding table a collector needs to fix its pointers.
 * @module
 */
import { native } from './binding';
import { invalidType, outOfRange } from './errors';
import type { Mapping } from './mapping';
import { movePageList, type MovePagesOptions, type MoveReport } from './move';
import { HUGE, holeBytes, hugeBlocks, populatedRuns } from './move-scan';
import { thpSize } from './sysinfo';
import type { Userfaultfd } from './userfaultfd';
import { oneOf, optBool, toLength, toOptions } from './validate';

/** Live bytes of the from-space: a page-aligned byte range. */
export interface LiveRange {
  /** Byte offset into the from-space. */
  offset: number;
  /** Bytes. */
  length: number;
}

export interface CompactOptions extends Pick<MovePagesOptions, 'retry' | 'fallback'> {
  /**
   * `'stop-the-world'` (default): every live page is moved now, before compact() returns; no
   * thread may touch either space meanwhile. `'concurrent'`: the to-space is served on demand by
   * the event thread while a background pass moves the rest (the ART pattern); it needs the
   * event engine and is not available in this version: it throws ERR_UFFD_CONCURRENT_UNAVAILABLE.
   */
  mode?: 'stop-the-world' | 'concurrent';
  /** Byte offset in the to-space where the dense layout starts (page-aligned, default 0). */
  toOffset?: number;
  /**
   * A live page that was never touched (a hole in the from-space) is skipped and stays a hole
   * in the to-space (default true); false makes it an ENOENT MoveError.
   */
  allowSrcHoles?: boolean;
}

/** One run of the forwarding table: `pages` pages from old page `from` went to new page `to`. */
export interface ForwardingRun {
  from: number;
  to: number;
  pages: number;
}

/**
 * Old page -> new page, as sorted runs (a page per entry would cost a Map entry per page of a
 * heap). Page numbers are indexes in their space (offset / page size).
 */
export class ForwardingTable {
  readonly #runs: readonly ForwardingRun[];
  readonly #fromBase: bigint;
  readonly #toBase: bigint;
  /** The page size the indexes count in. */
  readonly pageSize: number;
  /** Pages forwarded. */
  readonly size: number;

  /** @internal */
  constructor(runs: readonly ForwardingRun[], fromBase: bigint, toBase: bigint, pageSize: number) {
    this.#runs = runs;
    this.#fromBase = fromBase;
    this.#toBase = toBase;
    this.pageSize = pageSize;
    this.size = runs.reduce((n, r) => n + r.pages, 0);
  }

  /** The runs, in from-space order. */
  get runs(): readonly ForwardingRun[] {
    return this.#runs;
  }

  /** The new page index of old page `page`, or undefined if it was not live. */
  page(page: number): number | undefined {
    const runs = this.#runs;
    let lo = 0;
    let hi = runs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = runs[mid];
      if (page < r.from) hi = mid - 1;
      else if (page >= r.from + r.pages) lo = mid + 1;
      else return r.to + (page - r.from);
    }
    return undefined;
  }

  /** The to-space byte offset of from-space byte offset `offset`, or undefined if its page was not live. */
  offset(offset: number): number | undefined {
    const p = this.page(Math.floor(offset / this.pageSize));
    return p === undefined ? undefined : p * this.pageSize + (offset % this.pageSize);
  }

  /** The new address of an old address (any byte of a live page), or undefined. */
  address(address: bigint): bigint | undefined {
    if (address < this.#fromBase) return undefined;
    const off = address - this.#fromBase;
    if (off > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
    const to = this.offset(Number(off));
    return to === undefined ? undefined : this.#toBase + BigInt(to);
  }

  /** Every [old page, new page] pair, in from-space order. */
  *entries(): IterableIterator<[number, number]> {
    for (const r of this.#runs) for (let i = 0; i < r.pages; i++) yield [r.from + i, r.to + i];
  }
}

/** What a compaction did. */
export interface Compaction {
  forwarding: ForwardingTable;
  /** Live pages moved (holes not included). */
  pagesMoved: number;
  /** Live pages that were holes in the from-space (they stay unmapped in the to-space). */
  holes: number;
  /** Faults on the to-space served by moving their page on demand (concurrent mode; 0 otherwise). */
  faultsServed: number;
  /** 2 MiB blocks that went by one PMD move. */
  hugeMoves: number;
  /** Bytes of the to-space the live pages occupy, from `toOffset`. */
  bytes: number;
  /** Moves issued (one per run of contiguous live pages) and the report of movePageList. */
  moves: number;
  report: MoveReport;
}

/**
 * Sorted, merged runs of live pages (page indexes) from numbers (page indexes) and byte ranges.
 */
function liveRuns(live: readonly (number | LiveRange)[], page: number, pages: number): { start: number; pages: number }[] {
  if (!Array.isArray(live)) throw invalidType('live must be an array of page indexes or { offset, length } ranges');
  const spans: [number, number][] = [];
  live.forEach((entry, i) => {
    let start: number;
    let count: number;
    if (typeof entry === 'number') {
      if (!Number.isSafeInteger(entry) || entry < 0) throw outOfRange(`live[${i}] must be a page index, got ${entry}`);
      start = entry;
      count = 1;
    } else if (typeof entry === 'object' && entry !== null) {
      const offset = toLength(entry.offset, `live[${i}].offset`, true);
      const length = toLength(entry.length, `live[${i}].length`);
      if (offset % page !== 0 || length % page !== 0) throw outOfRange(`live[${i}]: offset and length must be multiples of ${page}`);
      start = offset / page;
      count = length / page;
    } else {
      throw invalidType(`live[${i}] must be a page index or { offset, length }`);
    }
    if (start + count > pages) throw outOfRange(`live[${i}] lies outside the from-space of ${pages} pages`);
    spans.push([start, count]);
  });
  spans.sort((a, b) => a[0] - b[0]);
  const runs: { start: number; pages: number }[] = [];
  for (const [start, count] of spans) {
    const last = runs[runs.length - 1];
    if (last && start <= last.start + last.pages) {
      last.pages = Math.max(last.pages, start + count - last.start);
    } else {
      runs.push({ start, pages: count });
    }
  }
  return runs;
}

/**
 * Lay the live pages of `from` out densely in `to`, in from-space order, and return the
 * forwarding table. `to` must be registered with `uffd` (MISSING) and unmapped where the
 * layout goes; both private anonymous memory with the same protection (or pass
 * `fallback: 'copy'`, which the result's `report.atomic` then admits to).
 *
 * Live pages are numbers (page indexes of the from-space) or `{ offset, length }` byte ranges;
 * overlaps and duplicates are merged. Each run of contiguous live pages is one UFFDIO_MOVE, and
 * the whole list goes to the kernel in one call into the addon.
 *
 * @example
 * ```ts
 * uffd.register(toSpace, { missing: true });
 * const { forwarding, pagesMoved } = compact(uffd, fromSpace, toSpace, [0, 5, 6, { offset: 65536, length: 8192 }]);
 * forwarding.page(5); // 1: old page 5 now lives at to-space page 1
 * ```
 * @throws MoveError where a move stopped (its `index` is the run, `offset` the bytes into it).
 */
export function compact(uffd: Userfaultfd, from: Mapping, to: Mapping, live: readonly (number | LiveRange)[], options?: CompactOptions): Compaction {
  const opts = toOptions(options);
  const mode = oneOf(opts.mode ?? 'stop-the-world', ['stop-the-world', 'concurrent'] as const, 'option mode');
  if (mode === 'concurrent') {
    throw Object.assign(
      new Error("compact: mode 'concurrent' serves to-space faults from the event thread, which this version does not have yet; use 'stop-the-world'"),
      { code: 'ERR_UFFD_CONCURRENT_UNAVAILABLE' },
    );
  }
  const page = native.pageSize();
  if (!from || typeof from.length !== 'number' || !to || typeof to.length !== 'number') throw invalidType('from and to must be Mappings');
  const toOffset = toLength(opts.toOffset ?? 0, 'option toOffset', true);
  if (toOffset % page !== 0) throw outOfRange(`option toOffset must be a multiple of ${page}`);
  const runs = liveRuns(live, page, from.length / page);
  const livePages = runs.reduce((n, r) => n + r.pages, 0);
  if (toOffset + livePages * page > to.length) {
    throw outOfRange(`the to-space holds ${(to.length - toOffset) / page} pages from toOffset; ${livePages} are live`);
  }
  const fromBase = from.address;
  const toBase = to.address;
  const forwarding: ForwardingRun[] = [];
  const ops = new BigUint64Array(runs.length * 3);
  let next = toOffset / page;
  runs.forEach((r, i) => {
    forwarding.push({ from: r.start, to: next, pages: r.pages });
    ops[i * 3] = toBase + BigInt(next * page);
    ops[i * 3 + 1] = fromBase + BigInt(r.start * page);
    ops[i * 3 + 2] = BigInt(r.pages * page);
    next += r.pages;
  });
  const allowSrcHoles = optBool(opts, 'allowSrcHoles', true);
  const report = movePageList(uffd, ops, { allowSrcHoles, retry: opts.retry, fallback: opts.fallback, scan: false });

  // One scan of the to-space's used part tells holes and whole-PMD moves: it was empty before.
  let holes = 0;
  let hugeMoves = 0;
  if (livePages > 0) {
    const start = toBase + BigInt(toOffset);
    const end = start + BigInt(livePages * page);
    const found = populatedRuns(start, livePages * page);
    holes = holeBytes(found, start, end) / page;
    const pmd = thpSize();
    if (pmd && found.some((f) => (f.categories & HUGE) !== 0n)) hugeMoves = hugeBlocks(found, start, end, BigInt(pmd));
  }
  report.holes = holes;
  report.hugeMoves = hugeMoves;
  return {
    forwarding: new ForwardingTable(forwarding, fromBase, toBase, page),
    pagesMoved: livePages - holes,
    holes,
    faultsServed: 0,
    hugeMoves,
    bytes: livePages * page,
    moves: runs.length,
    report,
  };
}
