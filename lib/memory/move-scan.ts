/**
 * What movePages needs to know about pages, read from the page tables: which pages are populated
 * (present or swapped; everything else is a hole UFFDIO_MOVE skips or refuses) and which are
 * mapped by a whole PMD (a transparent huge page).
 *
 * Why PAGEMAP_SCAN: one ioctl per range returns runs, and its HUGE category is exactly "mapped
 * by a PMD". smaps is per VMA and a text parse; /proc/self/pagemap has no THP bit (kpageflags
 * does, for root only). It came in 6.7, before MOVE (6.8): on older kernels, for the copy
 * fallback, pagemap's present and swapped bits are read instead, and no huge pages reported.
 * @module
 * @internal
 */
import * as fs from 'node:fs';
import { native } from '../core/binding';
import { PAGE_CATEGORIES } from '../core/constants';
import { UffdError, UnsupportedError } from '../core/errors';
import { ScanWalk, ownPagemap, type ScanPlan } from './pagemap';
import { REGION_WORDS } from './regions';

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
// of movePages when it counts huge moves. The scans go through this thread's shared
// /proc/self/pagemap (ownPagemap): opening one per scan would cost more than the scan.
const POPULATED: Omit<ScanPlan, 'start' | 'end'> = {
  flags: 0n,
  mask: 0n,
  anyOf: PRESENT | SWAPPED,
  inverted: 0n,
  returnMask: PRESENT | SWAPPED | HUGE,
  maxPages: 0n,
  maxRegions: REGIONS,
};
let scanSupported: boolean | undefined;
const vec = new BigUint64Array(REGIONS * REGION_WORDS);

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
      // No PAGEMAP_SCAN (< 6.7), or a category this kernel lacks (an UnsupportedError, or the
      // kernel's own EINVAL): read pagemap instead.
      if (!(err instanceof UnsupportedError || err instanceof UffdError) || scanSupported === true) throw err;
      scanSupported = false;
    }
  }
  return readPagemap(start, length);
}

function scan(start: bigint, end: bigint): PageRun[] {
  const runs: PageRun[] = [];
  const walk = new ScanWalk(ownPagemap(), { ...POPULATED, start, end });
  while (!walk.done) {
    const n = walk.step(vec, REGIONS);
    for (let i = 0; i < n; i++) {
      const at = i * REGION_WORDS;
      const run = { start: vec[at], end: vec[at + 1], categories: vec[at + 2] };
      const last = runs[runs.length - 1];
      // The kernel splits runs where its walk paused; join them back when nothing differs.
      if (last && last.end === run.start && last.categories === run.categories) last.end = run.end;
      else runs.push(run);
    }
  }
  return runs;
}

const PM_PRESENT = 1n << 63n;
const PM_SWAPPED = 1n << 62n;

function readPagemap(start: bigint, length: number): PageRun[] {
  const page = native.pageSize();
  const pages = length / page;
  const buf = Buffer.alloc(pages * 8);
  fs.readSync(ownPagemap().fd, buf, 0, buf.length, Number(start / BigInt(page)) * 8);
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
