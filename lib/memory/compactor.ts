/**
 * A compactor for GC experiments: live pages of a from-space laid out densely in a to-space by
 * UFFDIO_MOVE, with the forwarding table a collector needs to fix its pointers.
 * @module
 */
import { native } from '../core/binding';
import { ERR_UFFD_CLOSED, ERR_UFFD_UNMAPPED, invalidType, invalidValue, outOfRange, UffdError } from '../core/errors';
import { Mapping } from '../core/mapping';
import { movePageList, moveSkippingMapped, newReport, type MovePagesOptions, type MoveReport } from './move';
import { HUGE, holeBytes, hugeBlocks, populatedRuns } from './move-scan';
import { thpSize } from '../core/sysinfo';
import type { PolicyHandle } from '../core/policy';
import { Userfaultfd } from '../core/userfaultfd';
import { describe, oneOf, optBool, toAddress, toLength, toOptions, type Address } from '../core/validate';

/** Live bytes of the from-space: a page-aligned byte range. */
export interface LiveRange {
  /** Byte offset into the from-space. */
  offset: number;
  /** Bytes. */
  length: number;
}

/** Options of {@link compact}. */
export interface CompactOptions extends Pick<MovePagesOptions, 'retry' | 'fallback'> {
  /**
   * `'stop-the-world'` (default): every live page is moved now, before compact() returns; no
   * thread may touch either space meanwhile. `'concurrent'`: compact() returns at once with the
   * forwarding table; a fault on a to-space page not moved yet is resolved by moving its
   * from-space page on demand in the event thread (a native `moveFrom` policy, no JS involved),
   * while a background pass moves the rest between turns of the event loop (the ART pattern).
   * Any thread, the JS thread included, may use the to-space meanwhile; none may touch the
   * live pages of the from-space. A page the event thread cannot move (EBUSY after a fork) is
   * an 'error' event on the uffd and its faulting thread keeps waiting: keep the from-space
   * DONTFORK from the start.
   */
  mode?: 'stop-the-world' | 'concurrent';
  /** Concurrent mode: pages the background pass moves between yields to the event loop (default 512). */
  chunkPages?: number;
  /** Byte offset in the to-space where the dense layout starts (page-aligned, default 0). */
  toOffset?: number;
  /**
   * A live page that was never touched (a hole in the from-space) is skipped and stays a hole
   * in the to-space (default true; in concurrent mode it becomes a zero page); false makes it
   * an ENOENT MoveError (stop-the-world only).
   */
  allowSrcHoles?: boolean;
}

