/**
 * Helpers for the MOVE tests: aligned areas, page patterns and their checks.
 */
import { createHash } from 'node:crypto';
import { Mapping, Userfaultfd } from '../../lib/index';
import { skipIf, unavailable } from './memtypes';
import { populatedRuns, HUGE } from '../../lib/memory/move-scan';
import { pageSize, thpSize, thpMode } from '../../lib/core/sysinfo';

export const PAGE = pageSize();

/** An area of `length` bytes at an `align`-aligned address inside a larger mapping. */
export interface Area {
  mapping: Mapping;
  address: bigint;
  length: number;
  /** Byte offset of `address` in the mapping. */
  offset: number;
  bytes(offset?: number, length?: number): Uint8Array;
}

export function area(length: number, options: { align?: number; hugepage?: boolean; prot?: 'rw' | 'r' } = {}): Area {
  const align = options.align ?? PAGE;
  // No THP unless asked for: neighbouring areas merge into one VMA, and with THP 'always' a write
  // to one area could fault in a huge page that also maps pages of the next, which a test's model
  // says are empty (EEXIST on a move there; seen on arm64 6.12, as the kernel's uffd tests warn).
  const mapping = Mapping.anonymous(length + align, { hugepage: options.hugepage ?? false, prot: options.prot });
  const a = BigInt(align);
  const address = ((mapping.address + a - 1n) / a) * a;
  const offset = Number(address - mapping.address);
  return {
    mapping,
    address,
    length,
    offset,
    bytes: (o = 0, l = length - o) => mapping.bytes({ offset: offset + o, length: l }),
  };
}

/** Fills page `index` of `bytes` with a pattern of `id`: first word id + 1, then bytes of id. */
export function fillPage(bytes: Uint8Array, index: number, id: number): void {
  const page = bytes.subarray(index * PAGE, (index + 1) * PAGE);
  for (let i = 0; i < PAGE; i++) page[i] = (id * 31 + i * 7 + 1) & 0xff;
  new DataView(page.buffer, page.byteOffset, 8).setBigUint64(0, BigInt(id + 1), true);
}

/** Whether page `index` of `bytes` holds the pattern of `id`. */
export function pageHolds(bytes: Uint8Array, index: number, id: number): boolean {
  const expected = new Uint8Array(PAGE);
  fillPage(expected, 0, id);
  return Buffer.compare(bytes.subarray(index * PAGE, (index + 1) * PAGE), expected) === 0;
}

export function sha(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function openMoveUffd(): Userfaultfd {
  return Userfaultfd.open({ features: ['MOVE'] });
}

/**
 * The hooks every MOVE suite shares: skip, with the reason, where the kernel lacks MOVE; a fresh
 * userfaultfd per test, handed to `set`; after each test, close it and unmap whatever the
 * returned `track` was given. Call it at the top of a describe().
 */
export function moveSuite(set: (uffd: Userfaultfd) => void): <T extends Mapping | Area>(m: T) => T {
  let uffd: Userfaultfd | undefined;
  const cleanup: (Mapping | Area)[] = [];
  before(function () {
    skipIf(this, unavailable(undefined, 'MOVE'));
  });
  beforeEach(function () {
    uffd = openMoveUffd();
    set(uffd);
  });
  afterEach(function () {
    uffd?.close();
    uffd = undefined;
    for (const m of cleanup.splice(0)) ('mapping' in m ? m.mapping : m).unmap();
  });
  return (m) => {
    cleanup.push(m);
    return m;
  };
}

/** Why whole-PMD moves cannot be tested here, or undefined. */
export function thpUnavailable(): string | undefined {
  if (!thpSize()) return 'the kernel has no transparent huge pages';
  const mode = thpMode();
  if (mode === 'never') return 'THP is disabled (transparent_hugepage/enabled = never)';
  return undefined;
}

/** Whether every PMD block of [address, address + length) is mapped by a huge page. */
export function allHuge(address: bigint, length: number): boolean {
  const pmd = BigInt(thpSize() ?? 0);
  const runs = populatedRuns(address, length);
  let covered = 0n;
  for (const r of runs) if ((r.categories & HUGE) !== 0n) covered += r.end - r.start;
  return pmd > 0n && covered === BigInt(length);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
