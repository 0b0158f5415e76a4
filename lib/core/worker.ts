/**
 * The Worker pattern: a Worker owns the fault loop with blocking reads, so the main thread may
 * read and write registered memory directly (its faults are served by the Worker).
 * @module
 */
import { native } from './binding';
import type { UffdEvent } from './events';
import { invalidType } from './errors';
import { Userfaultfd } from './userfaultfd';
import { pageSize } from './sysinfo';
import { toFd, toFeatureNames, toOptions } from './validate';
import type { FeatureName } from './constants';

/** What a Worker needs to serve a Userfaultfd: structured-clonable, pass it in `workerData`. */
export interface SharedUffd {
  fd: number;
  /** Which duplicate this is: `fd` alone may name another file once the duplicate is gone. */
  token: number;
  features: FeatureName[];
  userModeOnly: boolean;
}

/**
 * Describe `uffd` for one Worker of this process (threads share the descriptor table). The
 * descriptor is duplicated now, so the owner may close `uffd` at any time without the number the
 * Worker receives going stale. The duplicate belongs to the recipient: pass the object to exactly
 * one Worker, which adopts it with {@link openShared}, or give it back with {@link closeShared}.
 *
 * The process keeps a table of these duplicates (one for all threads), and each is taken out of
 * it exactly once, by the first openShared or closeShared: a second one, or one given an object
 * that shareUffd did not make, throws `ERR_UFFD_NOT_SHARED` and touches no descriptor. (A bare
 * descriptor number cannot tell: once closed, it names whatever file the process opens next.)
 */
export function shareUffd(uffd: Userfaultfd): SharedUffd {
  if (!(uffd instanceof Userfaultfd)) throw invalidType(`uffd must be a Userfaultfd, got ${uffd === null ? 'null' : typeof uffd}`);
  if (uffd.closed) throw invalidType('cannot share a closed userfaultfd');
  const { fd, token } = native.shareFd(uffd.fd);
  return {
    fd,
    token,
    features: (Object.keys(uffd.features) as FeatureName[]).filter((n) => uffd.features[n]),
    userModeOnly: uffd.userModeOnly,
  };
}

/**
 * In the Worker: adopt the descriptor {@link shareUffd} duplicated, as a Userfaultfd of its own.
 * Close it when done. Once only: see {@link shareUffd}.
 * @throws Error with code ERR_UFFD_NOT_SHARED if the descriptor was already adopted or given back.
 */
export function openShared(shared: SharedUffd): Userfaultfd {
  checkShared(shared);
  // Bad options are refused while the descriptor is still the sharer's to give again.
  toFeatureNames(shared.features, 'option features');
  native.takeSharedFd(shared.fd, shared.token, false);
  try {
    return Userfaultfd.fromFd(shared.fd, { features: shared.features, userModeOnly: shared.userModeOnly, dup: false });
  } catch (err) {
    native.closeFd(shared.fd); // ours now, and nobody else can take it
    throw err;
  }
}

/**
 * Give back a {@link shareUffd} descriptor that no Worker adopted: it is closed. Once only.
 * @throws Error with code ERR_UFFD_NOT_SHARED if it was already adopted or given back (no
 * descriptor is closed then).
 */
export function closeShared(shared: SharedUffd): void {
  checkShared(shared);
  native.takeSharedFd(shared.fd, shared.token, true);
}

function checkShared(shared: unknown): asserts shared is SharedUffd {
  if (typeof shared !== 'object' || shared === null) {
    throw invalidType(`shared must be the object shareUffd() returned, got ${shared === null ? 'null' : typeof shared}`);
  }
  toFd((shared as { fd?: unknown }).fd, 'shared.fd');
  if (typeof (shared as { token?: unknown }).token !== 'number') throw invalidType('shared must be the object shareUffd() returned: it has no token');
}

/** Options of {@link serveFaults}. */
export interface ServeOptions {
  /** Stop once `stop[0]` is non-zero (an Int32Array over a SharedArrayBuffer the owner sets). */
  stop?: Int32Array;
  /** How long each blocking read may wait before the stop flag is looked at again (default 50). */
  timeoutMs?: number;
  /** Events per read (default 64). */
  max?: number;
}

/**
 * Serve events on this thread until `stop[0]` becomes non-zero: blocking reads of up to `max`
 * events, each handed to `handler` (which resolves the faults, e.g. with uffd.copy). Returns the
 * number of events served. Meant for a dedicated Worker; it never yields to the event loop.
 * A resolution that finds the page already there (EEXIST) is treated as done and woken.
 *
 * Not for a uffd with EVENT_FORK: a fork() anywhere in the process (child_process.spawn
 * included) then sleeps until its FORK event is read while holding glibc's malloc locks, and a
 * Worker allocates as it runs, so the two can wait for each other forever. The event thread
 * (listeners, events(), policies) reads without allocating; serve EVENT_FORK there.
 */
export function serveFaults(uffd: Userfaultfd, handler: (event: UffdEvent<Userfaultfd>) => void, options?: ServeOptions): number {
  const opts = toOptions(options);
  if (typeof handler !== 'function') throw invalidType('handler must be a function');
  const stop = opts.stop;
  if (stop !== undefined && !(stop instanceof Int32Array)) throw invalidType('option stop must be an Int32Array');
  const timeoutMs = opts.timeoutMs ?? 50;
  const max = opts.max ?? 64;
  let served = 0;
  while (stop === undefined || Atomics.load(stop, 0) === 0) {
    for (const event of uffd.readEvents({ timeoutMs, max })) {
      try {
        handler(event);
      } catch (err) {
        if ((err as { code?: string }).code !== 'EEXIST' || event.type !== 'pagefault') throw err;
        // Another thread resolved it first: make sure the waiter is woken.
        const page = BigInt(pageSize());
        uffd.wake({ address: event.address - (event.address % page), length: pageSize() });
      }
      served++;
    }
  }
  return served;
}
