/**
 * Page moves for GC and compaction: UFFDIO_MOVE (Linux >= 6.8) driven to completion.
 *
 * One UFFDIO_MOVE ioctl can stop early for reasons the caller must handle: partial progress
 * (EAGAIN with bytes done, the real error follows on the next call), the address space changing
 * under it (EAGAIN with nothing done, until someone reads the pending uffd event), a hole in the
 * source, a page that is shared. {@link movePages} handles the first two and reports the rest
 * with the exact offset where the move stopped; {@link movePageList} does the same for a list of
 * moves in one call into the addon, which is what a compactor needs.
 * @module
 */
import { native, type NativeUffd } from '../core/binding';
import { FEATURES, MADVISE, MODE } from '../core/constants';
import { invalidType, outOfRange, UffdError, UnsupportedError } from '../core/errors';
import { holeBytes, hugeBlocks, populatedRuns } from './move-scan';
import { hugePageSize, thpSize } from '../core/sysinfo';
import { availableFeatureBits, nativeUffdOf, type Userfaultfd } from '../core/userfaultfd';
import { checkAligned, oneOf, optBool, toAddress, toLength, toOptions, type Address } from '../core/validate';

/** How to retry the EAGAIN that means "the address space is changing" (nothing was moved). */
export interface RetryOptions {
  /** Retries after the first try (default 5; 0 fails at once). */
  attempts?: number;
  /** The first wait in milliseconds, doubled after each retry (default 1). */
  delayMs?: number;
  /** The longest single wait (default 50). */
  maxDelayMs?: number;
}

/** Options of {@link movePages} and {@link movePageList}. */
export interface MovePagesOptions {
  /** Wake the threads waiting on faults in the destination (default true). */
  wake?: boolean;
  /** Treat unmapped source pages as moved (the destination stays unmapped there) instead of failing with ENOENT. */
  allowSrcHoles?: boolean;
  /**
   * Retries of the mmap_changing EAGAIN, which clears only once the pending FORK / REMAP /
   * REMOVE / UNMAP event is read: waits block the calling thread. false: fail at once.
   */
  retry?: RetryOptions | false;
  /**
   * `'copy'`: where MOVE cannot work (the kernel lacks it, EBUSY on a shared page, EINVAL on
   * shmem or other unmovable memory) do UFFDIO_COPY then MADV_DONTNEED of the source instead:
   * page by page for EBUSY (MOVE resumes after each), the rest of the range for EINVAL.
   * That is not atomic: a write to a source page between its copy and its discard is lost. The
   * report then says `atomic: false`. Default `'none'`: never fall back.
   */
  fallback?: 'none' | 'copy';
  /**
   * Read the destination's page tables after the move (one PAGEMAP_SCAN) to report `holes` and
   * `hugeMoves`. Default true for movePages, where the scan is done only when it can find
   * something (holes allowed, or a 2 MiB-aligned block in reach); false for movePageList.
   */
  scan?: boolean;
}

/** What a move did. */
export interface MoveReport {
  /** Bytes accounted as moved, source holes included (as the kernel counts them). */
  moved: number;
  /** Of those, bytes that went by UFFDIO_COPY + MADV_DONTNEED (the copy fallback). */
  copied: number;
  /** Source pages (base pages) that were holes: the destination stays unmapped there. undefined when not scanned. */
  holes: number | undefined;
  /** 2 MiB blocks moved whole by one PMD move (THP on the source, aligned on both sides). undefined when not scanned. */
  hugeMoves: number | undefined;
  /** Waits for the mmap_changing EAGAIN. */
  retries: number;
  /** UFFDIO_MOVE ioctls issued (partial progress makes more than one per move). */
  ioctls: number;
  /** true when every byte went by UFFDIO_MOVE; false when the copy fallback did some. */
  atomic: boolean;
  /** Why the copy fallback ran ('EBUSY', 'EINVAL', 'ERR_UFFD_UNSUPPORTED'), if it did. */
  fallbackReason?: string;
}

