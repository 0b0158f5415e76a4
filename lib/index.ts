/**
 * userfaultfd for Node.js: the real Linux userfaultfd(2), every UFFDIO_* ioctl, PAGEMAP_SCAN,
 * and the memory calls around them.
 * @module userfaultfd
 */
export { Userfaultfd, availableFeatureBits } from './userfaultfd';
export type { OpenOptions, OpenVia, RegisterOptions, CopyOptions, MoveOptions, WakeOption, UffdEvents, EventsOptions, ReadEventsOptions } from './userfaultfd';
export { FaultError } from './events';
export type { UffdEvent, UffdEventType, PageFault, ForkEvent, RemapEvent, RemoveEvent, UnmapEvent } from './events';
export { PolicyHandle } from './policy';
export type { Policy, PolicyOptions } from './policy';
export type { PolicyStats } from './binding';
export { Mapping, protBits } from './mapping';
export type { MappingKind, AnonymousOptions, MemfdOptions, HugetlbOptions, FileOptions, AliasOptions, SubRange } from './mapping';
export { probe } from './probe';
export type { ProbeReport, OpenResult } from './probe';
export { probePagemapScan } from './pagemap';
export type { PagemapScanSupport } from './pagemap';
export { Pagemap, pagemapScan, pagemapScanAll, DEFAULT_MAX_REGIONS, MAX_REGIONS_LIMIT, SCAN_ARG, SCAN_ARG_SIZE } from './pagemap';
export type { PagemapScanOptions, PagemapScanResult } from './pagemap';
export { PageRegions } from './regions';
export type { PageRegion } from './regions';
export { WriteTracker } from './tracker';
export type { WriteTrackerOptions, WrittenOptions } from './tracker';
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
} from './errors';
export type { SysErrorDetails, ErrnoCode, UffdErrorCode, UffdCode } from './errors';
export * as constants from './constants';
export type { FeatureName, FeatureSet, IoctlName, PageCategory, MadviseName, Protection } from './constants';
export type { Address, Range } from './validate';
export { pageSize, hugePageSize, thpSize, hugetlbPools } from './sysinfo';
export type { HugetlbPool } from './sysinfo';
export * as testing from './testing';
export type { TouchOptions, TouchThreadResult, ForkTouchOptions, ForkTouchResult } from './testing';
export { shareUffd, openShared, closeShared, serveFaults } from './worker';
export type { SharedUffd, ServeOptions } from './worker';
export { movePages, movePageList, MoveError } from './move';
export type { MovePagesOptions, MoveReport, MoveSpec, RetryOptions } from './move';
export { compact, ForwardingTable } from './compactor';
export type { CompactOptions, Compaction, ConcurrentCompaction, ForwardingRun, LiveRange } from './compactor';
