/**
 * Memory to register: anonymous, shared (shmem), memfd, hugetlb and file mappings, each with an
 * ArrayBuffer over it (no copy).
 * @module
 */
import { constants as bufferConstants } from 'node:buffer';
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
  /**
   * Reserve no swap or commit charge for the pages (MAP_NORESERVE), as VM guest memory is
   * usually mapped: a large mapping then costs nothing until touched (under the default
   * heuristic overcommit; `vm.overcommit_memory = 2` ignores it).
   */
  noreserve?: boolean;
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

// Readers of a Mapping's private fields, for the functions below: set in its static block.
let readNative: (m: Mapping) => NativeMapping;
let holdersOf: (m: Mapping) => Set<object>;

/**
 * The native handle of `target` if it is a Mapping, else undefined (not exported from the
 * package): for the addon's functions whose native threads use the memory after the call
 * returns, and keep it mapped meanwhile. The one way in: no other module reads a Mapping's handle.
 * @internal
 */
export function nativeMappingOf(target: unknown): NativeMapping | undefined {
  return target instanceof Mapping ? readNative(target) : undefined;
}

/**
 * Keeps `m` from being mremapped while `holder` holds it (a WriteTracker: a moved range loses
 * its uffd registration). Returns the release function. Not exported from the package.
 * @internal
 */
export function holdMapping(m: Mapping, holder: object): () => void {
  const holders = holdersOf(m);
  holders.add(holder);
  return () => holders.delete(holder);
}

// Every ArrayBuffer a Mapping hands out, to its native mapping: a policy that copies from one
// holds the mapping, so that an unmap() cannot free the memory under the event thread.
const bufferOwners = new WeakMap<ArrayBuffer, NativeMapping>();

/** The native mapping under an ArrayBuffer that a Mapping handed out, if any. @internal */
export function mappingOfBuffer(buffer: ArrayBufferLike): NativeMapping | undefined {
  return bufferOwners.get(buffer as ArrayBuffer);
}