/**
 * A move that stopped. Shaped like {@link UffdError} (`code`, `errno`, `syscall`, `ioctl`), with
 * `bytes` the progress of the whole call, `offset` where it stopped (bytes from the start of the
 * range, or of the failing entry of a list), the addresses there, and the report so far.
 */
export class MoveError extends UffdError {
  override name = 'MoveError';
  /** Bytes from the start of the (failing) move where it stopped. */
  readonly offset: number;
  /** The destination address where it stopped. */
  readonly dst: bigint;
  /** The source address where it stopped. */
  readonly src: bigint;
  /** For movePageList: the index of the entry that failed. */
  readonly index: number;
  /** What was done before the failure. */
  readonly report: MoveReport;

  /** @internal `errno` positive, as the kernel returns it. */
  constructor(errno: number, ioctl: string, at: { index: number; offset: number; dst: bigint; src: bigint }, report: MoveReport) {
    super({ errno: -errno, syscall: 'ioctl', ioctl, bytes: report.moved });
    this.offset = at.offset;
    this.dst = at.dst;
    this.src = at.src;
    this.index = at.index;
    this.report = report;
    this.message += ` (stopped at offset ${at.offset}: dst 0x${at.dst.toString(16)}, src 0x${at.src.toString(16)})`;
    if (this.code === 'EBUSY') {
      this.message += '. Spawning any child process forks this one (libuv uses fork): madvise the source DONTFORK';
    }
  }
}

/** One move of a list: `length` bytes from `src` to `dst`. */
export interface MoveSpec {
  dst: Address;
  src: Address;
  length: number;
}

const EAGAIN = 11;
const EBUSY = 16;
const EEXIST = 17;
const FALLBACK_ERRORS = new Set(['EBUSY', 'EINVAL']);
const ERRNO: Record<number, string> = { 11: 'EAGAIN', 16: 'EBUSY', 22: 'EINVAL' };

// The addon's out-parameters (see Binding.moveBatch): one array for every call instead of one
// allocated per call, read right after each call into the addon and never kept.
const state = new Float64Array(4);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const PAGE_SIZE = native.pageSize();
const SAFE = 2 ** 53;

/** The moves of one call, as drive() issues them. */
interface Moves {
  readonly count: number;
  dst(index: number): bigint;
  src(index: number): bigint;
  length(index: number): number;
  /** Runs the moves from move `index`, `done` bytes into it, to the end or to a stop; `out` as for Binding.moveBatch. */
  issue(handle: NativeUffd, mode: bigint, index: number, done: number, out: Float64Array): void;
}

/** A list of moves: [dst, src, length] triples, issued in one call into the addon. */
class MoveList implements Moves {
  constructor(
    readonly ops: BigUint64Array,
    readonly count: number,
  ) {}

  dst(index: number): bigint {
    return this.ops[index * 3];
  }

  src(index: number): bigint {
    return this.ops[index * 3 + 1];
  }

  length(index: number): number {
    return Number(this.ops[index * 3 + 2]);
  }

  issue(handle: NativeUffd, mode: bigint, index: number, done: number, out: Float64Array): void {
    out[0] = index;
    out[1] = done;
    native.moveBatch(handle, this.ops, this.count, mode, out);
  }
}

/**
 * movePages' one move, held as scalars and issued by the addon's moveOne. Why not a list of one:
 * movePages is on the hot path of a fault handler, and writing the move into a BigUint64Array
 * and reading it back would make BigInts, garbage, on every call; scalar arguments also cost the
 * addon less than a batch.
 */
class OneMove implements Moves {
  readonly count = 1;

  constructor(
    readonly dstAddress: bigint,
    readonly srcAddress: bigint,
    readonly bytes: number,
  ) {}

  dst(): bigint {
    return this.dstAddress;
  }

