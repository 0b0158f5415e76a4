/**
 * Errors shaped like Node's own system errors, so `err.code === 'EEXIST'` works as it does for fs.
 * @module
 */
import { constants as osConstants } from 'node:os';
import { getSystemErrorMap } from 'node:util';

/** What the native layer knows about a failed system call. */
export interface SysErrorDetails {
  /** Negative errno, as Node reports it. */
  errno: number;
  syscall: string;
  ioctl?: string;
  /** Bytes done before the failure (resolving ioctls only). */
  bytes?: number;
  path?: string;
}

// What to do about the common failures, keyed by `ioctl-or-syscall:code`, then `*:code`.
const HINTS: Record<string, string> = {
  'userfaultfd:EPERM':
    'unprivileged userfaultfd is off (vm.unprivileged_userfaultfd = 0): open with userModeOnly: true ' +
    '(Linux >= 5.11), grant CAP_SYS_PTRACE, set sysctl vm.unprivileged_userfaultfd=1, or give ' +
    'this user read-write access to /dev/userfaultfd (Linux >= 6.1)',
  'open:EACCES': 'this user may not open /dev/userfaultfd: its file permissions decide (chmod/chgrp it, or use the syscall)',
  'open:ENOENT': '/dev/userfaultfd is missing (Linux < 6.1, or devtmpfs not mounted)',
  'UFFDIO_API:EINVAL': 'UFFDIO_API may be called once per fd, and only with features this kernel knows',
  'UFFDIO_API:EPERM': 'EVENT_FORK needs CAP_SYS_PTRACE',
  'UFFDIO_REGISTER:EINVAL':
    'the range must be page aligned (huge-page aligned on hugetlbfs) and inside mappings that support the mode (MINOR is for shmem and hugetlbfs only)',
  'UFFDIO_REGISTER:EBUSY': 'part of the range is already registered with another userfaultfd',
  'UFFDIO_REGISTER:EPERM': 'the mapping cannot be written (a read-only shared file mapping)',
  'UFFDIO_REGISTER:ENOMEM': 'no mapping covers the range',
  '*:EEXIST': 'the destination is already mapped: treat the fault as resolved and wake its waiters',
  '*:EAGAIN':
    'the address space changed (a FORK/REMAP/REMOVE/UNMAP event is unread) or the call made partial progress: read the pending events, then retry from `bytes`',
  '*:ENOENT': 'no registered mapping covers the destination (or, for MOVE, the source has a hole)',
  '*:ESRCH': 'the address space this userfaultfd serves has exited',
  'UFFDIO_CONTINUE:EFAULT': 'the page cache has no page there yet: write it through a second mapping first',
  'UFFDIO_MOVE:EBUSY': 'a source page is pinned or shared (after fork, or KSM)',
  'UFFDIO_MOVE:EINVAL':
    'MOVE needs private anonymous memory on both sides with equal protections, and a destination registered with this userfaultfd',
  'UFFDIO_MOVE:ENOENT': 'the source has a hole (pass allowSrcHoles to skip it), or no mapping covers the source or the destination',
  'UFFDIO_ZEROPAGE:EINVAL': 'ZEROPAGE is not offered on hugetlbfs ranges',
  'PAGEMAP_SCAN:EPERM':
    'checkWpAsync: part of the range is not registered for WP with a WP_ASYNC userfaultfd (use WriteTracker, or drop checkWpAsync to skip such memory)',
  'PAGEMAP_SCAN:EINVAL': 'the start must be page aligned, and flags and category bits known to this kernel (probePagemapScan() lists them)',
};

function hintFor(op: string, code: string): string | undefined {
  return HINTS[`${op}:${code}`] ?? HINTS[`*:${code}`];
}

/**
 * The errno names this library's calls produce (see the README's tables and each call's
 * documentation). The kernel can return others; `code` then holds that errno's name, which is
 * why {@link UffdErrorCode} stays open to any string.
 */
export type ErrnoCode =
  | 'EACCES'
  | 'EAGAIN'
  | 'EBADF'
  | 'EBUSY'
  | 'EEXIST'
  | 'EFAULT'
  | 'EINVAL'
  | 'EIO'
  | 'EISDIR'
  | 'EMFILE'
  | 'ENFILE'
  | 'ENODEV'
  | 'ENOENT'
  | 'ENOMEM'
  | 'ENOSPC'
  | 'ENOSYS'
  | 'ENOTTY'
  | 'EOPNOTSUPP'
  | 'EOVERFLOW'
  | 'EPERM'
  | 'ESPIPE'
  | 'ESRCH';

/**
 * The `code` of a {@link UffdError}: an errno name, or `'ERR_UFFD_DEADLOCK_GUARD'` for a
 * {@link FaultError} the deadlock guard raised. `(string & {})` keeps any other errno name the
 * kernel may return assignable while editors still offer the known ones.
 */
 
