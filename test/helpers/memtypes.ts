/**
 * The memory types of the kernel's uffd-unit-tests: every case runs on each type where it applies,
 * and skips with a printed reason where the kernel or the machine lacks something.
 */
import { Mapping, probe, type FeatureName } from '../../lib/index';
import { pageSize } from '../../lib/core/sysinfo';
import { hugePageSize } from '../../lib/core/sysinfo';
import { hugetlbUnavailable } from './hugetlb';
import { openDescriptor } from '../../lib/core/userfaultfd';
import { FEATURES } from '../../lib/core/constants';

export interface MemType {
  name: 'anon' | 'shmem' | 'shmem-private' | 'hugetlb' | 'hugetlb-private';
  /** The page unit of this type. */
  unit: number;
  shared: boolean;
  hugetlb: boolean;
  /** File-backed (shmem / hugetlbfs page cache): MINOR faults and CONTINUE apply. */
  fileBacked: boolean;
  /** A mapping of `pages` units. */
  create(pages: number): Mapping;
  /** The feature MISSING registration needs on this type. */
  missingFeature?: FeatureName;
  /** The feature WP registration needs on this type. */
  wpFeature: FeatureName;
  /** The feature MINOR registration needs on this type. */
  minorFeature?: FeatureName;
}

export const MEMTYPES: MemType[] = [
  {
    name: 'anon',
    unit: pageSize(),
    shared: false,
    hugetlb: false,
    fileBacked: false,
    create: (pages) => Mapping.anonymous(pages * pageSize()),
    wpFeature: 'PAGEFAULT_FLAG_WP',
  },
  {
    name: 'shmem',
    unit: pageSize(),
    shared: true,
    hugetlb: false,
    fileBacked: true,
    create: (pages) => Mapping.memfd(pages * pageSize(), { name: 'uffd-test-shmem' }),
    missingFeature: 'MISSING_SHMEM',
    wpFeature: 'WP_HUGETLBFS_SHMEM',
    minorFeature: 'MINOR_SHMEM',
  },
  {
    name: 'shmem-private',
    unit: pageSize(),
    shared: false,
    hugetlb: false,
    fileBacked: true,
    create: (pages) => Mapping.memfd(pages * pageSize(), { name: 'uffd-test-shmem-private', shared: false }),
    missingFeature: 'MISSING_SHMEM',
    wpFeature: 'WP_HUGETLBFS_SHMEM',
    minorFeature: 'MINOR_SHMEM',
  },
  {
    name: 'hugetlb',
    unit: hugePageSize(),
    shared: true,
    hugetlb: true,
    fileBacked: true,
    create: (pages) => Mapping.memfd(pages * hugePageSize(), { name: 'uffd-test-hugetlb', hugetlb: true }),
    missingFeature: 'MISSING_HUGETLBFS',
    wpFeature: 'WP_HUGETLBFS_SHMEM',
    minorFeature: 'MINOR_HUGETLBFS',
  },
  {
    name: 'hugetlb-private',
    unit: hugePageSize(),
    shared: false,
    hugetlb: true,
    fileBacked: false,
    create: (pages) => Mapping.hugetlb(pages * hugePageSize()),
    missingFeature: 'MISSING_HUGETLBFS',
    wpFeature: 'WP_HUGETLBFS_SHMEM',
  },
];

let report: ReturnType<typeof probe> | undefined;
/** probe(), once per process. */
export function kernel(): ReturnType<typeof probe> {
  report ??= probe();
  return report;
}