  src(): bigint {
    return this.srcAddress;
  }

  length(): number {
    return this.bytes;
  }

  issue(handle: NativeUffd, mode: bigint, _index: number, done: number, out: Float64Array): void {
    native.moveOne(handle, this.dstAddress, this.srcAddress, this.bytes, mode, done, out);
  }
}

interface Settings {
  mode: bigint;
  wake: boolean;
  allowSrcHoles: boolean;
  attempts: number;
  delayMs: number;
  maxDelayMs: number;
  fallback: boolean;
  scan: boolean;
}

// The settings of no options at all, for the common call: parsing `{}` per call is measurable.
const DEFAULTS: Readonly<Record<'single' | 'list', Settings>> = {
  single: { mode: 0n, wake: true, allowSrcHoles: false, attempts: 5, delayMs: 1, maxDelayMs: 50, fallback: false, scan: true },
  list: { mode: 0n, wake: true, allowSrcHoles: false, attempts: 5, delayMs: 1, maxDelayMs: 50, fallback: false, scan: false },
};

function settings(options: MovePagesOptions | undefined, scanDefault: boolean): Settings {
  if (options === undefined) return DEFAULTS[scanDefault ? 'single' : 'list'];
  const opts = toOptions(options);
  const wake = optBool(opts, 'wake', true);
  const allowSrcHoles = optBool(opts, 'allowSrcHoles', false);
  const fallback = oneOf(opts.fallback ?? 'none', ['none', 'copy'] as const, 'option fallback') === 'copy';
  let attempts = 5;
  let delayMs = 1;
  let maxDelayMs = 50;
  if (opts.retry === false) {
    attempts = 0;
  } else if (opts.retry !== undefined) {
    const r = toOptions(opts.retry, 'option retry');
    attempts = r.attempts === undefined ? attempts : toLength(r.attempts, 'option retry.attempts', true);
    delayMs = r.delayMs === undefined ? delayMs : toLength(r.delayMs, 'option retry.delayMs', true);
    maxDelayMs = r.maxDelayMs === undefined ? Math.max(delayMs, maxDelayMs) : toLength(r.maxDelayMs, 'option retry.maxDelayMs', true);
    if (attempts > 1000) throw outOfRange('option retry.attempts must be at most 1000');
    if (maxDelayMs > 10000) throw outOfRange('option retry.maxDelayMs must be at most 10000');
  }
  const mode = (wake ? 0n : MODE.MOVE_DONTWAKE) | (allowSrcHoles ? MODE.MOVE_ALLOW_SRC_HOLES : 0n);
  return { mode, wake, allowSrcHoles, attempts, delayMs, maxDelayMs, fallback, scan: optBool(opts, 'scan', scanDefault) };
}

let moveAvailable: boolean | undefined;
function hasMove(): boolean {
  moveAvailable ??= (availableFeatureBits() & (1n << BigInt(FEATURES.MOVE.bit))) !== 0n;
  return moveAvailable;
}

/** A report of nothing done yet. @internal */
export function newReport(): MoveReport {
  return { moved: 0, copied: 0, holes: undefined, hugeMoves: undefined, retries: 0, ioctls: 0, atomic: true };
}

/**
 * Before retry number `tries` + 1 of an EAGAIN (the address space is changing): waits `delayMs`,
 * doubled per retry up to `maxDelayMs`, and counts the retry in the report. false, without
 * waiting, once the attempts are spent.
 */
function backoff(s: Settings, tries: number, report: MoveReport): boolean {
  if (tries >= s.attempts) return false;
  // A blocking wait: movePages is synchronous like the ioctl it wraps. The event that clears
  // mmap_changing is read by another thread (the event thread), never by this one's event loop.
  const ms = Math.min(s.delayMs * 2 ** tries, s.maxDelayMs);
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
  report.retries++;
  return true;
}

