/**
 * Reads /proc/self/pagemap entries: bit 63 present, bit 57 uffd write-protected.
 */
import * as fs from 'node:fs';
import { pageSize } from '../../lib/sysinfo';

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
 * Whether a read fault on private anonymous memory maps the shared zero page here. Some kernels
 * allocate a fresh zeroed page instead (seen on a 6.18 build), and then nothing is PFNZERO. Told
 * by the mapping's Rss in /proc/self/smaps, which the zero page does not count (and which needs no
 * privilege, unlike PFNs). `read` must read-fault the page at `address` and nothing else there.
 */
export function readFaultMapsZeroPage(address: bigint, read: () => void): boolean {
  read();
  const start = address.toString(16);
  const smaps = fs.readFileSync('/proc/self/smaps', 'utf8');
  const at = smaps.search(new RegExp(`^0*${start}-`, 'm'));
  if (at < 0) return true; // not found: assume the common case, and let the test speak
  const rss = /^Rss:\s+(\d+) kB/m.exec(smaps.slice(at));
  return rss !== null && rss[1] === '0';
}
