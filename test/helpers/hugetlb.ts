/**
 * Huge pages for the hugetlb test cases. As root, the suite reserves what it needs from the
 * default pool before the run and gives back exactly what it added afterwards.
 */
import * as fs from 'node:fs';
import { hugePageSize } from '../../lib/core/sysinfo';

const POOL = () => `/sys/kernel/mm/hugepages/hugepages-${hugePageSize() / 1024}kB`;
/** Enough for every hugetlb case in the suite to run at once (each uses a few pages). */
export const WANTED_HUGE_PAGES = Math.max(8, Math.ceil((128 << 20) / hugePageSize()));

let added = 0;

function read(name: string): number {
  try {
    return Number.parseInt(fs.readFileSync(`${POOL()}/${name}`, 'utf8'), 10);
  } catch {
    return 0;
  }
}

export function freeHugePages(): number {
  return read('free_hugepages');
}

/** Raises the pool so that WANTED_HUGE_PAGES are free; a no-op without root or with enough free. */
export function reserveHugePages(): void {
  const missing = WANTED_HUGE_PAGES - freeHugePages();
  if (missing <= 0 || process.getuid?.() !== 0) return;
  const total = read('nr_hugepages');
  try {
    fs.writeFileSync(`${POOL()}/nr_hugepages`, String(total + missing));
    added = read('nr_hugepages') - total;
  } catch {
    added = 0;
  }
}

/** Gives back the pages reserveHugePages added (never more than are free). */
export function releaseHugePages(): void {
  if (added <= 0) return;
  const total = read('nr_hugepages');
  const giveBack = Math.min(added, freeHugePages());
  try {
    fs.writeFileSync(`${POOL()}/nr_hugepages`, String(total - giveBack));
  } catch {
    // leave them: the next run reuses them
  }
  added = 0;
}

/** Why hugetlb cases cannot run here, or undefined if they can. */
export function hugetlbUnavailable(pagesNeeded = 4): string | undefined {
  const free = freeHugePages();
  if (free >= pagesNeeded) return undefined;
  return process.getuid?.() === 0
    ? `only ${free} free huge pages of ${hugePageSize()} bytes could be reserved`
    : `only ${free} free huge pages and not root (reserve with: sysctl vm.nr_hugepages=${WANTED_HUGE_PAGES})`;
}