/**
 * Where the moves stopped with `errno`, `done` bytes into move `index`: returns the byte of that
 * move to go on from (`done` itself to try again), or throws.
 */
type OnStop = (errno: number, index: number, done: number) => number;

/**
 * The one loop that issues moves: runs `moves` from the first to the last in as few calls into
 * the addon as their stops allow (the addon continues after partial progress itself), adds the
 * bytes moved and the ioctls issued to `report`, and asks `onStop` at each stop.
 */
function drive(handle: NativeUffd, moves: Moves, mode: bigint, report: MoveReport, onStop: OnStop): void {
  let index = 0;
  let done = 0;
  while (index < moves.count) {
    moves.issue(handle, mode, index, done, state);
    const stoppedAt = state[0];
    // Bytes of the moves completed in this call, plus the part of the one it stopped in.
    for (let i = index; i < stoppedAt; i++) report.moved += moves.length(i) - (i === index ? done : 0);
    report.moved += stoppedAt === index ? state[1] - done : state[1];
    report.ioctls += state[3];
    index = stoppedAt;
    done = state[1];
    const errno = state[2];
    if (errno === 0) return;
    done = onStop(errno, index, done);
    if (done >= moves.length(index)) {
      index++;
      done = 0;
    }
  }
}

/**
 * Runs `moves` to the end: waits and retries the mmap_changing EAGAIN, falls back to copying
 * where allowed. What was done is in the report; throws MoveError where it stopped.
 */
function moveAll(uffd: Userfaultfd, moves: Moves, s: Settings, report: MoveReport): void {
  const handle = nativeUffdOf(uffd);
  if (!hasMove()) {
    if (!s.fallback) throw new UnsupportedError('UFFDIO_MOVE', FEATURES.MOVE.since, 'the kernel does not report MOVE; pass { fallback: "copy" } to copy instead');
    for (let i = 0; i < moves.count; i++) copyFallback(handle, moves, i, 0, moves.length(i), s, report, 'ERR_UFFD_UNSUPPORTED');
    return;
  }
  let retries = 0;
  drive(handle, moves, s.mode, report, (errno, index, done) => {
    if (errno === EAGAIN) {
      if (!backoff(s, retries, report)) throw stopped(errno, moves, index, done, report);
      retries++;
      return done;
    }
    const code = ERRNO[errno];
    if (s.fallback && code !== undefined && FALLBACK_ERRORS.has(code)) {
      // EBUSY is about one page (shared, pinned): copy that page and go back to moving, so that
      // as few pages as possible lose atomicity. EINVAL is about the whole mapping (shmem,
      // protections): the rest of this entry cannot move.
      const end = code === 'EBUSY' ? done + PAGE_SIZE : moves.length(index);
      copyFallback(handle, moves, index, done, end, s, report, code);
      return end;
    }
    throw stopped(errno, moves, index, done, report);
  });
}

function stopped(errno: number, moves: Moves, index: number, offset: number, report: MoveReport, ioctl = 'UFFDIO_MOVE'): MoveError {
  const off = BigInt(offset);
  return new MoveError(errno, ioctl, { index, offset, dst: moves.dst(index) + off, src: moves.src(index) + off }, report);
}

/**
 * Bytes [offset, limit) of move `index` by UFFDIO_COPY + MADV_DONTNEED, one populated run (at
 * most 2 MiB) at a time so that each source page is discarded right after its copy: the window
 * in which a write to the source is lost stays one chunk wide. Holes are skipped like MOVE skips
 * them (or refused with ENOENT), so the copy never reads an unmapped source page (which, if the
 * source is registered, would put this thread to sleep in a fault).
 */
