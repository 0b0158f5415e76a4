/**
 * probe(): what this kernel and machine offer for userfaultfd, found by asking the kernel on
 * throwaway descriptors. Never throws: what cannot be found out is reported as such.
 * @module
 */
import * as os from 'node:os';
import { native } from './binding';
import { FEATURES, ioctlNames, namesOf, unknownBitsOf, type FeatureSet, type IoctlName } from './constants';
import { probePagemapScan, type PagemapScanSupport } from './pagemap';
import { hugePageSize, hugetlbPools, pageSize, thpMode, thpSize, unprivilegedUserfaultfd, type HugetlbPool } from './sysinfo';

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
  /** Each known feature by name. */
  features: FeatureSet;
  /** All feature bits the kernel reported, unknown ones included. */
  featureBits: bigint;
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
  const fd = attempts.syscallUserModeOnly.fd ?? attempts.syscall.fd ?? attempts.device.fd;
  if (fd !== undefined) {
    try {
      const api = native.apiHandshake(fd, 0n);
      featureBits = api.features;
      ioctlBits = api.ioctls;
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
