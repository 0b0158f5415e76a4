/**
 * Memory to register: anonymous, shared (shmem), memfd, hugetlb and file mappings, each with an
 * ArrayBuffer over it (no copy).
 * @module
 */
import * as fs from 'node:fs';
import { native, type NativeMapping } from './binding';
import { MADVISE, MAP, MFD, PROT, type MadviseName, type Protection } from './constants';
import { invalidType, outOfRange } from './errors';
import { hugePageSize } from './sysinfo';
import { checkAligned, oneOf, optBool, toLength, toOptions } from './validate';

/** What backs a {@link Mapping}. */
export type MappingKind = 'anonymous' | 'shared' | 'memfd' | 'hugetlb' | 'file';

/** Options of {@link Mapping.anonymous} and {@link Mapping.shared}. */
export interface AnonymousOptions {
  /** `'rw'` by default. */
  prot?: Protection;
  /** true: MADV_HUGEPAGE (transparent huge pages); false: MADV_NOHUGEPAGE; unset: the system's default. */
  hugepage?: boolean;
  /** Fault every page in now (MAP_POPULATE). Do not use on memory you mean to register for MISSING faults. */
  populate?: boolean;
}

/** Options of {@link Mapping.memfd}. */
export interface MemfdOptions {
  /** The name shown in /proc/self/maps (`memfd:NAME`). */
  name?: string;
  /** Back the memfd with hugetlbfs pages: true for the default huge page size, or a size in bytes. */
  hugetlb?: boolean | number;
  /** MAP_SHARED (default) or MAP_PRIVATE: a private view is the kselftests' "shmem-private". */
  shared?: boolean;
  prot?: Protection;
}

/** Options of {@link Mapping.hugetlb}. */
export interface HugetlbOptions {
  /** MAP_SHARED or MAP_PRIVATE (default). */
  shared?: boolean;
  /** Huge page size in bytes; the system default if unset. */
  pageSize?: number;
  prot?: Protection;
}

/** Options of {@link Mapping.file}. */
export interface FileOptions {
  /** Bytes to map; the file's size from `offset` if unset. */
  length?: number;
  /** Page-aligned offset into the file. */
  offset?: number;
  /** MAP_SHARED (default) or MAP_PRIVATE. */
  shared?: boolean;
  /** `'rw'` by default; `'r'` opens a path read-only. */
  prot?: Protection;
}

/** Options of {@link Mapping.alias}. */
export interface AliasOptions {
  shared?: boolean;
  prot?: Protection;
}

/** An offset and length inside a mapping; the whole mapping by default. */
export interface SubRange {
  offset?: number;
  length?: number;
}

const PROTECTIONS: readonly Protection[] = ['', 'r', 'rw', 'rx', 'rwx', 'w', 'wx', 'x'];

let handleOf: (m: Mapping) => NativeMapping;

/**
 * The native handle of a Mapping (not exported from the package): for the addon's functions
 * whose native threads use the memory after the call returns, and keep it mapped meanwhile.
 * @internal
 */
export function nativeHandle(m: Mapping): NativeMapping {
  return handleOf(m);
}

/** A protection string as PROT_* bits. */
// Every ArrayBuffer a Mapping hands out, to its native mapping: a policy that copies from one
// holds the mapping, so that an unmap() cannot free the memory under the event thread.
const bufferOwners = new WeakMap<ArrayBuffer, NativeMapping>();

/** The native mapping under an ArrayBuffer that a Mapping handed out, if any. @internal */
export function mappingOfBuffer(buffer: ArrayBufferLike): NativeMapping | undefined {
  return bufferOwners.get(buffer as ArrayBuffer);
}

export function protBits(prot: unknown): number {
  const p = oneOf(prot, PROTECTIONS, 'prot');
  return (p.includes('r') ? PROT.READ : 0) | (p.includes('w') ? PROT.WRITE : 0) | (p.includes('x') ? PROT.EXEC : 0);
}

// Closes the descriptors of mappings that were dropped without unmap(); the memory itself is
// unmapped by the native handle's own finalizer.
const fdCloser = new FinalizationRegistry<number>((fd) => {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed: nothing to give back
  }
});

/**
 * A region of memory mapped by mmap(2), with an external ArrayBuffer over it.
 *
 * `unmap()` detaches the buffer before it unmaps, so later access through it throws (a
 * `TypeError` for new views; existing views read as empty) instead of touching freed memory.
 * A mapping that is never unmapped is unmapped when the GC collects both it and every buffer
 * over it. Double unmap is a no-op.
 */
export class Mapping implements Disposable {
  readonly #handle: NativeMapping;
  static {
    handleOf = (m) => m.#handle;
  }
  #fd: number | undefined;
  readonly #ownsFd: boolean;
  readonly #offset: number;

  /** What backs this mapping. */
  readonly kind: MappingKind;
  /** The unit of this mapping's pages: the huge page size for hugetlb, else the base page size. */
  readonly pageSize: number;
  /** MAP_SHARED (true) or MAP_PRIVATE. */
  readonly shared: boolean;

