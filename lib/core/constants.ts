/**
 * Names for the kernel's userfaultfd and PAGEMAP_SCAN bits, and the kernel version that added each.
 * Raw bits stay reachable (`featureBits`, `rawFeatures`) for experts; bits the kernel reports
 * that have no name here are kept, never rejected.
 * @module
 */

/** Every UFFD_FEATURE_* bit known to this library, by bit number. */
export const FEATURES = {
  PAGEFAULT_FLAG_WP: { bit: 0, since: '5.7' },
  EVENT_FORK: { bit: 1, since: '4.11' },
  EVENT_REMAP: { bit: 2, since: '4.11' },
  EVENT_REMOVE: { bit: 3, since: '4.11' },
  MISSING_HUGETLBFS: { bit: 4, since: '4.11' },
  MISSING_SHMEM: { bit: 5, since: '4.11' },
  EVENT_UNMAP: { bit: 6, since: '4.11' },
  SIGBUS: { bit: 7, since: '4.14' },
  THREAD_ID: { bit: 8, since: '4.14' },
  MINOR_HUGETLBFS: { bit: 9, since: '5.13' },
  MINOR_SHMEM: { bit: 10, since: '5.14' },
  EXACT_ADDRESS: { bit: 11, since: '5.18' },
  WP_HUGETLBFS_SHMEM: { bit: 12, since: '5.19' },
  WP_UNPOPULATED: { bit: 13, since: '6.4' },
  POISON: { bit: 14, since: '6.6' },
  WP_ASYNC: { bit: 15, since: '6.7' },
  MOVE: { bit: 16, since: '6.8' },
} as const;

/** A UFFD_FEATURE_* name without its prefix, e.g. `'THREAD_ID'`. */
export type FeatureName = keyof typeof FEATURES;
/** Every known feature name, in bit order. */
export const FEATURE_NAMES = Object.keys(FEATURES) as FeatureName[];

/** `{ THREAD_ID: true, MOVE: false, ... }` for every known feature. */
export type FeatureSet = Readonly<Record<FeatureName, boolean>>;

/** The UFFDIO_* ioctls, by the bit the kernel sets for them in its `ioctls` masks. */
export const IOCTLS = {
  REGISTER: 0,
  UNREGISTER: 1,
  WAKE: 2,
  COPY: 3,
  ZEROPAGE: 4,
  MOVE: 5,
  WRITEPROTECT: 6,
  CONTINUE: 7,
  POISON: 8,
  API: 63,
} as const;

/** A UFFDIO_* ioctl name without its prefix, e.g. `'COPY'`. */
export type IoctlName = keyof typeof IOCTLS;

/** For the ioctls newer than the first kernels: the feature bit that says the kernel has them. */
export const IOCTL_FEATURE: Partial<Record<IoctlName, FeatureName>> = {
  WRITEPROTECT: 'PAGEFAULT_FLAG_WP',
  CONTINUE: 'MINOR_SHMEM',
  POISON: 'POISON',
  MOVE: 'MOVE',
};

/** UFFDIO_REGISTER_MODE_* bits, for {@link Userfaultfd.registerMode}. */
export const REGISTER_MODE = { MISSING: 1n, WP: 2n, MINOR: 4n } as const;

/** The mode bits of the resolving ioctls (UFFDIO_COPY_MODE_* and the like). */
export const MODE = {
  COPY_DONTWAKE: 1n,
  COPY_WP: 2n,
  ZEROPAGE_DONTWAKE: 1n,
  WRITEPROTECT_WP: 1n,
  WRITEPROTECT_DONTWAKE: 2n,
  CONTINUE_DONTWAKE: 1n,
  CONTINUE_WP: 2n,
  POISON_DONTWAKE: 1n,
  MOVE_DONTWAKE: 1n,
  MOVE_ALLOW_SRC_HOLES: 2n,
} as const;

/** userfaultfd(2) / USERFAULTFD_IOC_NEW flag: deliver only faults raised from user mode. */
export const UFFD_USER_MODE_ONLY = 1;

