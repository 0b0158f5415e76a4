/**
 * userfaultfd for Node.js: the real Linux userfaultfd(2), every UFFDIO_* ioctl, PAGEMAP_SCAN,
 * and the memory calls around them.
 * @module userfaultfd
 */
export { Userfaultfd, availableFeatureBits } from './core/userfaultfd';
export type { OpenOptions, OpenVia, RegisterOptions, CopyOptions, MoveOptions, WakeOption, UffdEvents, EventsOptions, ReadEventsOptions } from './core/userfaultfd';
export { FaultError } from './core/events';
export type { UffdEvent, UffdEventType, PageFault, ForkEvent, RemapEvent, RemoveEvent, UnmapEvent } from './core/events';
export { PolicyHandle } from './core/policy';
export type { Policy, PolicyOptions } from './core/policy';
export type { PolicyStats } from './core/binding';
export { Mapping, protBits } from './core/mapping';
export type { MappingKind, AnonymousOptions, MemfdOptions, HugetlbOptions, FileOptions, AliasOptions, SubRange } from './core/mapping';
export { probe } from './probe';
export type { ProbeReport, OpenResult } from './probe';
export { probePagemapScan } from './memory/pagemap';
export type { PagemapScanSupport } from './memory/pagemap';
export { Pagemap, pagemapScan, pagemapScanAll, DEFAULT_MAX_REGIONS, MAX_REGIONS_LIMIT, SCAN_ARG, SCAN_ARG_SIZE } from './memory/pagemap';
export type { PagemapScanOptions, PagemapScanResult } from './memory/pagemap';
export { PageRegions } from './memory/regions';
export type { PageRegion } from './memory/regions';
export { WriteTracker } from './memory/tracker';
export type { WriteTrackerOptions, WrittenOptions } from './memory/tracker';
export {
  UffdError,
  UnsupportedError,
  ERR_UFFD_CLOSED,
  ERR_UFFD_UNMAPPED,
  ERR_UFFD_MAPPING_BUSY,
  ERR_UFFD_UNSUPPORTED,
  ERR_UFFD_DEADLOCK_GUARD,
  ERR_UFFD_STALE_REGIONS,
  ERR_UFFD_ADDON_LOAD,
} from './core/errors';
export type { SysErrorDetails, ErrnoCode, UffdErrorCode, UffdCode } from './core/errors';
export * as constants from './core/constants';
export type { FeatureName, FeatureSet, IoctlName, PageCategory, MadviseName, Protection } from './core/constants';
export type { Address, Range } from './core/validate';
export { pageSize, hugePageSize, thpSize, hugetlbPools } from './core/sysinfo';
export type { HugetlbPool } from './core/sysinfo';
export * as testing from './testing';
export type { TouchOptions, TouchThreadResult, ForkTouchOptions, ForkTouchResult } from './testing';
export { shareUffd, openShared, closeShared, serveFaults } from './core/worker';
export type { SharedUffd, ServeOptions } from './core/worker';
export { movePages, movePageList, MoveError } from './memory/move';
export type { MovePagesOptions, MoveReport, MoveSpec, RetryOptions } from './memory/move';
export { compact, ForwardingTable } from './memory/compactor';
export type { CompactOptions, Compaction, ConcurrentCompaction, ForwardingRun, LiveRange } from './memory/compactor';