  private constructor(
    handle: NativeMapping,
    kind: MappingKind,
    pageSize: number,
    shared: boolean,
    fd: number | undefined,
    ownsFd: boolean,
    offset: number,
  ) {
    this.#handle = handle;
    this.kind = kind;
    this.pageSize = pageSize;
    this.shared = shared;
    this.#fd = fd;
    this.#ownsFd = ownsFd;
    this.#offset = offset;
    if (fd !== undefined && ownsFd) fdCloser.register(this, fd, this);
  }

  /** Private anonymous memory (the kselftests' "anon"). */
  static anonymous(length: number, options?: AnonymousOptions): Mapping {
    const opts = toOptions(options);
    const len = toPageLength(length, native.pageSize());
    const flags = MAP.PRIVATE | MAP.ANONYMOUS | (optBool(opts, 'populate', false) ? MAP.POPULATE : 0);
    const m = new Mapping(mmap(len, opts.prot, flags, -1, 0), 'anonymous', native.pageSize(), false, undefined, false, 0);
    if (opts.hugepage !== undefined) m.madvise(optBool(opts, 'hugepage', false) ? 'HUGEPAGE' : 'NOHUGEPAGE');
    return m;
  }

  /** Shared anonymous memory, backed by shmem (the kselftests' "shmem"). */
  static shared(length: number, options?: Omit<AnonymousOptions, 'hugepage'>): Mapping {
    const opts = toOptions(options);
    const len = toPageLength(length, native.pageSize());
    const flags = MAP.SHARED | MAP.ANONYMOUS | (optBool(opts, 'populate', false) ? MAP.POPULATE : 0);
    return new Mapping(mmap(len, opts.prot, flags, -1, 0), 'shared', native.pageSize(), true, undefined, false, 0);
  }