function copyFallback(handle: NativeUffd, moves: Moves, index: number, offset: number, limit: number, s: Settings, report: MoveReport, reason: string): void {
  report.atomic = false;
  report.fallbackReason ??= reason;
  const dst = moves.dst(index);
  const src = moves.src(index);
  const start = src + BigInt(offset);
  const end = src + BigInt(limit);
  const runs = populatedRuns(start, limit - offset);
  // At most 2 MiB at a time, or one huge page where those are larger (arm64 with 16 KiB pages
  // has 32 MiB hugetlb pages): MADV_DONTNEED of part of a huge page is EINVAL.
  const chunk = Math.max(2 * 1024 * 1024, hugePageSize());
  const mode = s.wake ? 0n : MODE.COPY_DONTWAKE;
  let at = start;
  for (const run of [...runs, { start: end, end, categories: 0n }]) {
    if (run.start > at) {
      // A hole from `at` to run.start.
      if (!s.allowSrcHoles) throw stopped(2, moves, index, Number(at - src), report, 'UFFDIO_MOVE');
      report.moved += Number(run.start - at);
    }
    for (let p = run.start; p < run.end; ) {
      const n = Math.min(chunk, Number(run.end - p));
      copyExactly(handle, dst + (p - src), p, n, mode, s, report, moves, index, Number(p - src));
      native.madviseRange(p, n, MADVISE.DONTNEED);
      report.moved += n;
      report.copied += n;
      p += BigInt(n);
    }
    at = run.end;
  }
}

function copyExactly(
  handle: NativeUffd,
  dst: bigint,
  src: bigint,
  length: number,
  mode: bigint,
  s: Settings,
  report: MoveReport,
  moves: Moves,
  index: number,
  offset: number,
): void {
  let done = 0;
  let retries = 0;
  while (done < length) {
    try {
      done += handle.copy(dst + BigInt(done), src + BigInt(done), length - done, mode);
    } catch (err) {
      if (!(err instanceof UffdError)) throw err;
      const progress = err.bytes ?? 0;
      if (progress > 0) {
        done += progress;
        continue;
      }
      if (err.code === 'EAGAIN' && backoff(s, retries, report)) {
        retries++;
        continue;
      }
      // Discard what was copied of this chunk, so the source never holds a page twice over.
      if (done > 0) native.madviseRange(src, done, MADVISE.DONTNEED);
      report.moved += done;
      report.copied += done;
      throw stopped(-err.errno, moves, index, offset + done, report, 'UFFDIO_COPY');
    }
  }
}

let pmd: bigint | null | undefined;
/** The PMD size, when moves of whole huge pages are possible at all (read once: it is a sysfs read). */
function pmdSize(): bigint | undefined {
  if (pmd === undefined) {
    const size = thpSize();
    pmd = size ? BigInt(size) : null;
  }
  return pmd ?? undefined;
}

/** The 2 MiB-aligned part of [dst, dst + length) whose source is aligned too, if any. */
function hugeWindow(dst: bigint, src: bigint, length: number, pmd: bigint | undefined): { start: bigint; end: bigint } | undefined {
  if (pmd === undefined) return undefined;
  const p = Number(pmd);
  if (length < p) return undefined;
  // Plain numbers: user addresses are below 2^53 (see movePages), and this runs per call.
  const d = Number(dst);
  if ((d - Number(src)) % p !== 0) return undefined;
  const start = Math.ceil(d / p) * p;
  const end = Math.floor((d + length) / p) * p;
  return end > start ? { start: BigInt(start), end: BigInt(end) } : undefined;
}

/**
 * Counts holes and whole-PMD moves from the destination's page tables after the move: the
 * destination was empty before (MOVE refuses a mapped one), so what is populated there now came
 * from the source, a hole stayed a hole, and a PMD-mapped huge page there was moved whole.
 */
