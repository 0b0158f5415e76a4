/**
 * The Userfaultfd class: open a uffd, register ranges, resolve faults with the UFFDIO_* ioctls.
 * @module
 */
import { EventEmitter } from 'node:events';
import { native, type NativeReport, type NativeUffd } from './binding';
import { EVENT_TYPES, EventQueue, FaultError, decodeEvents, type UffdEvent } from './events';
import { mappingOfBuffer, nativeMappingOf } from './mapping';
import { PolicyHandle, nativePolicy, type Policy, type PolicyOptions } from './policy';
import {
  FEATURES,
  FEATURE_NAMES,
  IOCTL_FEATURE,
  IOCTLS,
  MODE,
  REGISTER_MODE,
  bitsOf,
  ioctlNames,
  namesOf,
  type FeatureName,
  type FeatureSet,
  type IoctlName,
} from './constants';
import { UffdError, UnsupportedError, invalidType, outOfRange } from './errors';
import { checkAligned, oneOf, optBool, optBoolOrUnset, toAddress, toBufferSource, toFd, toFeatureNames, toLength, toOptions, toRange, toSignal, type Address, type Range } from './validate';
import { checkUserfaultfd } from './fdcheck';

/** How the descriptor is created: userfaultfd(2), or /dev/userfaultfd's USERFAULTFD_IOC_NEW (Linux >= 6.1). */
export type OpenVia = 'syscall' | 'device';

/** Options of {@link Userfaultfd.open}. */
export interface OpenOptions {
  /** Features to negotiate with UFFDIO_API. Each must be supported, or open() throws ERR_UFFD_UNSUPPORTED. */
  features?: readonly FeatureName[];
  /** Raw UFFD_FEATURE_* bits, added to `features` (for bits this library has no name for). */
  rawFeatures?: bigint;
  /**
   * Deliver only faults raised from user mode (UFFD_USER_MODE_ONLY, Linux >= 5.11): it is what an
   * unprivileged process may open. A kernel access to the range (read(2) into it) then fails with
   * EFAULT instead of raising a fault.
   *
   * Left out, it is true where the kernel has the flag and false before Linux 5.11, where every
   * descriptor also gets kernel-mode faults (`uffd.userModeOnly` says which one was opened).
   * `true` on such a kernel throws ERR_UFFD_UNSUPPORTED.
   */
  userModeOnly?: boolean;
  /** 'auto' (default) tries the syscall, then /dev/userfaultfd. */
  via?: OpenVia | 'auto';
  /**
   * Negotiate THREAD_ID (default true) so that a fault raised by the JS thread that would have
   * to serve it is resolved by the event thread with zeros and reported as an 'error' event,
   * instead of hanging the process forever.
   */
  deadlockGuard?: boolean;
}

/** The events a Userfaultfd emits. */
export interface UffdEvents {
  pagefault: [import('./events').PageFault];
  fork: [import('./events').ForkEvent<Userfaultfd>];
  remap: [import('./events').RemapEvent];
  remove: [import('./events').RemoveEvent];
  unmap: [import('./events').UnmapEvent];
  /**
   * A {@link FaultError} from the fault engine (a native policy's resolution failed, or the
   * deadlock guard resolved a fault the JS thread raised on itself), or whatever a listener of
   * another event threw.
   */
  error: [err: import('./events').FaultError | Error];
}

/** Options of {@link Userfaultfd.events}. */
export interface EventsOptions {
  /** Stop iterating when aborted. */
  signal?: AbortSignal;
  /** Queue bound (default 1024): at it, the event thread holds events back until half are consumed. */
  highWaterMark?: number;
}

/** Options of {@link Userfaultfd.readEvents}. */
export interface ReadEventsOptions {
  /** Give up after this long (default 1000); -1 waits forever (a Worker blocked so cannot be terminated). */
  timeoutMs?: number;
  /** Most events per call (default 64). */
  max?: number;
}