export type UffdErrorCode = ErrnoCode | typeof ERR_UFFD_DEADLOCK_GUARD | (string & {});

/** A call on a closed Userfaultfd, WriteTracker or Pagemap, or on one closed while the call ran. */
export const ERR_UFFD_CLOSED = 'ERR_UFFD_CLOSED';
/**
 * A call on a Mapping that was unmapped (by `unmap()`, or by the GC once nothing held it), or
 * a concurrent compaction whose from- or to-space was unmapped before it finished.
 */
export const ERR_UFFD_UNMAPPED = 'ERR_UFFD_UNMAPPED';
/** `mremap()` of a Mapping that native threads (a `testing` job, a policy) are using. */
export const ERR_UFFD_MAPPING_BUSY = 'ERR_UFFD_MAPPING_BUSY';
/** The running kernel lacks what the call needs: an {@link UnsupportedError}. */
export const ERR_UFFD_UNSUPPORTED = 'ERR_UFFD_UNSUPPORTED';
/** A {@link FaultError} for a fault the JS thread raised on itself, resolved by the deadlock guard. */
export const ERR_UFFD_DEADLOCK_GUARD = 'ERR_UFFD_DEADLOCK_GUARD';
/** A `written()` result read after the tracker's next call reused its buffer. */
export const ERR_UFFD_STALE_REGIONS = 'ERR_UFFD_STALE_REGIONS';
/** The native addon could not be loaded (no build, no matching prebuild): the message says what to run. */
export const ERR_UFFD_ADDON_LOAD = 'ERR_UFFD_ADDON_LOAD';

/** The codes of this library's own errors; the others carry an errno name or Node's `ERR_INVALID_ARG_*`/`ERR_OUT_OF_RANGE`. */
export type UffdCode =
  | typeof ERR_UFFD_CLOSED
  | typeof ERR_UFFD_UNMAPPED
  | typeof ERR_UFFD_MAPPING_BUSY
  | typeof ERR_UFFD_UNSUPPORTED
  | typeof ERR_UFFD_DEADLOCK_GUARD
  | typeof ERR_UFFD_STALE_REGIONS
  | typeof ERR_UFFD_ADDON_LOAD;

/**
 * A failed system call or ioctl. Like Node's own errors: `code` (`'EEXIST'`), `errno` (negative),
 * `syscall` (`'ioctl'`), plus `ioctl` (`'UFFDIO_COPY'`) and, for the resolving ioctls, `bytes`:
 * the progress made before the failure (an `EAGAIN` with `bytes > 0` is partial progress).
 */
export class UffdError extends Error {
  override name = 'UffdError';
  readonly code: UffdErrorCode;
  readonly errno: number;
  readonly syscall: string;
  readonly ioctl?: string;
  readonly bytes?: number;
  readonly path?: string;

  constructor(details: SysErrorDetails) {
    const code = safeErrorName(details.errno);
    const description = getSystemErrorMap().get(details.errno)?.[1] ?? 'unknown error';
    const op = details.ioctl ?? details.syscall;
    const hint = hintFor(op, code);
    let message = `${op} failed: ${code} (${description})`;
    if (details.path) message += ` '${details.path}'`;
    if (details.bytes !== undefined && details.bytes > 0) message += ` after ${details.bytes} bytes`;
    if (hint) message += `: ${hint}`;
    super(message);
    this.code = code;
    this.errno = details.errno;
    this.syscall = details.syscall;
    if (details.ioctl !== undefined) this.ioctl = details.ioctl;
    if (details.bytes !== undefined) this.bytes = details.bytes;
    if (details.path !== undefined) this.path = details.path;
  }
}

// libuv names the errnos it knows; others (ECHILD, EUCLEAN, ...) come from os.constants.
function safeErrorName(errno: number): string {
  const known = getSystemErrorMap().get(errno)?.[0];
  if (known) return known;
  const named = Object.entries(osConstants.errno).find(([, n]) => n === -errno)?.[0];
  return named ?? `E${-errno}`;
}

/**
 * The running kernel lacks a feature or ioctl this call needs. `feature` names it and `since`
 * is the first kernel version that has it.
 */
export class UnsupportedError extends Error {
  override name = 'UnsupportedError';
  readonly code = ERR_UFFD_UNSUPPORTED;
  constructor(
    readonly feature: string,
    readonly since: string,
    detail?: string,
  ) {
    super(`${feature} is not supported by this kernel (needs Linux >= ${since})${detail ? `: ${detail}` : ''}`);
  }
}

/** A TypeError with Node's `ERR_INVALID_ARG_TYPE` code. */
export function invalidType(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_TYPE' });
}

/** A RangeError with Node's `ERR_OUT_OF_RANGE` code. */
export function outOfRange(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'ERR_OUT_OF_RANGE' });
}

/** A TypeError with Node's `ERR_INVALID_ARG_VALUE` code (a value of the right type but unknown). */
export function invalidValue(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_ARG_VALUE' });
}
