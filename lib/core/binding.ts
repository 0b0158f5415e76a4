/**
 * The one place that loads the native addon, with a type for every native export. The rest of
 * the library imports `native` from here and never touches the .node file itself.
 * @module
 * @internal
 */
import { constants as bufferConstants } from 'node:buffer';
import * as path from 'node:path';
import { ERR_UFFD_ADDON_LOAD, UffdError, type SysErrorDetails } from './errors';
import { layoutMismatches, type NativeLayout, type PolicyKindName } from './msg-layout';

/** An address as the native layer takes it. */
export type RawAddress = bigint | number;

/** The native Userfaultfd handle (native/uffd.cc). Modes are raw uAPI bits. */
export interface NativeUffd {
  readonly fd: number;
  /** The fault reports JS had not yet received, if any. */
  close(): NativeReport[] | undefined;
  register(address: RawAddress, length: number, mode: bigint): bigint;
  unregister(address: RawAddress, length: number): void;
  wake(address: RawAddress, length: number): void;
  copy(dst: RawAddress, src: RawAddress | ArrayBufferView | ArrayBuffer, length: number, mode: bigint): number;
  zeropage(address: RawAddress, length: number, mode: bigint): number;
  writeProtect(address: RawAddress, length: number, mode: bigint): void;
  continue(address: RawAddress, length: number, mode: bigint): number;
  poison(address: RawAddress, length: number, mode: bigint): number;
  move(dst: RawAddress, src: RawAddress, length: number, mode: bigint): number;
  /** Starts the event thread; `guardTid` is the JS thread's tid for the deadlock guard, or 0. */
  startEngine(callback: (raw: ArrayBuffer, reports?: NativeReport[]) => void, guardTid: number): void;
  stopEngine(): void;
  /** While paused only reports reach the callback; events wait, in order. */
  pauseDelivery(paused: boolean): void;
  refEngine(): void;
  unrefEngine(): void;
  /** Returns the policy's id. */
  addPolicy(spec: NativePolicySpec): number;
  removePolicy(id: number): boolean;
  policyStats(id: number): PolicyStats | undefined;
  /** Blocking: up to `max` raw messages, or null after `timeoutMs` (-1: wait forever). */
  readRaw(timeoutMs: number, max: number): ArrayBuffer | null;
}

/**
 * One native policy as addPolicy takes it (native/policy_parse.cc): the range, the unit, and one
 * descriptor per kind. `retain` is kept referenced while the policy exists; `pin` is the Mapping
 * a copy source or every move-table address lies in, which then stays mapped until removal.
 */
export type NativePolicySpec = { address: bigint; length: number; unit: number; retain?: object } & (
  | { kind: Extract<PolicyKindName, 'zero' | 'continue' | 'unprotect'> }
  | { kind: 'copyBuffer'; buffer: ArrayBufferView | ArrayBuffer; pin?: NativeMapping }
  | { kind: 'copyFd'; fd: number; offset: number }
  | { kind: 'moveTable'; table: BigUint64Array; claims?: Uint8Array; pin?: NativeMapping }
);

/** A policy's descriptor without its range, unit and retained object: what a `Policy` maps to. */
export type NativePolicyKindSpec = NativePolicySpec extends infer S ? (S extends unknown ? Omit<S, 'address' | 'length' | 'unit' | 'retain'> : never) : never;

/** Counters of one native policy. */
export interface PolicyStats {
  /** Faults resolved. */
  faults: number;
  /** Bytes mapped by the resolutions. */
  bytes: number;
  /** Faults found already resolved (EEXIST): the waiters were woken. */
  eexist: number;
  /** Resolutions retried after EAGAIN (an address-space change was being reported). */
  retries: number;
  /** Resolutions that failed (each also an 'error' event). */
  errors: number;
}

/** What the event thread reports about a fault it could not resolve, or resolved as a guard. */
export interface NativeReport {
  address: bigint;
  flags: number;
  tid: number;
  errno: number;
  ioctl: string;
  policy: number;
  guard: boolean;
}

// Public (the result of testing.touch), but declared here, beside the native call that makes it:
// the binding is the lowest layer and imports nothing above it.
/** What one touching thread did. */
export interface TouchThreadResult {
  /** The thread's kernel thread id (what a THREAD_ID page fault reports as its thread). */
  tid: number;
  /** Touches made. */
  touched: number;
  /** Sum of the words read (read mode). */
  sum: bigint;
  latenciesNs?: Float64Array;
}

/** The native mapping handle (native/mapping.cc). */
export interface NativeMapping {
  readonly address: bigint;
  readonly length: number;
  readonly mapped: boolean;
  buffer(): ArrayBuffer;
  /** A new ArrayBuffer over `length` bytes from `offset`, detached by unmap and mremap. */
  view(offset: number, length: number): ArrayBuffer;
  unmap(): void;
  madvise(offset: number, length: number, advice: number): void;
  mprotect(offset: number, length: number, prot: number): void;
  mremap(newLength: number, mayMove: boolean): bigint;
}