/** Which faults a registration raises; MISSING alone by default. */
export interface RegisterOptions {
  /** Faults on pages not present (default true unless wp or minor is set). */
  missing?: boolean;
  /** Faults on writes to write-protected pages (Linux >= 5.7; shmem and hugetlbfs >= 5.19). */
  wp?: boolean;
  /** Faults on pages present in the page cache but not mapped (shmem, hugetlbfs; Linux >= 5.13). */
  minor?: boolean;
}

/** Whether a resolving call wakes the waiting threads. */
export interface WakeOption {
  /** Wake the threads waiting on the range (default true). false is DONTWAKE: call wake() later. */
  wake?: boolean;
}

/** Options of {@link Userfaultfd.copy} and {@link Userfaultfd.continue}. */
export interface CopyOptions extends WakeOption {
  /** Map the new pages write-protected (needs a WP registration). */
  wp?: boolean;
}

/** Options of {@link Userfaultfd.move}. */
export interface MoveOptions extends WakeOption {
  /** Skip holes in the source instead of failing with ENOENT. */
  allowSrcHoles?: boolean;
}

/** What a UFFDIO_API handshake settled. */
interface Negotiated {
  featureBits: bigint;
  ioctlBits: bigint;
}

const WP_ASYNC = 1n << BigInt(FEATURES.WP_ASYNC.bit);
const THREAD_ID = 1n << BigInt(FEATURES.THREAD_ID.bit);
const WP_UNPOPULATED = 1n << BigInt(FEATURES.WP_UNPOPULATED.bit);

let cachedAvailable: bigint | undefined;

/** PAGEFAULT_FLAG_WP and the features built on it, which stand or fall with it. */
export const WP_FEATURES: readonly FeatureName[] = ['PAGEFAULT_FLAG_WP', 'WP_HUGETLBFS_SHMEM', 'WP_UNPOPULATED', 'WP_ASYNC'];
const WP_FAMILY = WP_FEATURES.reduce((bits, n) => bits | (1n << BigInt(FEATURES[n].bit)), 0n);
const WP_BROKEN =
  'the kernel offers it, but a write to a write-protected page raises no fault here (this kernel has no uffd-wp support on this architecture)';
let wpDelivered: boolean | undefined;

/**
 * Why the WP features that UFFDIO_API `offered` cannot be used here, or undefined if they can
 * (or are not offered). Older kernels offered PAGEFAULT_FLAG_WP on every architecture, and on
 * arm64 a write-protected page was then written without a fault: a WP handler or a dirty
 * tracker would miss every write. So one write to a protected page is tried, once per process.
 */
export function wpUnusable(offered: bigint): string | undefined {
  if ((offered & WP_FAMILY) === 0n) return undefined;
  wpDelivered ??= native.wpFaultsDelivered();
  return wpDelivered ? undefined : WP_BROKEN;
}

/**
 * The features this kernel offers and that work here, from a UFFDIO_API handshake on a throwaway
 * descriptor (the kernel allows one handshake per descriptor, so the real one must not be spent
 * on asking).
 */
export function availableFeatureBits(): bigint {
  if (cachedAvailable === undefined) {
    const fd = openDescriptor('auto', 'prefer').fd;
    try {
      const offered = native.apiHandshake(fd, 0n).features;
      cachedAvailable = wpUnusable(offered) ? offered & ~WP_FAMILY : offered;
    } finally {
      native.closeFd(fd);
    }
  }
  return cachedAvailable;
}

/**
 * Whether a descriptor is UFFD_USER_MODE_ONLY: 'require' (the caller said `userModeOnly: true`),
 * 'never', or 'prefer' (the default: where the kernel knows the flag, Linux >= 5.11).
 */
export type UserMode = 'require' | 'never' | 'prefer';

/** A new descriptor, how it was made, and whether it is user-mode-only. */
export interface Opened {
  fd: number;
  via: OpenVia;
  userModeOnly: boolean;
}

/**
 * One way of opening. Before Linux 5.11 the syscall knows only O_CLOEXEC and O_NONBLOCK (which
 * every call passes), so EINVAL for the USER_MODE_ONLY flag means the kernel lacks it; such a
 * kernel has no /dev/userfaultfd (6.1) either, so the device never needs this fallback.
 */