  /**
   * A memfd of `length` bytes, mapped. Keeps the memfd open (`.fd`) so that {@link alias} can map a
   * second view of the same pages, which MINOR faults and UFFDIO_CONTINUE need.
   */
  static memfd(length: number, options?: MemfdOptions): Mapping {
    const opts = toOptions(options);
    const name = opts.name ?? 'userfaultfd';
    if (typeof name !== 'string') throw invalidType('option name must be a string');
    let flags = 0;
    let unit = native.pageSize();
    if (opts.hugetlb !== undefined && opts.hugetlb !== false) {
      unit = opts.hugetlb === true ? hugePageSize() : toLength(opts.hugetlb, 'option hugetlb');
      flags = MFD.HUGETLB | (Math.log2(unit) << MFD.HUGE_SHIFT);
    }
    const len = toPageLength(length, unit);
    const fd = native.memfdCreate(name, flags);
    try {
      fs.ftruncateSync(fd, len);
      const shared = optBool(opts, 'shared', true);
      const handle = mmap(len, opts.prot, shared ? MAP.SHARED : MAP.PRIVATE, fd, 0);
      return new Mapping(handle, unit === native.pageSize() ? 'memfd' : 'hugetlb', unit, shared, fd, true, 0);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Anonymous hugetlbfs memory (MAP_HUGETLB); needs reserved huge pages (vm.nr_hugepages). */
  static hugetlb(length: number, options?: HugetlbOptions): Mapping {
    const opts = toOptions(options);
    const unit = opts.pageSize === undefined ? hugePageSize() : toLength(opts.pageSize, 'option pageSize');
    const len = toPageLength(length, unit);
    const shared = optBool(opts, 'shared', false);
    const flags = (shared ? MAP.SHARED : MAP.PRIVATE) | MAP.ANONYMOUS | MAP.HUGETLB | (Math.log2(unit) << MAP.HUGE_SHIFT);
    return new Mapping(mmap(len, opts.prot, flags, -1, 0), 'hugetlb', unit, shared, undefined, false, 0);
  }

  /**
   * A file mapping, from a path (opened and owned by the mapping) or a descriptor (borrowed: the
   * caller keeps it open as long as it needs {@link alias}, and closes it).
   */
  static file(file: string | number, options?: FileOptions): Mapping {
    const opts = toOptions(options);
    const prot = opts.prot ?? 'rw';
    const shared = optBool(opts, 'shared', true);
    const offset = toLength(opts.offset ?? 0, 'option offset', true);
    if (offset % native.pageSize() !== 0) throw outOfRange('option offset must be a multiple of the page size');
    let fd: number;
    let owns = false;
    if (typeof file === 'string') {
      fd = fs.openSync(file, protBits(prot) & PROT.WRITE && shared ? 'r+' : 'r');
      owns = true;
    } else if (typeof file === 'number' && Number.isInteger(file) && file >= 0) {
      fd = file;
    } else {
      throw invalidType('file must be a path or a file descriptor');
    }
    try {
      const length = opts.length ?? fs.fstatSync(fd).size - offset;
      const len = toPageLength(length, native.pageSize(), true);
      const handle = mmap(len, prot, shared ? MAP.SHARED : MAP.PRIVATE, fd, offset);
      return new Mapping(handle, 'file', native.pageSize(), shared, fd, owns, offset);
    } catch (err) {
      if (owns) fs.closeSync(fd);
      throw err;
    }
  }

  /**
   * A second mapping of the same memfd or file pages (shared by default). Writes through one
   * view are seen through the other: the way to fill the page cache before UFFDIO_CONTINUE.
   */
  alias(options?: AliasOptions): Mapping {
    const opts = toOptions(options);
    if (this.#fd === undefined) throw invalidType(`a ${this.kind} mapping has no file to alias; use Mapping.memfd or Mapping.file`);
    const fd = native.dupFd(this.#fd);
    try {
      const shared = optBool(opts, 'shared', true);
      const handle = mmap(this.length, opts.prot, shared ? MAP.SHARED : MAP.PRIVATE, fd, this.#offset);
      return new Mapping(handle, this.kind, this.pageSize, shared, fd, true, this.#offset);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** The start address. Throws once unmapped. */
  get address(): bigint {
    return this.#handle.address;
  }

  /** Length in bytes; 0 once unmapped. */
  get length(): number {
    return this.#handle.length;
  }

  /** Whether the memory is still mapped. */
  get mapped(): boolean {
    return this.#handle.mapped;
  }

  /** The backing file descriptor (memfd and file mappings), or undefined. */
  get fd(): number | undefined {
    return this.#fd;
  }

  /**
   * An ArrayBuffer over the whole mapping (the same object until unmap or mremap). Touching a
   * page registered with a userfaultfd from the JS thread waits for that fault to be resolved:
   * only do it when another thread (a Worker, or the native event thread) serves the faults.
   */
  get buffer(): ArrayBuffer {
    const ab = this.#handle.buffer();
    bufferOwners.set(ab, this.#handle);
    return ab;
  }

  /** A Uint8Array over the mapping, or over `range` of it. */
  bytes(range?: SubRange): Uint8Array {
    const { offset, length } = this.#sub(range, 1);
    return new Uint8Array(this.buffer, offset, length);
  }

  /** Apply madvise(2) advice to the whole mapping, or to `range` of it. */
  madvise(advice: MadviseName, range?: SubRange): void {
    const value = MADVISE[oneOf(advice, Object.keys(MADVISE) as MadviseName[], 'advice')];
    const { offset, length } = this.#sub(range, this.pageSize);
    this.#handle.madvise(offset, length, value);
  }

  /** Change the protection of the whole mapping, or of `range` of it. */
  mprotect(prot: Protection, range?: SubRange): void {
    const bits = protBits(prot);
    const { offset, length } = this.#sub(range, this.pageSize);
    this.#handle.mprotect(offset, length, bits);
  }

  /**
   * Grow or shrink the mapping (mremap(2)). The address may change unless `mayMove` is false;
   * the old ArrayBuffer is detached either way. Returns the new address.
   * @throws Error with code ERR_UFFD_MAPPING_BUSY while a {@link testing} job's threads use it.
   */
  mremap(newLength: number, options?: { mayMove?: boolean }): bigint {
    const opts = toOptions(options);
    const len = toPageLength(newLength, this.pageSize);
    return this.#handle.mremap(len, optBool(opts, 'mayMove', true));
  }

  /**
   * Unmap now. Detaches the ArrayBuffer first; closes an owned descriptor. A second call does
   * nothing. While a {@link testing} job's threads use the memory, it is gone for JS at once but
   * munmap waits for the job to end, so they never touch unmapped memory.
   */
  unmap(): void {
    this.#handle.unmap();
    if (this.#fd !== undefined && this.#ownsFd) {
      fdCloser.unregister(this);
      fs.closeSync(this.#fd);
    }
    this.#fd = undefined;
  }

  /** Same as {@link unmap}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.unmap();
  }

  #sub(range: SubRange | undefined, align: number): { offset: number; length: number } {
    if (!this.#handle.mapped) void this.#handle.address; // throws ERR_UFFD_UNMAPPED
    const r = toOptions(range, 'range');
    const total = this.length;
    const offset = toLength(r.offset ?? 0, 'range.offset', true);
    const length = toLength(r.length ?? total - offset, 'range.length');
    if (offset + length > total) throw outOfRange(`range [${offset}, +${length}) lies outside the mapping of ${total} bytes`);
    checkAligned(BigInt(offset), length, align, 'range');
    return { offset, length };
  }
}

function toPageLength(length: unknown, unit: number, roundUp = false): number {
  let len = toLength(length, 'length');
  if (roundUp) len = Math.ceil(len / unit) * unit;
  if (len % unit !== 0) throw outOfRange(`length ${len} must be a multiple of the page size ${unit}`);
  return len;
}

function mmap(length: number, prot: Protection | undefined, flags: number, fd: number, offset: number): NativeMapping {
  return new native.MappingHandle(length, protBits(prot ?? 'rw'), flags, fd, offset);
}