function countAfter(report: MoveReport, dst: bigint, src: bigint, length: number, s: Settings): void {
  const pmd = pmdSize();
  const window = hugeWindow(dst, src, length, pmd);
  if (!s.allowSrcHoles && window === undefined) {
    report.holes = 0;
    report.hugeMoves = 0;
    return;
  }
  const from = s.allowSrcHoles ? dst : (window?.start ?? dst);
  const to = s.allowSrcHoles ? dst + BigInt(length) : (window?.end ?? dst);
  const runs = populatedRuns(from, Number(to - from));
  report.holes = s.allowSrcHoles ? holeBytes(runs, dst, dst + BigInt(length)) / native.pageSize() : 0;
  report.hugeMoves = window && pmd ? hugeBlocks(runs, window.start, window.end, pmd) : 0;
}

/**
 * Move `length` bytes of private anonymous pages from `src` to `dst` with UFFDIO_MOVE (Linux >=
 * 6.8): no copy, the page tables change hands. `dst` must be unmapped and registered with
 * `uffd`; both sides private anonymous memory of this process with equal protections.
 *
 * Continues after partial progress; waits and retries (opts.retry) while the address space is
 * changing; skips source holes with `allowSrcHoles`. The range goes to the kernel in one piece,
 * so where source and destination are both 2 MiB-aligned and the source is a transparent huge
 * page, the kernel moves the whole PMD at once (`report.hugeMoves` counts them); an unaligned
 * move splits the huge page and moves it 4 KiB at a time.
 *
 * @example
 * ```ts
 * const report = movePages(uffd, toSpace.address, fromSpace.address, 1 << 20, { allowSrcHoles: true });
 * // { moved: 1048576, holes: 3, hugeMoves: 0, retries: 0, ioctls: 1, atomic: true, copied: 0 }
 * ```
 * @throws MoveError (a {@link UffdError}) with `offset`, `dst`, `src` where the move stopped:
 *   EEXIST (dst mapped), ENOENT (source hole without allowSrcHoles, or dst not registered),
 *   EBUSY (a source page shared, e.g. after fork, or pinned), EINVAL (not private anonymous on
 *   both sides, or unequal protections), EAGAIN (still changing after the retries).
 * @throws UnsupportedError on kernels without MOVE, unless `fallback: 'copy'`.
 */
export function movePages(uffd: Userfaultfd, dst: Address, src: Address, length: number, options?: MovePagesOptions): MoveReport {
  const s = settings(options, true);
  const d = toAddress(dst, 'dst');
  const sa = toAddress(src, 'src');
  const len = toLength(length, 'length');
  // User-space addresses are below 2^53 on every 64-bit Linux (48- or 52-bit address spaces), so
  // the common case is checked with plain numbers: BigInt division allocates, on every call.
  const dn = Number(d);
  const sn = Number(sa);
  if (dn >= SAFE || sn >= SAFE || dn % PAGE_SIZE !== 0 || sn % PAGE_SIZE !== 0 || len % PAGE_SIZE !== 0) {
    checkAligned(d, len, PAGE_SIZE, 'movePages dst');
    checkAligned(sa, len, PAGE_SIZE, 'movePages src');
  }
  const report = newReport();
  moveAll(uffd, new OneMove(d, sa, len), s, report);
  if (s.scan) countAfter(report, d, sa, len, s);
  return report;
}

/**
 * Run a list of moves in order, in as few calls into the addon as the kernel allows (one when
 * nothing goes wrong). For compactors: each call into the addon costs time of its own, so a
 * list moves faster than the same moves made one by one through {@link movePages}.
 * Accepts `{dst, src, length}` entries or a BigUint64Array of [dst, src, length] triples.
 *
 * The report is for the whole list; with `scan: true` each entry's destination is scanned.
 * @throws MoveError with `index` (the entry) and `offset` (bytes into it) where the list stopped.
 */