function openOne(via: OpenVia, mode: UserMode): Opened {
  const how = via === 'syscall' ? 0 : 1;
  if (mode === 'never') return { fd: native.openUffd(how, false), via, userModeOnly: false };
  try {
    return { fd: native.openUffd(how, true), via, userModeOnly: true };
  } catch (err) {
    if (via !== 'syscall' || (err as { code?: unknown }).code !== 'EINVAL') throw err;
    if (mode === 'require') {
      throw new UnsupportedError('UFFD_USER_MODE_ONLY', '5.11', 'open with userModeOnly: false (it then needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd = 1)');
    }
    return { fd: native.openUffd(how, false), via, userModeOnly: false };
  }
}

/** Opens a descriptor, trying the syscall then the device for 'auto'. */
export function openDescriptor(via: OpenVia | 'auto', mode: UserMode): Opened {
  if (via !== 'auto') return openOne(via, mode);
  try {
    return openOne('syscall', mode);
  } catch (syscallError) {
    try {
      return openOne('device', mode);
    } catch {
      // The syscall's error is the one that explains what to change.
      throw syscallError;
    }
  }
}

/** The `userModeOnly` option as a {@link UserMode}: left out, the kernel's best. */
function userModeOf(opts: OpenOptions): UserMode {
  const v = optBoolOrUnset(opts, 'userModeOnly');
  return v === undefined ? 'prefer' : v ? 'require' : 'never';
}

/** The feature named for a bit, or a readable stand-in for bits this library does not name. */
function featureOfBit(bit: bigint): { name: string; since: string } {
  const name = FEATURE_NAMES.find((n) => 1n << BigInt(FEATURES[n].bit) === bit);
  return name ? { name, since: FEATURES[name].since } : { name: `feature bit 0x${bit.toString(16)}`, since: 'unknown' };
}

/**
 * A userfaultfd: a file descriptor through which this process is told of page faults in the
 * ranges it registered, and resolves them (copy, zeropage, continue, poison, move, writeProtect).
 *
 * Touching a registered, unresolved page from the JS thread puts that thread to sleep until the
 * fault is resolved, so faults must be raised by other threads (a Worker, native threads, libuv's
 * pool) or served by a native policy.
 */
export class Userfaultfd extends EventEmitter<UffdEvents> implements Disposable {
  // The addon's handle of the descriptor (native/uffd.cc): every ioctl goes through it.
  readonly #native: NativeUffd;
  readonly #negotiated: Negotiated;
  #readerStarted = false;
  #refed = true;
  #policies = 0;
  readonly #queues = new Set<EventQueue<UffdEvent<Userfaultfd>>>();
  /** How the descriptor was created. */
  readonly openedVia: OpenVia | 'fd';
  /** Whether only user-mode faults are delivered. */
  readonly userModeOnly: boolean;
  /** The negotiated features by name. */
  readonly features: FeatureSet;

