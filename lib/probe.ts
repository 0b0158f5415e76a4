/**
 * probe(): what this kernel and machine offer for userfaultfd, found by asking the kernel on
 * throwaway descriptors. Never throws: what cannot be found out is reported as such.
 * @module
 */
import * as os from 'node:os';
import { native } from './core/binding';
import { WP_FEATURES, wpUnusable } from './core/userfaultfd';
import { FEATURES, FEATURE_NAMES, ioctlNames, namesOf, unknownBitsOf, type FeatureName, type FeatureSet, type IoctlName } from './core/constants';
import { probePagemapScan, type PagemapScanSupport } from './memory/pagemap';
import { hugePageSize, hugetlbPools, pageSize, thpMode, thpSize, unprivilegedUserfaultfd, type HugetlbPool } from './core/sysinfo';

/** Whether one way of opening a userfaultfd worked, and if not, the error code. */
export interface OpenResult {
  ok: boolean;
  error?: string;
}

/** What {@link probe} found. */
export interface ProbeReport {
  /** os.release(), e.g. '6.18.4'. */
  kernel: string;
  arch: string;
  /** Whether any way of opening a userfaultfd worked for this process. */
  available: boolean;
  /** Each known feature by name: true if this process can negotiate it. */
  features: FeatureSet;
  /** The feature bits this process can negotiate, unknown ones included. */
  featureBits: bigint;
  /**
   * Features the kernel has but refuses to this process, with the error it gave: EVENT_FORK
   * is EPERM without CAP_SYS_PTRACE. Such a feature is false in `features`.
   */
  denied: Partial<Record<FeatureName, string>>;
  /**
   * Features UFFDIO_API offers that do not work here, with why: PAGEFAULT_FLAG_WP (and the WP
   * features built on it) where a write to a write-protected page raises no fault, as on arm64
   * Linux 5.10. Such a feature is false in `features`.
   */
  broken: Partial<Record<FeatureName, string>>;
  /** Feature bits the kernel reported that this library has no name for. */
  unknownFeatureBits: bigint;
  /** The descriptor's ioctls from UFFDIO_API. */
  ioctls: IoctlName[];
  open: {
    /** userfaultfd(2) with no flags beyond O_CLOEXEC | O_NONBLOCK (needs privilege unless the sysctl allows). */
    syscall: OpenResult;
    /** userfaultfd(UFFD_USER_MODE_ONLY). */
    syscallUserModeOnly: OpenResult;
    /** /dev/userfaultfd + USERFAULTFD_IOC_NEW. */
    device: OpenResult;
  };
  /** vm.unprivileged_userfaultfd, if the sysctl exists. */
  unprivilegedUserfaultfd?: number;
  pageSize: number;
  /** THP (PMD) size and mode, if the kernel has THP. */
  thp?: { size: number; mode?: string };
  /** Default hugetlbfs page size and the pools. */
  hugetlb: { defaultSize: number; pools: HugetlbPool[] };
  pagemapScan: PagemapScanSupport;
}

const UFFD_API = 0xaan;

/** errno number -> 'EPERM', for what rawApi returns. */
function errnoName(errno: number): string {
  const hit = Object.entries(os.constants.errno).find(([, n]) => n === errno);
  return hit ? hit[0] : `errno ${errno}`;
}

/**
 * The bits of `offered` that this process can really negotiate. UFFDIO_API answers with every
 * feature the kernel has, whoever asks, but refuses some of them when asked for: EVENT_FORK
 * without CAP_SYS_PTRACE is EPERM. So each bit is asked for alone, on a throwaway descriptor
 * (one handshake per descriptor), and only the ones granted count.
 */
function negotiable(offered: bigint, open: () => number | undefined): { bits: bigint; refused: Map<bigint, string> } {
  let bits = 0n;
  const refused = new Map<bigint, string>();
  for (let bit = 1n; bit <= offered; bit <<= 1n) {
    if ((offered & bit) === 0n) continue;
    const fd = open();
    if (fd === undefined) return { bits: offered, refused };
    try {
      const errno = native.rawApi(fd, UFFD_API, bit);
      if (errno === 0) bits |= bit;
      else refused.set(bit, errnoName(errno));
    } finally {
      native.closeFd(fd);
    }
  }
  return { bits, refused };
}

function tryOpen(via: 0 | 1, userModeOnly: boolean): { result: OpenResult; fd?: number } {
  try {
    return { result: { ok: true }, fd: native.openUffd(via, userModeOnly) };
  } catch (err) {
    return { result: { ok: false, error: (err as { code?: string }).code ?? String(err) } };
  }
}

/** Report what this kernel supports. Never throws. */
export function probe(): ProbeReport {
  const attempts = {
    syscall: tryOpen(0, false),
    syscallUserModeOnly: tryOpen(0, true),
    device: tryOpen(1, true),
  };
  let featureBits = 0n;
  let ioctlBits = 0n;
  const denied: Partial<Record<FeatureName, string>> = {};
  const broken: Partial<Record<FeatureName, string>> = {};
  const way = (['syscallUserModeOnly', 'syscall', 'device'] as const).find((k) => attempts[k].fd !== undefined);
  const fd = way === undefined ? undefined : attempts[way].fd;
  if (fd !== undefined) {
    try {
      const api = native.apiHandshake(fd, 0n);
      ioctlBits = api.ioctls;
      // The same way of opening that worked, for the throwaway descriptors.
      const again = (): number | undefined => tryOpen(way === 'device' ? 1 : 0, way !== 'syscall').fd;
      const granted = negotiable(api.features, again);
      featureBits = granted.bits;
      for (const name of FEATURE_NAMES) {
        const why = granted.refused.get(1n << BigInt(FEATURES[name].bit));
        if (why !== undefined) denied[name] = why;
      }
      const wpWhy = wpUnusable(featureBits);
      if (wpWhy !== undefined) {
        for (const name of WP_FEATURES) {
          const bit = 1n << BigInt(FEATURES[name].bit);
          if ((featureBits & bit) === 0n) continue;
          featureBits &= ~bit;
          broken[name] = wpWhy;
        }
      }
    } catch {
      // leave everything unsupported
    }
  }
  for (const a of Object.values(attempts)) if (a.fd !== undefined) native.closeFd(a.fd);
  const thp = thpSize();
  const report: ProbeReport = {
    kernel: os.release(),
    arch: process.arch,
    available: fd !== undefined,
    features: namesOf(FEATURES, featureBits),
    featureBits,
    denied,
    broken,
    unknownFeatureBits: unknownBitsOf(FEATURES, featureBits),
    ioctls: ioctlNames(ioctlBits),
    open: {
      syscall: attempts.syscall.result,
      syscallUserModeOnly: attempts.syscallUserModeOnly.result,
      device: attempts.device.result,
    },
    pageSize: pageSize(),
    hugetlb: { defaultSize: hugePageSize(), pools: hugetlbPools() },
    pagemapScan: probePagemapScan(),
  };
  const sysctl = unprivilegedUserfaultfd();
  if (sysctl !== undefined) report.unprivilegedUserfaultfd = sysctl;
  if (thp !== undefined) report.thp = { size: thp, mode: thpMode() };
  return report;
}