/** One run of the forwarding table: `pages` pages from old page `from` went to new page `to`. */
export interface ForwardingRun {
  /** The first old page (from-space page index). */
  from: number;
  /** Where it went (to-space page index). */
  to: number;
  /** Pages in the run. */
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
    if (typeof page !== 'number') throw invalidType(`page must be a number, got ${describe(page)}`);
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
    if (typeof offset !== 'number') throw invalidType(`offset must be a number, got ${describe(offset)}`);
    const p = this.page(Math.floor(offset / this.pageSize));
    return p === undefined ? undefined : p * this.pageSize + (offset % this.pageSize);
  }

  /** The new address of an old address (any byte of a live page), or undefined. */
  address(address: Address): bigint | undefined {
    const a = toAddress(address);
    if (a < this.#fromBase) return undefined;
    const off = a - this.#fromBase;
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
  /** Moves issued: one per run of contiguous live pages (concurrent mode: per chunk of the background pass). */
  moves: number;
  /** The moves' own report (bytes, ioctls, retries, atomic). */
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

/** A concurrent compaction under way (compact with `mode: 'concurrent'`). */
export interface ConcurrentCompaction {
  /** Where every live page goes, known before any has moved: publish it to the mutators. */
  readonly forwarding: ForwardingTable;
  /**
   * Settles once the background pass has moved every live page not already moved on demand; the
   * to-space policy is then removed (holes were mapped as zero pages first). Rejects with a
   * MoveError if a move fails; the policy then stays, so faults keep being served where they can.
   */
  readonly done: Promise<Compaction>;
  /**
   * Counters so far: pages the background pass moved, pages it found already moved on demand
   * (skipped), and faults the event thread served (a page faulted by two threads counts twice).
   */
  progress(): { movedInBackground: number; alreadyMoved: number; faultsServed: number };
}

interface Plan {
  page: number;
  toOffset: number;
  runs: { start: number; pages: number }[];
  livePages: number;
  forwarding: ForwardingRun[];
  ops: BigUint64Array;
  fromBase: bigint;
  toBase: bigint;
}

function plan(from: Mapping, to: Mapping, live: readonly (number | LiveRange)[], opts: Partial<CompactOptions>): Plan {
  const page = native.pageSize();
  // A Mapping, not anything with a length: the forwarding table does bigint arithmetic on the addresses.
  if (!(from instanceof Mapping) || !(to instanceof Mapping)) throw invalidType('from and to must be Mappings');
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
  return { page, toOffset, runs, livePages, forwarding, ops, fromBase, toBase };
}

/** Holes and whole-PMD moves in the used part of the to-space, which was empty before. */
function countTo(p: Plan): { holes: number; hugeMoves: number } {
  if (p.livePages === 0) return { holes: 0, hugeMoves: 0 };
  const start = p.toBase + BigInt(p.toOffset);
  const end = start + BigInt(p.livePages * p.page);
  const found = populatedRuns(start, p.livePages * p.page);
  const holes = holeBytes(found, start, end) / p.page;
  const pmd = thpSize();
  const hugeMoves = pmd && found.some((f) => (f.categories & HUGE) !== 0n) ? hugeBlocks(found, start, end, BigInt(pmd)) : 0;
  return { holes, hugeMoves };
}

/**
 * Lay the live pages of `from` out densely in `to`, in from-space order, and return the
 * forwarding table. `to` must be registered with `uffd` (MISSING) and unmapped where the
 * layout goes; both private anonymous memory with the same protection (or pass
 * `fallback: 'copy'`, which the result's `report.atomic` then admits to). Open `uffd` with
 * `features: ['MOVE']`, and keep the from-space out of forks (`madvise('DONTFORK')`): a page
 * shared with a child process cannot be moved.
 *
 * Live pages are numbers (page indexes of the from-space) or `{ offset, length }` byte ranges;
 * overlaps and duplicates are merged. Each run of contiguous live pages is one UFFDIO_MOVE, and
 * the whole list goes to the kernel in one call into the addon.
 *
 * With `mode: 'concurrent'` it returns a {@link ConcurrentCompaction} at once instead: see
 * {@link CompactOptions.mode}.
 *
 * @example
 * ```ts
 * uffd.register(toSpace, { missing: true });
 * const { forwarding, pagesMoved } = compact(uffd, fromSpace, toSpace, [0, 5, 6, { offset: 65536, length: 8192 }]);
 * forwarding.page(5); // 1: old page 5 now lives at to-space page 1
 * ```
 * @throws MoveError where a move stopped (its `index` is the run, `offset` the bytes into it).
 */
export function compact(uffd: Userfaultfd, from: Mapping, to: Mapping, live: readonly (number | LiveRange)[], options?: CompactOptions & { mode?: 'stop-the-world' }): Compaction;
export function compact(uffd: Userfaultfd, from: Mapping, to: Mapping, live: readonly (number | LiveRange)[], options: CompactOptions & { mode: 'concurrent' }): ConcurrentCompaction;
export function compact(uffd: Userfaultfd, from: Mapping, to: Mapping, live: readonly (number | LiveRange)[], options?: CompactOptions): Compaction | ConcurrentCompaction {
  const opts = toOptions(options);
  // Checked here too: with nothing live, no move would look at it.
  if (!(uffd instanceof Userfaultfd)) throw invalidType('uffd must be a Userfaultfd');
  const mode = oneOf(opts.mode ?? 'stop-the-world', ['stop-the-world', 'concurrent'] as const, 'option mode');
  const p = plan(from, to, live, opts);
  if (mode === 'concurrent') return concurrent(uffd, from, to, p, opts);
  const allowSrcHoles = optBool(opts, 'allowSrcHoles', true);
  const report = movePageList(uffd, p.ops, { allowSrcHoles, retry: opts.retry, fallback: opts.fallback, scan: false });
  const { holes, hugeMoves } = countTo(p);
  report.holes = holes;
  report.hugeMoves = hugeMoves;
  return {
    forwarding: new ForwardingTable(p.forwarding, p.fromBase, p.toBase, p.page),
    pagesMoved: p.livePages - holes,
    holes,
    faultsServed: 0,
    hugeMoves,
    bytes: p.livePages * p.page,
    moves: p.runs.length,
    report,
  };
}

function concurrent(uffd: Userfaultfd, from: Mapping, to: Mapping, p: Plan, opts: Partial<CompactOptions>): ConcurrentCompaction {
  if ((opts.fallback ?? 'none') !== 'none') {
    throw invalidValue("compact: fallback 'copy' is not available in concurrent mode (the event thread moves pages on demand, and only by UFFDIO_MOVE)");
  }
  if (opts.allowSrcHoles === false) throw invalidValue('compact: concurrent mode maps live holes as zero pages; allowSrcHoles: false is not available');
  const chunkPages = toLength(opts.chunkPages ?? 512, 'option chunkPages');
  const page = BigInt(p.page);
  // The table of the on-demand policy: to-space page i of the layout <- this from-space address.
  // A live page that is a hole gets 0 (a zero page): moving a hole "succeeds" without mapping
  // anything, and the faulting thread would fault again, forever.
  const table = new BigUint64Array(p.livePages);
  const background: bigint[] = [];
  let holes = 0;
  const layoutStart = p.toBase + BigInt(p.toOffset);
  for (const r of p.forwarding) {
    const src = p.fromBase + BigInt(r.from) * page;
    const dst = p.toBase + BigInt(r.to) * page;
    const len = r.pages * p.page;
    let covered = 0;
    for (const run of populatedRuns(src, len)) {
      const a = run.start > src ? run.start : src;
      const b = run.end < src + BigInt(len) ? run.end : src + BigInt(len);
      if (b <= a) continue;
      for (let at = a; at < b; at += page) table[Number((dst + (at - src) - layoutStart) / page)] = at;
      // The background pass in chunks, so the event loop gets turns in between.
      for (let at = a; at < b; at += BigInt(chunkPages) * page) {
        const n = b - at < BigInt(chunkPages) * page ? b - at : BigInt(chunkPages) * page;
        background.push(dst + (at - src), at, n);
      }
      covered += Number(b - a) / p.page;
    }
    holes += r.pages - covered;
  }
  const forwarding = new ForwardingTable(p.forwarding, p.fromBase, p.toBase, p.page);
  let policy: PolicyHandle | undefined;
  // The event thread marks each page it moves on demand, so the pass can tell those from conflicts.
  const claims = new Uint8Array(new SharedArrayBuffer(p.livePages));
  const movedOnDemand = (dst: bigint): boolean => Atomics.load(claims, Number((dst - layoutStart) / page)) === 1;
  if (p.livePages > 0) policy = uffd.handle({ address: layoutStart, length: p.livePages * p.page }, { moveFrom: table, claims }, { unit: p.page, retain: from });
  let movedInBackground = 0;
  let alreadyMoved = 0;
  const report = newReport();
  const checkMapped = (): void => {
    if (!from.mapped || !to.mapped) throw Object.assign(new Error('a space was unmapped during a concurrent compaction'), { code: ERR_UFFD_UNMAPPED });
  };

  const done = (async (): Promise<Compaction> => {
    // The mutators go first: compact() has returned before any background move.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (let i = 0; i < background.length; i += 3) {
      // checkMapped references both mappings, which also keeps them alive until the pass ends: a
      // caller that drops them must not have them unmapped by the GC under the event thread's moves.
      checkMapped();
      if (uffd.closed) throw Object.assign(new Error('the userfaultfd was closed during a concurrent compaction'), { code: ERR_UFFD_CLOSED });
      const chunk = new BigUint64Array(background.slice(i, i + 3));
      const r = moveSkippingMapped(uffd, chunk, movedOnDemand, { retry: opts.retry });
      // r.report.moved already leaves out the pages skipped as moved on demand.
      report.moved += r.report.moved;
      report.ioctls += r.report.ioctls;
      report.retries += r.report.retries;
      movedInBackground += Number(chunk[2]) / p.page - r.skipped;
      alreadyMoved += r.skipped;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    // Live holes become zero pages (EEXIST: a fault got there first), so that nothing in the
    // layout depends on the policy once it is removed.
    for (let i = 0; i < table.length; i++) {
      if (table[i] !== 0n) continue;
      try {
        uffd.zeropage(layoutStart + BigInt(i) * page, p.page);
      } catch (err) {
        if (!(err instanceof UffdError) || err.code !== 'EEXIST') throw err;
      }
    }
    const faultsServed = policy?.stats().faults ?? 0;
    policy?.remove();
    checkMapped();
    const { hugeMoves } = countTo(p);
    report.holes = holes;
    report.hugeMoves = hugeMoves;
    return {
      forwarding,
      pagesMoved: p.livePages - holes,
      holes,
      faultsServed,
      hugeMoves,
      bytes: p.livePages * p.page,
      moves: background.length / 3,
      report,
    };
  })();
  return {
    forwarding,
    done,
    progress: () => ({ movedInBackground, alreadyMoved, faultsServed: policy?.stats().faults ?? 0 }),
  };
}