  private constructor(nativeUffd: NativeUffd, negotiated: Negotiated, via: OpenVia | 'fd', userModeOnly: boolean) {
    super();
    this.#native = nativeUffd;
    this.#negotiated = negotiated;
    this.openedVia = via;
    this.userModeOnly = userModeOnly;
    this.features = namesOf(FEATURES, negotiated.featureBits);
    // The event thread starts with the first listener for a fault event.
    // While nothing consumes events (no listener, iterator or policy) the thread does not keep
    // the process alive, whatever ref() said, and a dropped object can be collected.
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (!isEventType(event)) return;
      this.#startEngine();
      this.#syncRef(1);
    });
    (this as EventEmitter).on('removeListener', (event: string | symbol) => {
      if (isEventType(event)) this.#syncRef();
    });
  }

  /** Open a userfaultfd and negotiate `features` with one UFFDIO_API handshake. */
  static open(options?: OpenOptions): Userfaultfd {
    const opts = toOptions(options);
    const via = oneOf(opts.via ?? 'auto', ['auto', 'syscall', 'device'] as const, 'option via');
    const userMode = userModeOf(opts);
    if (opts.features !== undefined && !Array.isArray(opts.features)) throw invalidType('option features must be an array of feature names');
    const names = toFeatureNames(opts.features, 'option features');
    const raw = opts.rawFeatures ?? 0n;
    if (typeof raw !== 'bigint' || raw < 0n) throw invalidType('option rawFeatures must be a non-negative bigint');
    let wanted = bitsOf(FEATURES, names) | raw;
    if (optBool(opts, 'deadlockGuard', true) && availableFeatureBits() & THREAD_ID) wanted |= THREAD_ID;

    // Refuse a feature the kernel lacks before any descriptor is made.
    const missing = wanted & ~availableFeatureBits();
    if (missing !== 0n) {
      const lowest = missing & -missing;
      const { name, since } = featureOfBit(lowest);
      throw new UnsupportedError(name, since, lowest & WP_FAMILY && wpDelivered === false ? WP_BROKEN : undefined);
    }
    const opened = openDescriptor(via, userMode);
    try {
      // The kernel answers with every feature it has; what this descriptor has enabled is what
      // was asked for (WP_ASYNC brings WP_UNPOPULATED with it, as the kernel does).
      const api = native.apiHandshake(opened.fd, wanted);
      const enabled = wanted & WP_ASYNC ? wanted | WP_UNPOPULATED : wanted;
      const nativeUffd = new native.UffdHandle(opened.fd, true);
      return new Userfaultfd(nativeUffd, { featureBits: enabled, ioctlBits: api.ioctls }, opened.via, opened.userModeOnly);
    } catch (err) {
      native.closeFd(opened.fd);
      throw err;
    }
  }

  /**
   * Wrap a descriptor that already had its UFFDIO_API handshake, such as `uffd.fd` passed to a
   * Worker (threads share the descriptor table). By default the descriptor is duplicated, so this
   * object owns its own and close() closes only that: the number can never go stale under it.
   * `{ dup: false }` takes ownership of `fd` itself (a FORK event's descriptor).
   * `features` should repeat what the opener negotiated (`uffd.features`), so that events decode
   * the thread id. The descriptor is made O_NONBLOCK (for the whole open file).
   * @throws TypeError with code ERR_UFFD_NOT_USERFAULTFD if `fd` is not a userfaultfd
   * (`/proc/self/fd/N` must read `anon_inode:[userfaultfd]`); with `dup: false` it stays open.
   */
  static fromFd(fd: number, options?: { features?: readonly FeatureName[] | FeatureSet; dup?: boolean; userModeOnly?: boolean }): Userfaultfd {
    const opts = toOptions(options);
    toFd(fd);
    // Every option is checked before the descriptor is duplicated or adopted.
    const names = toFeatureNames(opts.features, 'option features');
    const userModeOnly = optBool(opts, 'userModeOnly', true);
    const dup = optBool(opts, 'dup', true);
    checkUserfaultfd(fd);
    const own = dup ? native.dupFd(fd) : fd;
    let nativeUffd: NativeUffd;
    try {
      // Checks again, and makes the descriptor O_NONBLOCK (the event thread needs that).
      nativeUffd = new native.UffdHandle(own, true);
    } catch (err) {
      if (dup) native.closeFd(own);
      throw err;
    }
    // Every handshake answers API | REGISTER | UNREGISTER.
    const ioctlBits = (1n << BigInt(IOCTLS.API)) | (1n << BigInt(IOCTLS.REGISTER)) | (1n << BigInt(IOCTLS.UNREGISTER));
    return new Userfaultfd(nativeUffd, { featureBits: bitsOf(FEATURES, names), ioctlBits }, 'fd', userModeOnly);
  }

  /** The descriptor number; -1 once closed. */
  get fd(): number {
    return this.#native.fd;
  }

  /** Whether close() has been called. */
  get closed(): boolean {
    return this.#native.fd < 0;
  }

  /** The UFFD_FEATURE_* bits enabled on this descriptor, including any this library has no name for. */
  get featureBits(): bigint {
    return this.#negotiated.featureBits;
  }

  /** The ioctls the descriptor accepts (UFFDIO_API's answer: API, REGISTER, UNREGISTER). */
  get ioctls(): IoctlName[] {
    return ioctlNames(this.#negotiated.ioctlBits);
  }

  /**
   * Register a range for MISSING, WP and/or MINOR faults. Returns the ioctls the kernel allows on
   * it (hugetlbfs ranges, for example, offer neither ZEROPAGE nor MOVE).
   */
  register(range: Range, options?: RegisterOptions): IoctlName[] {
    const opts = toOptions(options);
    const wp = optBool(opts, 'wp', false);
    const minor = optBool(opts, 'minor', false);
    const missing = optBool(opts, 'missing', !wp && !minor);
    const mode = (missing ? REGISTER_MODE.MISSING : 0n) | (wp ? REGISTER_MODE.WP : 0n) | (minor ? REGISTER_MODE.MINOR : 0n);
    return this.registerMode(range, mode);
  }

  /** register() with raw UFFDIO_REGISTER_MODE_* bits, mode 0 included (which the kernel refuses). */
  registerMode(range: Range, mode: bigint): IoctlName[] {
    const r = toRange(range, native.pageSize(), 'register');
    if (typeof mode !== 'bigint') throw invalidType('mode must be a bigint');
    // The kernel would accept it, and then no write would ever fault (see wpUnusable).
    if (mode & REGISTER_MODE.WP && !this.closed && (availableFeatureBits() & WP_FAMILY) === 0n && wpDelivered === false) {
      throw new UnsupportedError('WP registration', FEATURES.PAGEFAULT_FLAG_WP.since, WP_BROKEN);
    }
    return ioctlNames(this.#native.register(r.address, r.length, mode));
  }

  /** Unregister a range. Threads waiting on MISSING faults there wake and fault normally. */
  unregister(range: Range): void {
    const r = toRange(range, native.pageSize(), 'unregister');
    this.#native.unregister(r.address, r.length);
  }

  /** Wake the threads waiting on faults in a range (after a DONTWAKE resolution). */
  wake(range: Range): void {
    const r = toRange(range, native.pageSize(), 'wake');
    this.#native.wake(r.address, r.length);
  }

  /**
   * UFFDIO_COPY: fill unmapped pages at `dst` with bytes from `src`, a buffer (kept alive for the
   * call) or an address. `length` defaults to the buffer's size. Returns the bytes copied.
   * Not a SharedArrayBuffer or a view over one (a TypeError): Node-API cannot reach its memory.
   * @throws UffdError with `bytes` = progress; EEXIST if `dst` is already mapped.
   */
  copy(dst: Address, src: Address | ArrayBufferView | ArrayBuffer, length?: number, options?: CopyOptions): number {
    const opts = toOptions(options);
    const d = toAddress(dst, 'dst');
    let source: bigint | ArrayBufferView | ArrayBuffer;
    let len: number;
    const buffer = toBufferSource(src, 'src');
    if (buffer) {
      len = toLength(length ?? buffer.byteLength, 'length');
      if (len > buffer.byteLength) throw outOfRange(`copy: source holds ${buffer.byteLength} bytes, fewer than ${len}`);
      source = buffer;
    } else {
      source = toAddress(src, 'src');
      len = toLength(length, 'length');
    }
    checkAligned(d, len, native.pageSize(), 'copy');
    const mode = (optBool(opts, 'wake', true) ? 0n : MODE.COPY_DONTWAKE) | (optBool(opts, 'wp', false) ? MODE.COPY_WP : 0n);
    return this.#native.copy(d, source, len, mode);
  }

  /** UFFDIO_ZEROPAGE: map zero pages at unmapped `dst`. Not offered on hugetlbfs (EINVAL). */
  zeropage(dst: Address, length: number, options?: WakeOption): number {
    const r = this.#range(dst, length, 'zeropage');
    const mode = optBool(toOptions(options), 'wake', true) ? 0n : MODE.ZEROPAGE_DONTWAKE;
    return this.#native.zeropage(r.address, r.length, mode);
  }

  /** UFFDIO_CONTINUE: map pages already in the page cache (resolves MINOR faults). */
  continue(dst: Address, length: number, options?: CopyOptions): number {
    const opts = toOptions(options);
    const r = this.#range(dst, length, 'continue');
    const mode = (optBool(opts, 'wake', true) ? 0n : MODE.CONTINUE_DONTWAKE) | (optBool(opts, 'wp', false) ? MODE.CONTINUE_WP : 0n);
    this.#need('CONTINUE');
    return this.#native.continue(r.address, r.length, mode);
  }

  /** UFFDIO_POISON (Linux >= 6.6): mark pages so that any later access raises SIGBUS. */
  poison(dst: Address, length: number, options?: WakeOption): number {
    const r = this.#range(dst, length, 'poison');
    const mode = optBool(toOptions(options), 'wake', true) ? 0n : MODE.POISON_DONTWAKE;
    this.#need('POISON');
    return this.#native.poison(r.address, r.length, mode);
  }

  /**
   * UFFDIO_WRITEPROTECT: protect (`on`) or unprotect a range registered for WP. Unprotecting
   * wakes the waiting writers unless `wake: false`.
   */
  writeProtect(range: Range, on: boolean, options?: WakeOption): void {
    if (typeof on !== 'boolean') throw invalidType('on must be a boolean');
    const r = toRange(range, native.pageSize(), 'writeProtect');
    const wake = optBool(toOptions(options), 'wake', true);
    const mode = (on ? MODE.WRITEPROTECT_WP : 0n) | (wake ? 0n : MODE.WRITEPROTECT_DONTWAKE);
    this.#need('WRITEPROTECT');
    this.#native.writeProtect(r.address, r.length, mode);
  }

  /**
   * UFFDIO_MOVE (Linux >= 6.8): move pages from `src` to unmapped `dst` without copying. Both
   * sides private anonymous memory of this process; `dst` registered with this uffd.
   */
  move(dst: Address, src: Address, length: number, options?: MoveOptions): number {
    const opts = toOptions(options);
    const d = this.#range(dst, length, 'move');
    const s = toAddress(src, 'src');
    checkAligned(s, d.length, native.pageSize(), 'move');
    const mode = (optBool(opts, 'wake', true) ? 0n : MODE.MOVE_DONTWAKE) | (optBool(opts, 'allowSrcHoles', false) ? MODE.MOVE_ALLOW_SRC_HOLES : 0n);
    this.#need('MOVE');
    return this.#native.move(d.address, s, d.length, mode);
  }

  /**
   * Install a native policy: faults in `range` are resolved inside the event thread, with no JS
   * hop (starting the thread if needed). Faults outside every policy still go to JS.
   */
  handle(range: Range, policy: Policy, options?: PolicyOptions): PolicyHandle {
    const r = toRange(range, native.pageSize(), 'handle');
    const opts = toOptions(options);
    const unit = toLength(opts.unit ?? native.pageSize(), 'option unit');
    if (unit > r.length) throw outOfRange(`option unit (${unit}) must not be larger than the range (${r.length} bytes)`);
    const retain = opts.retain;
    if (retain !== undefined && (typeof retain !== 'object' || retain === null)) throw invalidType('option retain must be an object');
    const spec = nativePolicy(policy, r.length);
    this.#startEngine();
    // A source inside a Mapping pins it: unmap() then leaves the memory mapped until the policy
    // is removed, as it does for testing jobs, so faults never get a later mapping's bytes.
    // A move table pins the Mapping it is told to retain (the compactor's from-space), if every
    // address in the table lies in it.
    const pin =
      spec.kind === 'moveTable' ? nativeMappingOf(retain) : spec.kind === 'copyBuffer' ? mappingOfBuffer(ArrayBuffer.isView(spec.buffer) ? spec.buffer.buffer : spec.buffer) : undefined;
    const id = this.#native.addPolicy({ ...spec, address: r.address, length: r.length, unit, retain: retain as object | undefined, ...(pin ? { pin } : {}) });
    this.#policies++;
    this.#syncRef();
    return new PolicyHandle(this.#native, id, r.address, r.length, () => {
      this.#policies--;
      this.#syncRef();
    });
  }

  /**
   * The events as an async iterator: `for await (const ev of uffd.events()) { ... }`. The queue
   * is bounded; when full, the event thread holds further events back (their faulting threads
   * wait, nothing is dropped) until the consumer catches up. Native policies and the deadlock
   * guard keep working meanwhile.
   */
  events(options?: EventsOptions): AsyncIterableIterator<UffdEvent<Userfaultfd>> {
    const opts = toOptions(options);
    const hwm = toLength(opts.highWaterMark ?? 1024, 'option highWaterMark');
    const signal = toSignal(opts.signal);
    const queue: EventQueue<UffdEvent<Userfaultfd>> = new EventQueue(
      hwm,
      (paused) => {
        if (!this.closed) this.#native.pauseDelivery(paused);
      },
      () => {
        this.#queues.delete(queue);
        this.#syncRef();
      },
    );
    if (signal) {
      if (signal.aborted) queue.end();
      else signal.addEventListener('abort', () => queue.end(), { once: true });
    }
    this.#queues.add(queue);
    this.#startEngine();
    this.#syncRef();
    return queue;
  }

  /**
   * Wait for events and return them (blocking the calling thread up to `timeoutMs`). For a Worker
   * that owns the fault loop; never on the main thread while it may touch registered memory, and
   * not together with listeners or events() on the same object (their thread reads instead).
   * With EVENT_FORK, prefer the event thread: see {@link serveFaults} for why.
   */
  readEvents(options?: ReadEventsOptions): UffdEvent<Userfaultfd>[] {
    const opts = toOptions(options);
    const timeout = opts.timeoutMs ?? 1000;
    if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < -1) throw invalidType('option timeoutMs must be an integer >= -1');
    const max = toLength(opts.max ?? 64, 'option max');
    const raw = this.#native.readRaw(timeout, max);
    return raw ? this.#decode(raw) : [];
  }

  /** Keep the process alive while the event thread runs (the default). */
  ref(): this {
    this.#refed = true;
    this.#syncRef();
    return this;
  }

  /** Let the process exit even though the event thread is running (like a timer's unref()). */
  unref(): this {
    this.#refed = false;
    this.#syncRef();
    return this;
  }

  // The event thread holds the process open only while asked to (ref) and while something
  // consumes what it reads. `adding`: a listener about to be added ('newListener' runs first).
  #syncRef(adding = 0): void {
    if (!this.#readerStarted || this.closed) return;
    const listeners = EVENT_TYPES.reduce((n, type) => n + this.listenerCount(type), adding);
    if (this.#refed && listeners + this.#queues.size + this.#policies > 0) this.#native.refEngine();
    else this.#native.unrefEngine();
  }

  /**
   * Close: stop and join the event thread, end the event iterators, close the descriptor. The
   * kernel wakes every thread still waiting on a fault of this uffd once the last reference is
   * gone; they retry and fault normally. A second close does nothing.
   */
  close(): void {
    const undelivered = this.#native.close();
    for (const report of undelivered ?? []) this.#afterClose(new FaultError(report));
    for (const q of this.#queues) q.end();
  }

  // Nothing is emitted once close() has begun, but an error the event thread reported is never
  // dropped: a report that arrives then (a deadlock-guard notice pending at close, say) becomes a
  // process warning, which Node prints unless the program listens for 'warning'.
  #afterClose(err: FaultError): void {
    process.emitWarning(err);
  }

  #startEngine(): void {
    if (this.#readerStarted) return;
    this.#native.startEngine(this.#onBatch, this.features.THREAD_ID ? native.gettid() : 0);
    this.#readerStarted = true;
  }

  #decode(raw: ArrayBuffer): UffdEvent<Userfaultfd>[] {
    // A FORK event's uffd serves a child process: it should not keep this one alive. Its feature
    // list is built only for a FORK (rare), not for every batch: this runs once per fault batch.
    return decodeEvents(raw, this.features.THREAD_ID, (fd) =>
      Userfaultfd.fromFd(fd, { features: FEATURE_NAMES.filter((n) => this.features[n]), dup: false, userModeOnly: this.userModeOnly }).unref(),
    );
  }

  // One call per batch from the event thread. A listener that throws becomes an 'error' event;
  // without an 'error' listener that is an uncaught exception, as for any EventEmitter.
  readonly #onBatch = (raw: ArrayBuffer, reports?: NativeReport[]): void => {
    // A batch the event thread queued just before close() arrives after it. Its faults were
    // woken by the close (they fault normally now), and a handler could only fail on the closed
    // descriptor: drop it, closing the descriptors of FORK events nobody will receive.
    if (this.closed) {
      decodeEvents(raw, false, (fd) => native.closeFd(fd));
      for (const report of reports ?? []) this.#afterClose(new FaultError(report));
      return;
    }
    const events = this.#decode(raw);
    for (let i = 0; i < events.length; i++) {
      // A listener may close this uffd: nothing is emitted after that, and the FORK descriptors
      // of the events nobody will see are closed.
      if (this.closed) {
        for (const ev of events.slice(i)) if (ev.type === 'fork') ev.uffd.close();
        break;
      }
      const ev = events[i];
      for (const q of this.#queues) q.push(ev);
      try {
        this.emit(ev.type, ev as never);
      } catch (err) {
        this.#fail(err);
      }
    }
    for (const report of reports ?? []) {
      if (this.closed) this.#afterClose(new FaultError(report));
      else this.#fail(new FaultError(report));
    }
  };

  #fail(err: unknown): void {
    for (const q of this.#queues) q.fail(err);
    if (this.listenerCount('error') > 0 || this.#queues.size === 0) this.emit('error', err as Error);
  }

  /** Same as {@link close}, for `using` declarations. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** The native handle; for this package's modules and tests (see nativeUffdOf). @internal */
  get native(): NativeUffd {
    return this.#native;
  }

  #range(address: Address, length: number, what: string): { address: bigint; length: number } {
    const a = toAddress(address, 'dst');
    const len = toLength(length, 'length');
    checkAligned(a, len, native.pageSize(), what);
    return { address: a, length: len };
  }

  // An ioctl newer than the oldest kernels: refuse it by name and version if this kernel lacks it.
  // Checked after the arguments, and only on an open descriptor: bad input is a TypeError or
  // RangeError, and a closed uffd is ERR_UFFD_CLOSED, on every kernel alike.
  #need(ioctl: IoctlName): void {
    if (this.closed) return; // the native call throws ERR_UFFD_CLOSED
    const feature = IOCTL_FEATURE[ioctl];
    if (feature === undefined || (availableFeatureBits() & (1n << BigInt(FEATURES[feature].bit))) !== 0n) return;
    const bit = 1n << BigInt(FEATURES[feature].bit);
    throw new UnsupportedError(`UFFDIO_${ioctl}`, FEATURES[feature].since, bit & WP_FAMILY && wpDelivered === false ? WP_BROKEN : `the kernel does not report ${feature}`);
  }
}

/**
 * The native handle of `uffd`, which must be a Userfaultfd (else a TypeError): the one way for the
 * other modules of this package to reach it. The addon checks that it is open (ERR_UFFD_CLOSED).
 * @internal
 */
export function nativeUffdOf(uffd: unknown): NativeUffd {
  if (!(uffd instanceof Userfaultfd)) throw invalidType('uffd must be a Userfaultfd');
  return uffd.native;
}

function isEventType(event: string | symbol): boolean {
  return (EVENT_TYPES as readonly (string | symbol)[]).includes(event);
}

export { UffdError };
