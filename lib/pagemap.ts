/**
 * PAGEMAP_SCAN (Linux >= 6.7): the ioctl on /proc/PID/pagemap that walks a range and reports runs
 * of pages by category.
 * @module
 */
import * as fs from 'node:fs';
import { native } from './binding';
import { PAGE_CATEGORIES, PAGE_CATEGORY_NAMES, type PageCategory } from './constants';
import { UffdError } from './errors';

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

/** What {@link probePagemapScan} found. */
export interface PagemapScanSupport {
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