export function movePageList(uffd: Userfaultfd, moves: readonly MoveSpec[] | BigUint64Array, options?: MovePagesOptions): MoveReport {
  const s = settings(options, false);
  const page = native.pageSize();
  let ops: BigUint64Array;
  if (moves instanceof BigUint64Array) {
    // The shape here; every entry is checked by the addon before any moves (checking each one in
    // JS as well would slow down a list of small moves).
    if (moves.length % 3 !== 0) throw outOfRange('a BigUint64Array of moves must hold [dst, src, length] triples');
    ops = moves;
  } else {
    if (!Array.isArray(moves)) throw invalidType('moves must be an array of { dst, src, length } or a BigUint64Array');
    ops = new BigUint64Array(moves.length * 3);
    moves.forEach((m, i) => {
      if (typeof m !== 'object' || m === null) throw invalidType(`move ${i} must be { dst, src, length }`);
      const d = toAddress(m.dst, `moves[${i}].dst`);
      const sa = toAddress(m.src, `moves[${i}].src`);
      const len = toLength(m.length, `moves[${i}].length`);
      checkAligned(d, len, page, `moves[${i}] dst`);
      checkAligned(sa, len, page, `moves[${i}] src`);
      ops[i * 3] = d;
      ops[i * 3 + 1] = sa;
      ops[i * 3 + 2] = BigInt(len);
    });
  }
  const count = ops.length / 3;
  const report = newReport();
  if (count === 0) {
    report.holes = 0;
    report.hugeMoves = 0;
    return report;
  }
  moveAll(uffd, new MoveList(ops, count), s, report);
  if (s.scan) {
    let holes = 0;
    let huge = 0;
    for (let i = 0; i < count; i++) {
      const r = newReport();
      countAfter(r, ops[i * 3], ops[i * 3 + 1], Number(ops[i * 3 + 2]), s);
      holes += r.holes ?? 0;
      huge += r.hugeMoves ?? 0;
    }
    report.holes = holes;
    report.hugeMoves = huge;
  }
  return report;
}

/**
 * The background pass of a concurrent compaction: like movePageList, but a destination page that
 * is already mapped because a fault on it was served by moving it on demand is skipped instead
 * of failing, and counted in `skipped` (pages). `movedOnDemand(dst)` says whether the on-demand
 * side claimed that page; a mapped page it did not claim is a conflict and throws MoveError, as
 * any other error does. Source holes are allowed: they stay holes.
 * @internal
 */
export function moveSkippingMapped(
  uffd: Userfaultfd,
  ops: BigUint64Array,
  movedOnDemand: (dst: bigint) => boolean,
  options?: Pick<MovePagesOptions, 'retry' | 'wake'>,
): { report: MoveReport; skipped: number } {
  const s = settings({ ...options, allowSrcHoles: true }, false);
  const handle = nativeUffdOf(uffd);
  const moves = new MoveList(ops, ops.length / 3);
  const report = newReport();
  let skipped = 0;
  let retries = 0;
  drive(handle, moves, s.mode, report, (errno, index, done) => {
    if (errno === EEXIST) {
      // Moved on demand is told by the claim, not by "is the source a hole now?": khugepaged may
      // have filled that hole with a zeroed page, and the pass would report a conflict where
      // there is none.
      if (movedOnDemand(moves.dst(index) + BigInt(done))) {
        skipped++;
      } else if (populatedRuns(moves.src(index) + BigInt(done), PAGE_SIZE).length === 0) {
        // Unclaimed, and the source page is gone: this very ioctl moved it, then said EEXIST.
        // Seen (6.18) when an on-demand move of another page of the same source huge page (THP
        // 'always') splits it at that moment. Not a conflict.
        report.moved += PAGE_SIZE;
      } else {
        throw stopped(errno, moves, index, done, report);
      }
      return done + PAGE_SIZE;
    }
    // EBUSY too: besides a page shared with a child (which outlasts the retries), the source
    // huge page being split by an on-demand move of another of its pages gives a passing EBUSY.
    if ((errno === EAGAIN || errno === EBUSY) && backoff(s, retries, report)) {
      retries++;
      return done;
    }
    throw stopped(errno, moves, index, done, report);
  });
  return { report, skipped };
}
