/**
 * What the machine offers around userfaultfd: page sizes, huge page pools, sysctls. Read from
 * /proc and /sys at call time; every reader returns undefined rather than throwing.
 * @module
 */
import * as fs from 'node:fs';
import { native } from './binding';

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function readInt(file: string): number | undefined {
  const text = readText(file);
  if (text === undefined) return undefined;
  const n = Number.parseInt(text.trim(), 10);
  return Number.isNaN(n) ? undefined : n;
}

/** The base page size (4096 on x86_64; 4096, 16384 or 65536 on arm64). */
export function pageSize(): number {
  return native.pageSize();
}

/** The default hugetlbfs page size (Hugepagesize in /proc/meminfo); 2 MiB if unknown. */
export function hugePageSize(): number {
  const m = /^Hugepagesize:\s+(\d+)\s+kB/m.exec(readText('/proc/meminfo') ?? '');
  return m ? Number(m[1]) * 1024 : 2 * 1024 * 1024;
}

/** The transparent huge page (PMD) size, or undefined without THP. */
export function thpSize(): number | undefined {
  return readInt('/sys/kernel/mm/transparent_hugepage/hpage_pmd_size');
}

/** The THP mode in force: 'always', 'madvise' or 'never'. */
export function thpMode(): string | undefined {
  const m = /\[(\w+)\]/.exec(readText('/sys/kernel/mm/transparent_hugepage/enabled') ?? '');
  return m?.[1];
}

/** One hugetlbfs page pool. */
export interface HugetlbPool {
  /** Page size in bytes. */
  size: number;
  total: number;
  free: number;
}

/** The hugetlbfs pools, one per huge page size. */
export function hugetlbPools(): HugetlbPool[] {
  const dir = '/sys/kernel/mm/hugepages';
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const pools: HugetlbPool[] = [];
  for (const name of names) {
    const m = /^hugepages-(\d+)kB$/.exec(name);
    if (!m) continue;
    pools.push({
      size: Number(m[1]) * 1024,
      total: readInt(`${dir}/${name}/nr_hugepages`) ?? 0,
      free: readInt(`${dir}/${name}/free_hugepages`) ?? 0,
    });
  }
  return pools.sort((a, b) => a.size - b.size);
}

/** vm.unprivileged_userfaultfd (0 or 1), or undefined where the sysctl is missing. */
export function unprivilegedUserfaultfd(): number | undefined {
  return readInt('/proc/sys/vm/unprivileged_userfaultfd');
}