/** Why `features` cannot be used on `type` here, or undefined if they can. */
export function unavailable(type: MemType | undefined, ...features: (FeatureName | undefined)[]): string | undefined {
  if (type?.hugetlb) {
    const why = hugetlbUnavailable();
    if (why) return why;
  }
  const missing = features.filter((f): f is FeatureName => f !== undefined && !kernel().features[f]);
  // The kernel has it but will not give it to this process (EVENT_FORK without CAP_SYS_PTRACE).
  const denied = missing.filter((f) => kernel().denied[f] !== undefined);
  if (denied.length > 0) return `not privileged for ${denied.map((f) => `${f} (${kernel().denied[f]})`).join(', ')}: needs CAP_SYS_PTRACE`;
  const broken = missing.filter((f) => kernel().broken[f] !== undefined);
  if (broken.length > 0) return `${broken.join(', ')}: ${kernel().broken[broken[0]]}`;
  if (missing.length > 0) return `the kernel lacks ${missing.map((f) => `${f} (Linux ${FEATURES[f].since})`).join(', ')}`;
  return undefined;
}

let hugetlbDontneed: string | undefined | null = null;
/**
 * Why a mapping of `type` cannot be emptied in place, or undefined if it can. A private hugetlb
 * mapping has only MADV_DONTNEED, which hugetlbfs takes since Linux 5.18 (EINVAL before); found
 * by trying it on one huge page, once.
 */
export function emptyUnavailable(type: MemType): string | undefined {
  if (!type.hugetlb || type.shared || hugetlbUnavailable(1)) return undefined;
  if (hugetlbDontneed === null) {
    hugetlbDontneed = undefined;
    const mem = Mapping.hugetlb(hugePageSize());
    try {
      new Uint8Array(mem.buffer)[0] = 1;
      mem.madvise('DONTNEED');
    } catch (err) {
      if ((err as { code?: string }).code !== 'EINVAL') throw err;
      hugetlbDontneed = 'MADV_DONTNEED on a private hugetlb mapping is EINVAL here (hugetlbfs takes it since Linux 5.18)';
    } finally {
      mem.unmap();
    }
  }
  return hugetlbDontneed;
}

/**
 * Why this process cannot open a userfaultfd with `userModeOnly: false` (one that also gets
 * faults the kernel raises), or undefined if it can.
 */
export function kernelModeUnavailable(): string | undefined {
  const { syscall, device } = kernel().open;
  if (syscall.ok || device.ok) return undefined;
  return `not privileged for userModeOnly: false (userfaultfd(2): ${syscall.error}, /dev/userfaultfd: ${device.error}; needs CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or access to /dev/userfaultfd)`;
}

/**
 * Whether this kernel knows the UFFD_USER_MODE_ONLY flag (Linux >= 5.11). Before it, the syscall
 * refuses the flag with EINVAL, whoever asks.
 */
export function kernelHasUserModeOnly(): boolean {
  return kernel().open.syscallUserModeOnly.error !== 'EINVAL';
}

/**
 * A raw descriptor for tests that call the addon directly: user-mode-only where the kernel has
 * the flag, so that it opens unprivileged too.
 */
export function rawUffdFd(): number {
  return openDescriptor('syscall', 'prefer').fd;
}

/**
 * Skip the current test (or hook's tests), printing why, when `reason` is set. Use as
 * `skipIf(this, unavailable(type, 'MOVE'))` at the top of a test.
 */
export function skipIf(ctx: Mocha.Context, reason: string | undefined): void {
  if (reason === undefined) return;
  const hook = ctx.test as (Mocha.Runnable & { type?: string; originalTitle?: string }) | undefined;
  // A skip in a before() hook takes every test of the suite: say how many, once. Mocha gives
  // such a hook the suite's first test as currentTest, so the hook is told by its title.
  const allHook = hook?.type === 'hook' && /^"before all" hook/.test(hook.originalTitle ?? hook.title);
  const title = allHook ? (hook.parent?.fullTitle() ?? '') : (ctx.currentTest?.fullTitle() ?? hook?.fullTitle() ?? '');
  const tests = allHook ? (hook.parent?.total() ?? 1) : 1;
  // test/vm/run.mjs groups the skips of each kernel by the text in [why: ...].
  process.stdout.write(`      skip: ${title} [why: ${reason}]${tests > 1 ? ` x${tests}` : ''}\n`);
  ctx.skip();
}
