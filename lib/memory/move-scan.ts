/**
 * What movePages needs to know about pages, read from the page tables: which pages are populated
 * (present or swapped; everything else is a hole UFFDIO_MOVE skips or refuses) and which are
 * mapped by a whole PMD (a transparent huge page).
 *
 * Why PAGEMAP_SCAN: it is one ioctl per range that returns runs, not one word per page, and its
 * HUGE category is exactly "mapped by a PMD" (hugetlb aside, which MOVE refuses anyway). The
 * alternatives are worse: /proc/self/smaps AnonHugePages is per VMA, not per range, and costs a
 * text parse of every mapping of the process; /proc/self/pagemap has no THP bit at all (that
 * lives in /proc/kpageflags, root only, one read per page). PAGEMAP_SCAN came in 6.7, before
 * MOVE (6.8), so wherever MOVE works this does; for the copy fallback on older kernels we read
 * /proc/self/pagemap's present and swapped bits instead, and report no huge pages.
 * @module
 * @internal
 */
import * as fs from 'node:fs';
import { native } from '../core/binding';
import { PAGE_CATEGORIES } from '../core/constants';
import { UffdError } from '../core/errors';
import { SCAN_ARG, SCAN_ARG_SIZE } from './pagemap';

export const PRESENT = 1n << BigInt(PAGE_CATEGORIES.PRESENT.bit);
export const SWAPPED = 1n << BigInt(PAGE_CATEGORIES.SWAPPED.bit);
export const HUGE = 1n << BigInt(PAGE_CATEGORIES.HUGE.bit);

/** A run of pages [start, end) that share `categories`. */
export interface PageRun {
  start: bigint;
  end: bigint;
  categories: bigint;
}

const REGIONS = 256;
// The scan's constant fields, made once: a BigInt operation allocates, and a scan runs per call
// of movePages when it counts huge moves.
const REGIONS_WORD = BigInt(REGIONS);
const ANY_POPULATED = PRESENT | SWAPPED;
const RETURNED = PRESENT | SWAPPED | HUGE;
// One descriptor per environment, opened on first use: opening /proc/self/pagemap costs more
// than the scan itself, and a scan runs on every movePages call that needs one.
let pagemapFd: number | undefined;
let scanSupported: boolean | undefined;
const args = new BigUint64Array(12);
const vec = new BigUint64Array(REGIONS * 3);

function fd(): number {
  pagemapFd ??= fs.openSync('/proc/self/pagemap', 'r');
  return pagemapFd;
}

/**
 * The populated runs of [start, start + length): pages present or swapped, with HUGE set in
 * `categories` for PMD-mapped ones. Holes are the gaps between runs.
 */
export function populatedRuns(start: bigint, length: number): PageRun[] {
  if (scanSupported !== false) {
    try {
      const runs = scan(start, start + BigInt(length));
      scanSupported = true;
      return runs;
    } catch (err) {
      // ENOTTY (< 6.7) or EINVAL for a category this kernel lacks: read pagemap instead.
      if (!(err instanceof UffdError) || scanSupported === true) throw err;
      scanSupported = false;
    }
  }
  return readPagemap(start, length);
}

function scan(start: bigint, end: bigint): PageRun[] {
  const runs: PageRun[] = [];
  let from = start;
  while (from < end) {
    args.fill(0n);
    args[SCAN_ARG.size] = SCAN_ARG_SIZE;
    args[SCAN_ARG.start] = from;
    args[SCAN_ARG.end] = end;
    args[SCAN_ARG.vecLen] = REGIONS_WORD;
    args[SCAN_ARG.categoryAnyofMask] = ANY_POPULATED;
    args[SCAN_ARG.returnMask] = RETURNED;
    const n = native.pagemapScan(fd(), args, vec);
    for (let i = 0; i < n; i++) {
      const run = { start: vec[i * 3], end: vec[i * 3 + 1], categories: vec[i * 3 + 2] };
      const last = runs[runs.length - 1];
      // The kernel splits runs where its walk paused; join them back when nothing differs.
      if (last && last.end === run.start && last.categories === run.categories) last.end = run.end;
      else runs.push(run);
    }
    const walkEnd = args[SCAN_ARG.walkEnd];
    if (walkEnd <= from) break;
    from = walkEnd;
  }
  return runs;
}

const PM_PRESENT = 1n << 63n;
const PM_SWAPPED = 1n << 62n;

function readPagemap(start: bigint, length: number): PageRun[] {
  const page = native.pageSize();
  const pages = length / page;
  const buf = Buffer.alloc(pages * 8);
  fs.readSync(fd(), buf, 0, buf.length, Number(start / BigInt(page)) * 8);
  const runs: PageRun[] = [];
  for (let i = 0; i < pages; i++) {
    const e = buf.readBigUInt64LE(i * 8);
    if ((e & (PM_PRESENT | PM_SWAPPED)) === 0n) continue;
    const cat = (e & PM_PRESENT ? PRESENT : 0n) | (e & PM_SWAPPED ? SWAPPED : 0n);
    const at = start + BigInt(i * page);
    const last = runs[runs.length - 1];
    if (last && last.end === at && last.categories === cat) last.end = at + BigInt(page);
    else runs.push({ start: at, end: at + BigInt(page), categories: cat });
  }
  return runs;
}

/** Bytes of [start, end) not covered by `runs` (sorted, inside the range). */
export function holeBytes(runs: readonly PageRun[], start: bigint, end: bigint): number {
  let covered = 0n;
  for (const r of runs) {
    const a = r.start > start ? r.start : start;
    const b = r.end < end ? r.end : end;
    if (b > a) covered += b - a;
  }
  return Number(end - start - covered);
}

/** How many whole PMD-sized blocks of [start, end) the runs map with a huge page. */
export function hugeBlocks(runs: readonly PageRun[], start: bigint, end: bigint, pmd: bigint): number {
  let count = 0;
  for (const r of runs) {
    if ((r.categories & HUGE) === 0n) continue;
    let a = r.start > start ? r.start : start;
    const b = r.end < end ? r.end : end;
    a = ((a + pmd - 1n) / pmd) * pmd;
    if (b > a) count += Number((b - a) / pmd);
  }
  return count;
}
