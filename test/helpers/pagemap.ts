/**
 * Reads /proc/self/pagemap entries: bit 63 present, bit 57 uffd write-protected.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { pageSize } from '../../lib/core/sysinfo';

export function pagemapEntry(address: bigint): bigint {
  const fd = fs.openSync('/proc/self/pagemap', 'r');
  try {
    const buf = Buffer.alloc(8);
    fs.readSync(fd, buf, 0, 8, Number(address / BigInt(pageSize())) * 8);
    return buf.readBigUInt64LE(0);
  } finally {
    fs.closeSync(fd);
  }
}

export const PM_PRESENT = 1n << 63n;
export const PM_UFFD_WP = 1n << 57n;

export function isPresent(address: bigint): boolean {
  return (pagemapEntry(address) & PM_PRESENT) !== 0n;
}

export function isUffdWp(address: bigint): boolean {
  return (pagemapEntry(address) & PM_UFFD_WP) !== 0n;
}

/**
 * Why /proc/self/pagemap cannot show the uffd-wp bit here, or undefined if it can: the kernel
 * exports bit 57 since Linux 5.13 (Documentation/admin-guide/mm/pagemap.rst); before, it reads 0
 * whatever the protection, and nothing at run time tells the two apart.
 */
export function uffdWpBitUnavailable(): string | undefined {
  const [major, minor] = os.release().split('.').map(Number);
  return major > 5 || (major === 5 && minor >= 13) ? undefined : 'pagemap exports the uffd-wp bit (57) since Linux 5.13';
}