/** PAGEMAP_SCAN page categories (PAGE_IS_*), by bit. */
export const PAGE_CATEGORIES = {
  WPALLOWED: { bit: 0, since: '6.7' },
  WRITTEN: { bit: 1, since: '6.7' },
  FILE: { bit: 2, since: '6.7' },
  PRESENT: { bit: 3, since: '6.7' },
  SWAPPED: { bit: 4, since: '6.7' },
  PFNZERO: { bit: 5, since: '6.7' },
  HUGE: { bit: 6, since: '6.7' },
  SOFT_DIRTY: { bit: 7, since: '6.7' },
  GUARD: { bit: 8, since: '6.14' },
} as const;
/** A PAGEMAP_SCAN category name without its PAGE_IS_ prefix. */
export type PageCategory = keyof typeof PAGE_CATEGORIES;
/** Every PAGEMAP_SCAN category name, in bit order. */
export const PAGE_CATEGORY_NAMES = Object.keys(PAGE_CATEGORIES) as PageCategory[];

/** PAGEMAP_SCAN flag: write-protect the matching pages in the same walk. */
export const PM_SCAN_WP_MATCHING = 1n;
/** PAGEMAP_SCAN flag: EPERM unless every VMA is registered WP with WP_ASYNC. */
export const PM_SCAN_CHECK_WPASYNC = 2n;

/** mmap / mprotect protections. */
export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4 } as const;
/** A protection as letters: `''` (none), `'r'`, `'rw'`, `'rx'`, `'rwx'`. */
export type Protection = '' | 'r' | 'rw' | 'rx' | 'rwx' | 'w' | 'wx' | 'x';

/** mmap(2) flags the mapping constructors use. */
export const MAP = {
  SHARED: 0x01,
  PRIVATE: 0x02,
  ANONYMOUS: 0x20,
  NORESERVE: 0x4000,
  POPULATE: 0x8000,
  HUGETLB: 0x40000,
  HUGE_SHIFT: 26,
} as const;

/** memfd_create(2) flags. */
export const MFD = { HUGETLB: 4, HUGE_SHIFT: 26 } as const;

/** madvise(2) advice accepted by {@link Mapping.madvise}. */
export const MADVISE = {
  NORMAL: 0,
  RANDOM: 1,
  SEQUENTIAL: 2,
  WILLNEED: 3,
  DONTNEED: 4,
  FREE: 8,
  REMOVE: 9,
  DONTFORK: 10,
  DOFORK: 11,
  MERGEABLE: 12,
  UNMERGEABLE: 13,
  HUGEPAGE: 14,
  NOHUGEPAGE: 15,
  DONTDUMP: 16,
  DODUMP: 17,
  WIPEONFORK: 18,
  KEEPONFORK: 19,
  COLD: 20,
  PAGEOUT: 21,
  POPULATE_READ: 22,
  POPULATE_WRITE: 23,
  DONTNEED_LOCKED: 24,
  COLLAPSE: 25,
  /** Guard regions (Linux >= 6.13): accesses raise SIGSEGV; PAGEMAP_SCAN reports them as GUARD. */
  GUARD_INSTALL: 102,
  GUARD_REMOVE: 103,
} as const;
/** An madvise(2) advice name without its MADV_ prefix. */
export type MadviseName = keyof typeof MADVISE;

/** The bit mask of a list of names in a table of `{ bit }` entries. */
export function bitsOf<K extends string>(table: Record<K, { bit: number }>, names: Iterable<K>): bigint {
  let bits = 0n;
  for (const name of names) bits |= 1n << BigInt(table[name].bit);
  return bits;
}

/** `{ name: boolean }` for every entry of a `{ bit }` table, read from a mask. */
export function namesOf<K extends string>(
  table: Record<K, { bit: number }>,
  bits: bigint,
): Readonly<Record<K, boolean>> {
  const out = {} as Record<K, boolean>;
  for (const name of Object.keys(table) as K[]) out[name] = (bits & (1n << BigInt(table[name].bit))) !== 0n;
  return Object.freeze(out);
}

/** The bits of a mask that no entry of the table names. */
export function unknownBitsOf(table: Record<string, { bit: number }>, bits: bigint): bigint {
  let known = 0n;
  for (const entry of Object.values(table)) known |= 1n << BigInt(entry.bit);
  return bits & ~known;
}

/** The ioctl names set in a kernel `ioctls` mask, in bit order. */
export function ioctlNames(mask: bigint): IoctlName[] {
  return (Object.keys(IOCTLS) as IoctlName[]).filter((n) => (mask & (1n << BigInt(IOCTLS[n]))) !== 0n);
}