/** A protection string as PROT_* bits. */
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
  readonly #native: NativeMapping;
  static {
    readNative = (m) => m.#native;
    holdersOf = (m) => m.#holders;
  }
  #fd: number | undefined;
  readonly #ownsFd: boolean;
  readonly #offset: number;
  // The file a borrowed descriptor named when mapped, to tell whether the number still does.
  readonly #fileId: { dev: number; ino: number } | undefined;
  // What must not see the mapping move (WriteTrackers); see holdMapping.
  readonly #holders = new Set<object>();

  /** What backs this mapping. */
  readonly kind: MappingKind;
  /** The unit of this mapping's pages: the huge page size for hugetlb, else the base page size. */
  readonly pageSize: number;
  /** MAP_SHARED (true) or MAP_PRIVATE. */
  readonly shared: boolean;

  private constructor(
    nativeMapping: NativeMapping,
    kind: MappingKind,
    pageSize: number,
    shared: boolean,
    fd: number | undefined,
    ownsFd: boolean,
    offset: number,
  ) {
    this.#native = nativeMapping;
    this.kind = kind;
    this.pageSize = pageSize;
    this.shared = shared;
    this.#fd = fd;
    this.#ownsFd = ownsFd;
    this.#offset = offset;
    if (fd !== undefined && !ownsFd) {
      const st = fs.fstatSync(fd);
      this.#fileId = { dev: st.dev, ino: st.ino };
    }
    if (fd !== undefined && ownsFd) fdCloser.register(this, fd, this);
  }

  /** Private anonymous memory (the kselftests' "anon"). */
  static anonymous(length: number, options?: AnonymousOptions): Mapping {
    const opts = toOptions(options);
    const len = toPageLength(length, native.pageSize());
    const flags = MAP.PRIVATE | MAP.ANONYMOUS | anonFlags(opts);
    const m = new Mapping(mmap(len, opts.prot, flags, -1, 0), 'anonymous', native.pageSize(), false, undefined, false, 0);
    if (opts.hugepage !== undefined) m.madvise(optBool(opts, 'hugepage', false) ? 'HUGEPAGE' : 'NOHUGEPAGE');
    return m;
  }

  /**
   * Shared anonymous memory, backed by shmem (the kselftests' "shmem"). Its size is fixed:
   * {@link mremap} can shrink it but not grow it (use {@link memfd} for memory that grows).
   */
  static shared(length: number, options?: Omit<AnonymousOptions, 'hugepage'>): Mapping {
    const opts = toOptions(options);
    const len = toPageLength(length, native.pageSize());
    const flags = MAP.SHARED | MAP.ANONYMOUS | anonFlags(opts);
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
   * @throws RangeError with code ERR_OUT_OF_RANGE when `length` from `offset` runs past the end
   * of a regular file: a page wholly past the end raises SIGBUS when touched. Extend the file
   * first (ftruncate). A file truncated later by someone else faults the same way.
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
      const stat = fs.fstatSync(fd);
      const length = opts.length ?? stat.size - offset;
      const len = toPageLength(length, native.pageSize(), true);
      // Device files (st_size 0) map whatever the driver gives; only regular files have an end.
      if (stat.isFile()) checkWithinFile(offset, len, stat.size);
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
    return this.#native.address;
  }

  /** Length in bytes; 0 once unmapped. */
  get length(): number {
    return this.#native.length;
  }

  /** Whether the memory is still mapped. */
  get mapped(): boolean {
    return this.#native.mapped;
  }

  /** The backing file descriptor (memfd and file mappings), or undefined. */
  get fd(): number | undefined {
    return this.#fd;
  }

  /**
   * An ArrayBuffer over the whole mapping (the same object until unmap or mremap). Touching a
   * page registered with a userfaultfd from the JS thread waits for that fault to be resolved:
   * only do it when another thread (a Worker, or the native event thread) serves the faults.
   * @throws RangeError with code ERR_BUFFER_TOO_LARGE for a mapping longer than
   * `buffer.constants.MAX_LENGTH` (4 GiB on Node 20): use {@link bytes} with a range there.
   */
  get buffer(): ArrayBuffer {
    const ab = this.#native.buffer();
    bufferOwners.set(ab, this.#native);
    return ab;
  }

  /**
   * A Uint8Array over the mapping, or over `range` of it. When the mapping is too large for one
   * ArrayBuffer (see {@link buffer}), the array's buffer covers just the range; unmap and mremap
   * detach it like the whole-mapping buffer.
   */
  bytes(range?: SubRange): Uint8Array {
    const { offset, length } = this.#sub(range, 1);
    if (this.length <= bufferConstants.MAX_LENGTH) return new Uint8Array(this.buffer, offset, length);
    const view = this.#native.view(offset, length);
    bufferOwners.set(view, this.#native);
    return new Uint8Array(view);
  }

  /** Apply madvise(2) advice to the whole mapping, or to `range` of it. */
  madvise(advice: MadviseName, range?: SubRange): void {
    const value = MADVISE[oneOf(advice, Object.keys(MADVISE) as MadviseName[], 'advice')];
    const { offset, length } = this.#sub(range, this.pageSize);
    this.#native.madvise(offset, length, value);
  }

  /** Change the protection of the whole mapping, or of `range` of it. */
  mprotect(prot: Protection, range?: SubRange): void {
    const bits = protBits(prot);
    const { offset, length } = this.#sub(range, this.pageSize);
    this.#native.mprotect(offset, length, bits);
  }

  /**
   * Grow or shrink the mapping (mremap(2)). The address may change unless `mayMove` is false;
   * the old ArrayBuffer and every {@link bytes} view are detached either way. Returns the new
   * address. Growing never hands out pages that would raise SIGBUS: a memfd mapping grows its
   * memfd (ftruncate) first; a shared anonymous mapping cannot grow (its shmem object has a
   * fixed size); a file mapping may grow only within the file.
   * @throws Error with code ERR_UFFD_MAPPING_BUSY while a {@link testing} job's threads use it,
   * or while a {@link WriteTracker} tracks it (close the tracker first: a moved range would lose
   * its write-protection, and the tracker would report nothing, silently).
   * @throws Error with code ERR_UFFD_CANNOT_GROW for a shared anonymous mapping grown, and
   * RangeError with code ERR_OUT_OF_RANGE for a file mapping grown past the end of its file.
   */
  mremap(newLength: number, options?: { mayMove?: boolean }): bigint {
    const opts = toOptions(options);
    const len = toPageLength(newLength, this.pageSize);
    const mayMove = optBool(opts, 'mayMove', true);
    if (this.#holders.size > 0) {
      throw Object.assign(new Error('a WriteTracker tracks this mapping: close it before mremap (the moved range would lose its write-protection)'), {
        code: 'ERR_UFFD_MAPPING_BUSY',
      });
    }
    if (len > this.length && this.#fd !== undefined) this.#growFile(len);
    return this.#native.mremap(len, mayMove);
  }

  // Makes the file behind a growing mapping long enough for every new page: past its end a
  // page raises SIGBUS. The memfd is ours to extend; any other file is the caller's.
  #growFile(len: number): void {
    const fd = this.#fd as number;
    const stat = fs.fstatSync(fd);
    if (!this.#ownsFd && (stat.dev !== this.#fileId?.dev || stat.ino !== this.#fileId?.ino)) {
      throw Object.assign(new Error(`descriptor ${fd} no longer refers to the mapped file, so its size cannot be checked: the mapping cannot grow`), {
        code: 'ERR_UFFD_CANNOT_GROW',
      });
    }
    if (!stat.isFile()) return;
    const needed = this.#offset + len;
    if (this.kind === 'memfd' || (this.kind === 'hugetlb' && this.#ownsFd)) {
      if (stat.size < needed) fs.ftruncateSync(fd, needed);
      return;
    }
    checkWithinFile(this.#offset, len, stat.size);
  }

  /**
   * Unmap now. Detaches the ArrayBuffer first; closes an owned descriptor. A second call does
   * nothing. While a {@link testing} job's threads use the memory, it is gone for JS at once but
   * munmap waits for the job to end, so they never touch unmapped memory.
   */
  unmap(): void {
    this.#native.unmap();
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
    if (!this.#native.mapped) void this.#native.address; // throws ERR_UFFD_UNMAPPED
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

function anonFlags(opts: AnonymousOptions): number {
  return (optBool(opts, 'populate', false) ? MAP.POPULATE : 0) | (optBool(opts, 'noreserve', false) ? MAP.NORESERVE : 0);
}

// Refuses a file mapping whose last page lies wholly past the end of the file: touching such a
// page raises SIGBUS. (A partial last page is fine: its tail reads as zeros.)
function checkWithinFile(offset: number, length: number, size: number): void {
  const page = native.pageSize();
  if (offset + length > Math.ceil(size / page) * page) {
    throw outOfRange(`length ${length} from offset ${offset} runs past the end of the file (${size} bytes): pages there would raise SIGBUS; extend the file first`);
  }
}

function mmap(length: number, prot: Protection | undefined, flags: number, fd: number, offset: number): NativeMapping {
  return new native.MappingHandle(length, protBits(prot ?? 'rw'), flags, fd, offset);
}