export interface Binding {
  setErrorFactory(factory: (details: SysErrorDetails) => Error): void;
  /** The uffd_msg layout, event codes and policy kinds, as the addon was compiled. */
  layout: NativeLayout;
  /** The largest ArrayBuffer this Node can make (buffer.constants.MAX_LENGTH). */
  setBufferLimit(limit: number): void;
  UffdHandle: new (fd: number, ownsFd: boolean) => NativeUffd;
  MappingHandle: new (length: number, prot: number, flags: number, fd: number, offset: number) => NativeMapping;
  /** via: 0 = userfaultfd(2), 1 = /dev/userfaultfd. */
  openUffd(via: 0 | 1, userModeOnly: boolean): number;
  apiHandshake(fd: number, features: bigint): { features: bigint; ioctls: bigint };
  /** The kernel's raw answer to UFFDIO_API: 0 or a positive errno. */
  rawApi(fd: number, api: bigint, features: bigint): number;
  pagemapScan(fd: number, args: BigUint64Array, vec: BigUint64Array | null): number;
  pageSize(): number;
  /** Whether a write to a write-protected page raises a WP fault here (checked on a throwaway uffd). */
  wpFaultsDelivered(): boolean;
  memfdCreate(name: string, flags: number): number;
  dupFd(fd: number): number;
  /** A close-on-exec duplicate recorded in the process-wide table of shared descriptors. */
  shareFd(fd: number): { fd: number; token: number };
  /** Takes a shareFd descriptor out of the table (closing it if `close`), or throws ERR_UFFD_NOT_SHARED. */
  takeSharedFd(fd: number, token: number, close: boolean): void;
  closeFd(fd: number): void;
  gettid(): number;
  /**
   * UFFDIO_MOVE over `count` [dst, src, length] triples of `ops` (native/move.cc). `state` is in
   * [op index, bytes of it done] and out [op index, bytes done, errno, ioctls issued].
   */
  moveBatch(uffd: NativeUffd, ops: BigUint64Array, count: number, mode: bigint, state: Float64Array): void;
  /** One UFFDIO_MOVE, `done` bytes into it, to the end or to a stop; `state` out as for moveBatch. */
  moveOne(uffd: NativeUffd, dst: RawAddress, src: RawAddress, length: number, mode: bigint, done: number, state: Float64Array): void;
  /** madvise(2) MADV_DONTNEED or MADV_REMOVE on any page-aligned range. */
  madviseRange(address: RawAddress, length: number, advice: number): void;
  testing: {
    // mapping: held mapped by the native thread until it is done (GC, Worker termination).
    touch(address: bigint, length: number, options: object, mapping?: NativeMapping): Promise<TouchThreadResult[]>;
    forkTouch(address: bigint, length: number, options: object, mapping?: NativeMapping): Promise<{ status: number | null; signal: number | null }>;
    madvise(address: bigint, length: number, advice: number, mapping?: NativeMapping): Promise<void>;
  };
  /**
   * Natives for the test suite (test/native/hooks.cc): present in a build from a checkout of the
   * repository, absent from the prebuilds and from a build of the published package.
   */
  testHooks?: {
    /** fork(); the child sleeps `ms` then exits, holding our private pages copy-on-write. */
    forkHold(ms: number): number;
    /** SIGKILL and waitpid a forkHold child; returns the wait status. */
    reapChild(pid: number): number;
    /** Whether `fd` is O_NONBLOCK, after setting or clearing it if `on` is given. */
    nonblocking(fd: number, on?: boolean): boolean;
    /** Whether a message waits to be read, within `timeoutMs`, without reading it. */
    waitReadable(uffd: NativeUffd, timeoutMs: number): boolean;
  };
}

/**
 * node-gyp-build's own error is a multi-line "No native build was found for platform=... abi=..."
 * with a stack into its internals: it names neither the package nor a way out. A user who
 * installed with scripts skipped, or cloned without building, gets one coded error saying what
 * to run instead; node-gyp-build's error stays as `cause`.
 */
function addonLoadError(root: string, cause: unknown): Error {
  const why = cause instanceof Error ? cause.message.split('\n')[0].trim() : String(cause);
  const message =
    `userfaultfd: the native addon could not be loaded from ${root} (${why}). ` +
    'Build it with `npm rebuild userfaultfd` in your project (node-gyp: python3, make and a C++17 compiler), ' +
    'or `npm run build` in a clone of the repository; a release tarball ships prebuilds for linux-x64 and linux-arm64 ' +
    '(`npm run prebuilds` makes them)';
  return Object.assign(new Error(message, { cause }), { code: ERR_UFFD_ADDON_LOAD });
}

// node-gyp-build finds build/Release (a source build) or prebuilds/<platform>-<arch> from the
// package root; this file is compiled to dist/lib/core/binding.js, three levels below it.
function loadAddon(): Binding {
  const root = path.join(__dirname, '..', '..', '..');
  let addon: Binding;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as (dir: string) => unknown;
    addon = load(root) as Binding;
  } catch (err) {
    throw addonLoadError(root, err);
  }
  // An addon built from other headers than this layer's (a stale build, a foreign prebuild)
  // would have its events misread: refuse it at once.
  const mismatches = layoutMismatches(addon.layout);
  if (mismatches.length > 0) throw addonLoadError(root, new Error(`the addon's uffd_msg layout differs from this library's: ${mismatches.join('; ')}`));
  return addon;
}

export const native = loadAddon();

native.setErrorFactory((details) => new UffdError(details));
native.setBufferLimit(bufferConstants.MAX_LENGTH);
