/**
 * The child side of the property-based fuzz suite (test/fuzz.test.ts): fast-check properties
 * that call the public API with generated bad and edge input and accept only success or a thrown
 * Error with a string `code` (plus a numeric `errno` and a string `syscall` for system errors).
 *
 * Inputs are generated as printable specs (numbers, bigints, strings and `{ $: ... }` markers)
 * and only turned into live values (mappings, buffers, getters that throw or unmap) inside the
 * run, so that a counterexample prints as something that can be read and replayed. Before each
 * call the spec is written to a case file, so that a crash or a hang, which end the child before
 * fast-check can report, still names its input.
 *
 * What is never generated, and why (each would hang or corrupt this process by design, not by
 * a bug): touching registered memory from this thread, readEvents() with timeoutMs -1 or long
 * waits, serveFaults() without a set stop flag, forkHold() of more than a few milliseconds,
 * UFFDIO_MOVE or registration on memory this file did not map (Node's own heap), closing or
 * adopting descriptors this file did not open, MADV_POPULATE and WILLNEED on huge mappings.
 */
import * as fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as uffdLib from '../../lib/index';
import { Mapping, Userfaultfd } from '../../lib/index';

const PAGE = uffdLib.pageSize();
const PAGES = 8;
/**
 * Each mapping of the context has SLACK pages of its own on both sides of the PAGES pages that
 * addresses are generated around, so that a generated range that runs past "its" mapping still
 * lies in memory this file owns (see safeSpan for the ranges that could reach further).
 */
const SLACK = 16;
const TOTAL = PAGES + 2 * SLACK;
const SPAN_LIMIT = (PAGES + 4) * PAGE;

// ---------------------------------------------------------------------------------------------
// Outcomes

/** A call ended in a way the API promises never happens (an uncoded throw, a bad error shape). */
export class Uncoded extends Error {
  override name = 'Uncoded';
}

/** The error the generated getters throw: a caller's own exception, coded, must pass through. */
const GETTER_CODE = 'ERR_FUZZ_GETTER';

/** Asserts that `err` is an Error with a string code, and errno/syscall for a system error. */
export function checkError(what: string, err: unknown): void {
  if (!(err instanceof Error)) throw new Uncoded(`${what} threw a non-Error: ${String(err)}`);
  const e = err as Error & { code?: unknown; errno?: unknown; syscall?: unknown };
  if (typeof e.code !== 'string' || e.code === '') {
    throw new Uncoded(`${what} threw an uncoded ${e.name}: ${e.message}\n${(e.stack ?? '').split('\n').slice(1, 4).join('\n')}`);
  }
  if (/^E[A-Z0-9]+$/.test(e.code) && (typeof e.errno !== 'number' || typeof e.syscall !== 'string')) {
    throw new Uncoded(`${what} threw system error ${e.code} without errno/syscall: ${e.message}`);
  }
}

/** Calls `f` (awaiting a promise it returns); success or a coded error passes. */
export async function outcome(what: string, f: () => unknown): Promise<unknown> {
  try {
    const r = f();
    return r instanceof Promise ? await r : r;
  } catch (err) {
    checkError(what, err);
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Specs: printable descriptions of inputs

/** Values of every type, with the edges that break naive checks. */
export const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(undefined, null, true, false),
  fc.constantFrom(0, -0, 1, -1, 1.5, Number.NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 - 1, -(2 ** 53), 2 ** 64, 2 ** 36, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE),
  fc.double(),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
  fc.constantFrom(0n, -1n, 1n, 4096n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n, 1n << 64n, -(1n << 64n), BigInt(Number.MAX_SAFE_INTEGER) + 1n),
  fc.bigInt(),
  fc.constantFrom('', '0', '4096', '0x1000', 'rw', 'zero', 'read', 'MOVE', 'auto', '__proto__'),
  fc.string({ maxLength: 8 }),
  fc.constantFrom(
    { $: 'object' },
    { $: 'array' },
    { $: 'symbol' },
    { $: 'function' },
    { $: 'throwingProxy' },
    { $: 'buffer', kind: 'detached' },
    { $: 'buffer', kind: 'sab' },
    { $: 'buffer', kind: 'sabView' },
    { $: 'buffer', kind: 'detachedView' },
  ),
);

/** Which live mapping of the context an address or range refers to. */
const mappingName = fc.constantFrom('reg', 'plain', 'memfd', 'gone');

/** An address in or near one of the context's mappings (or past its ends, or unaligned). */
const nearAddress = fc.record({
  $: fc.constant('at'),
  m: mappingName,
  page: fc.integer({ min: -2, max: PAGES + 2 }),
  byte: fc.constantFrom(0, 0, 0, 1, 8, PAGE / 2),
});

/** Addresses no mapping can hold: zero, the first page, the kernel's half, the top. */
const wildAddress = fc.constantFrom(0n, BigInt(PAGE), 1n << 47n, 1n << 63n, (1n << 64n) - BigInt(PAGE), (1n << 64n) - 1n, 0, PAGE, 2 ** 52);

export const address = fc.oneof({ weight: 4, arbitrary: nearAddress }, { weight: 1, arbitrary: wildAddress }, { weight: 2, arbitrary: anyValue });

export const length = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: PAGES + 2 }).map((n) => n * PAGE) },
  { weight: 1, arbitrary: fc.constantFrom(1, PAGE - 1, PAGE + 1, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER) },
  { weight: 2, arbitrary: anyValue },
);

export const range = fc.oneof(
  { weight: 3, arbitrary: fc.record({ $: fc.constant('mapping'), m: mappingName }) },
  { weight: 4, arbitrary: fc.record({ $: fc.constant('range'), address, length }) },
  { weight: 1, arbitrary: fc.record({ $: fc.constant('getterRange'), m: mappingName, act: fc.constantFrom('throw', 'unmap') }) },
  { weight: 1, arbitrary: anyValue },
);

/** An options object: known keys with valid or wild values, extra keys, or getters that throw or unmap. */
export function options(keys: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<unknown> {
  const entries = Object.fromEntries(Object.entries(keys).map(([k, good]) => [k, fc.oneof({ weight: 3, arbitrary: good }, { weight: 1, arbitrary: anyValue })]));
  const names = Object.keys(keys);
  const record = fc.record({ ...entries, extra: fc.option(anyValue) }, { requiredKeys: [] });
  const alts: fc.Arbitrary<unknown>[] = [fc.constant(undefined), record, record, anyValue];
  if (names.length > 0) {
    alts.push(fc.record({ $: fc.constant('getterOptions'), key: fc.constantFrom(...names), act: fc.constantFrom('throw', 'unmap'), m: mappingName, rest: record }));
  }
  return fc.oneof(...alts);
}

export const bool = fc.boolean();

export const bufferSpec = fc.record({
  $: fc.constant('buffer'),
  kind: fc.constantFrom('Buffer', 'ArrayBuffer', 'Uint32Array', 'DataView', 'Float64Array', 'sab', 'sabView', 'detached', 'detachedView', 'offsetView', 'mappingBuffer', 'mappingBytes'),
  pages: fc.constantFrom(0, 1, 2, PAGES, PAGES + 1),
});

/** A descriptor: one this run owns (and may give away), someone's stdio, or no descriptor. */
export const fdSpec = fc.oneof(
  { weight: 3, arbitrary: fc.record({ $: fc.constant('fd'), which: fc.constantFrom('owned', 'ownedUffd', 'ownedMemfd', 'closed', 'uffd', 'memfd', 'devnull', 'dir') }) },
  { weight: 1, arbitrary: anyValue },
);

/**
 * For calls that close or adopt the descriptor they are given: descriptors this run owns, or
 * values that are not a descriptor number at all, never a small integer that may be stdout or
 * libuv's epoll descriptor (closing those would kill this child whatever the library does).
 */
export const ownedFdSpec = fc.oneof(
  { weight: 3, arbitrary: fc.record({ $: fc.constant('fd'), which: fc.constantFrom('owned', 'ownedUffd', 'ownedMemfd', 'closed') }) },
  { weight: 1, arbitrary: anyValue.filter((v) => !(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 1_000_000)) },
);

/**
 * Whether a call that registers, discards or moves memory stays in memory this file owns: an
 * address near a context mapping, or low in the user half, only with a length within the slack.
 * (A wild length from there would register, MADV_DONTNEED or move Node's own heap.)
 */
export function safeSpan(address: unknown, length: unknown): boolean {
  const a = address as { $?: string } | null;
  const near = (typeof a === 'object' && a !== null && a.$ === 'at') || (typeof address === 'number' && address < 2 ** 47) || (typeof address === 'bigint' && address < 1n << 47n);
  if (!near) return true;
  if (typeof length === 'number') return !(length > SPAN_LIMIT);
  if (typeof length === 'bigint') return length <= BigInt(SPAN_LIMIT);
  return true;
}

/** safeSpan for a range spec. */
export function safeRange(r: unknown): boolean {
  const spec = r as { $?: string; address?: unknown; length?: unknown } | null;
  return typeof spec !== 'object' || spec === null || spec.$ !== 'range' || safeSpan(spec.address, spec.length);
}

// ---------------------------------------------------------------------------------------------
// The live context of one run

/**
 * What one run works on: a uffd, a registered, an unregistered and a memfd mapping, one unmapped.
 * Each is made when a spec first refers to it (most runs need none of them).
 */
export class Ctx {
  #uffd: Userfaultfd | undefined;
  readonly #maps = new Map<string, Mapping>();
  /** Descriptors this run opened and still owns (closed at the end unless given away). */
  readonly owned = new Set<number>();
  readonly cleanups: (() => void)[] = [];

  get uffd(): Userfaultfd {
    this.#uffd ??= Userfaultfd.open();
    return this.#uffd;
  }

  /** The mapping named `reg` (registered with `uffd`), `plain` (populated), `memfd` or `gone` (unmapped). */
  map(name: string): Mapping {
    let m = this.#maps.get(name);
    if (m) return m;
    if (name === 'memfd') m = Mapping.memfd(TOTAL * PAGE);
    else m = Mapping.anonymous(TOTAL * PAGE, { populate: name === 'plain' });
    this.#maps.set(name, m);
    if (name === 'gone') m.unmap();
    // Only a window is registered: a resolving ioctl (one registered VMA at most) then never
    // reaches past the slack, and neither does a copy fallback's MADV_DONTNEED of its source.
    if (name === 'reg') this.uffd.register({ address: m.address + BigInt((SLACK - 2) * PAGE), length: (PAGES + 4) * PAGE });
    return m;
  }

  own(fd: number): number {
    this.owned.add(fd);
    return fd;
  }

  /** Forget a descriptor that a call took over (it closes it now). */
  gaveAway(fd: unknown): void {
    if (typeof fd === 'number') this.owned.delete(fd);
  }

  close(): void {
    for (const c of this.cleanups.splice(0).reverse()) {
      try {
        c();
      } catch {
        // cleanup of something a call already ended
      }
    }
    this.#uffd?.close();
    for (const m of this.#maps.values()) m.unmap();
    for (const fd of this.owned) {
      try {
        fs.closeSync(fd);
      } catch {
        // closed by the call that took it
      }
    }
  }

  /** Turns a spec into the live value it describes. */
  value(spec: unknown): unknown {
    if (typeof spec !== 'object' || spec === null || !('$' in spec)) {
      if (typeof spec === 'object' && spec !== null && !Array.isArray(spec)) {
        return Object.fromEntries(Object.entries(spec).map(([k, v]) => [k, this.value(v)]));
      }
      return spec;
    }
    const s = spec as Record<string, unknown> & { $: string };
    switch (s.$) {
      case 'object':
        return {};
      case 'array':
        return [];
      case 'symbol':
        return Symbol('fuzz');
      case 'function':
        return () => 0;
      case 'throwingProxy':
        return new Proxy(
          {},
          {
            get() {
              throw Object.assign(new Error('fuzz: proxy get'), { code: GETTER_CODE });
            },
            has() {
              throw Object.assign(new Error('fuzz: proxy has'), { code: GETTER_CODE });
            },
          },
        );
      case 'buffer':
        // The unregistered mapping's own memory: an option getter may unmap it under the call.
        if (s.kind === 'mappingBuffer') return this.map('plain').mapped ? this.map('plain').buffer : new ArrayBuffer(0);
        if (s.kind === 'mappingBytes') return this.map('plain').mapped ? this.map('plain').bytes({ offset: SLACK * PAGE, length: PAGE }) : new Uint8Array(0);
        return makeBuffer(s.kind as string, (s.pages as number | undefined) ?? 1);
      case 'at': {
        const m = this.map(s.m as string);
        const base = (m.mapped ? m.address : 0x7f0000000000n) + BigInt(SLACK * PAGE);
        const a = base + BigInt((s.page as number) * PAGE + (s.byte as number));
        return a < 0n ? 0n : a;
      }
      case 'mapping':
        return this.map(s.m as string);
      case 'uffd':
        return this.uffd;
      case 'closedUffd': {
        const u = Userfaultfd.open();
        u.close();
        return u;
      }
      case 'list':
        return (s.items as unknown[]).map((v) => this.value(v));
      case 'u64': {
        const vals = (s.items as unknown[]).map((v) => this.value(v));
        return BigUint64Array.from(vals.map((v) => (typeof v === 'bigint' ? BigInt.asUintN(64, v) : BigInt(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0))));
      }
      case 'range':
        return { address: this.value(s.address), length: this.value(s.length) };
      case 'getterRange': {
        const m = this.map(s.m as string);
        const act = s.act as string;
        return {
          get address() {
            return m.mapped ? m.address : 0x7f0000000000n;
          },
          get length() {
            if (act === 'throw') throw Object.assign(new Error('fuzz: length getter'), { code: GETTER_CODE });
            const len = m.length;
            m.unmap();
            return len;
          },
        };
      }
      case 'getterOptions': {
        const rest = this.value(s.rest) as Record<string, unknown>;
        const m = this.map(s.m as string);
        const key = s.key as string;
        const value = rest[key];
        const act = s.act as string;
        Object.defineProperty(rest, key, {
          enumerable: true,
          get() {
            if (act === 'throw') throw Object.assign(new Error(`fuzz: ${key} getter`), { code: GETTER_CODE });
            m.unmap();
            return value;
          },
        });
        return rest;
      }
      case 'fd':
        return this.fd(s.which as string);
      case 'signal': {
        const ac = new AbortController();
        if (s.aborted) ac.abort();
        return ac.signal;
      }
      case 'table': {
        const t = new BigUint64Array(s.entries as number);
        t.fill(this.map('plain').mapped ? this.map('plain').address : 0n);
        return t;
      }
      case 'claims':
        return new Uint8Array(s.shared ? new SharedArrayBuffer(s.bytes as number) : new ArrayBuffer(s.bytes as number));
      case 'stop':
        return s.set ? new Int32Array(new SharedArrayBuffer(4)).fill(1) : new Int32Array(1).fill(1);
      default:
        throw new Error(`fuzz: unknown spec ${s.$}`);
    }
  }

  fd(which: string): number {
    switch (which) {
      case 'owned':
        return this.own(fs.openSync('/dev/null', 'r'));
      case 'ownedUffd':
        return this.own(uffdLib.shareUffd(this.uffd).fd);
      case 'ownedMemfd':
        return this.own(fs.openSync(`/proc/self/fd/${this.map('memfd').fd ?? 0}`, 'r+'));
      case 'closed':
        return 1_000_000; // above any descriptor this process has open
      case 'uffd':
        return this.uffd.fd;
      case 'memfd':
        return this.map('memfd').fd ?? -1;
      case 'devnull':
        return this.own(fs.openSync('/dev/null', 'r'));
      case 'dir':
        return this.own(fs.openSync(os.tmpdir(), 'r'));
      default:
        throw new Error(`fuzz: unknown fd ${which}`);
    }
  }
}

function makeBuffer(kind: string, pages: number): unknown {
  const n = pages * PAGE;
  switch (kind) {
    case 'Buffer':
      return Buffer.alloc(n, 7);
    case 'ArrayBuffer':
      return new ArrayBuffer(n);
    case 'Uint32Array':
      return new Uint32Array(n / 4);
    case 'DataView':
      return new DataView(new ArrayBuffer(n));
    case 'Float64Array':
      return new Float64Array(n / 8);
    case 'offsetView':
      return new Uint8Array(new ArrayBuffer(n + 3), 3, n);
    case 'sab':
      return new SharedArrayBuffer(n);
    case 'sabView':
      return new Uint8Array(new SharedArrayBuffer(n));
    case 'detached': {
      const ab = new ArrayBuffer(n);
      structuredClone(ab, { transfer: [ab] });
      return ab;
    }
    case 'detachedView': {
      const view = new Uint8Array(n);
      structuredClone(view.buffer, { transfer: [view.buffer] });
      return view;
    }
    default:
      throw new Error(`fuzz: unknown buffer ${kind}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Running

/** A named property over generated specs; `run` calls the API with the live values. */
export interface FuzzProperty {
  name: string;
  arb: fc.Arbitrary<unknown[]>;
  run: (ctx: Ctx, values: unknown[], specs: unknown[]) => Promise<void>;
  /** Runs the call without the shared context (for entry points that need none). */
  noCtx?: boolean;
}

export interface PropertyResult {
  name: string;
  ok: boolean;
  numRuns: number;
  seed: number;
  path?: string;
  counterexample?: string;
  error?: string;
  ms: number;
}

/** Runs every property of a group and prints one JSON line with the results. */
export async function runGroup(props: FuzzProperty[], args: { seed: number; numRuns: number; caseFile: string; only?: string }): Promise<void> {
  const results: PropertyResult[] = [];
  const caseFd = fs.openSync(args.caseFile, 'w');
  for (const p of props) {
    if (args.only && p.name !== args.only) continue;
    const started = Date.now();
    let n = 0;
    const property = fc.asyncProperty(p.arb, async (specs) => {
      n++;
      fs.ftruncateSync(caseFd, 0);
      fs.writeSync(caseFd, `${p.name} #${n} (seed ${args.seed}): ${fc.stringify(specs)}\n`, 0);
      const ctx = new Ctx();
      try {
        const values = specs.map((s) => ctx.value(s));
        await p.run(ctx, values, specs);
      } finally {
        ctx.close();
      }
    });
    const details = await fc.check(property, { numRuns: args.numRuns, seed: args.seed, endOnFailure: false, markInterruptAsFailure: true });
    const r: PropertyResult = { name: p.name, ok: !details.failed, numRuns: details.numRuns, seed: details.seed, ms: Date.now() - started };
    if (details.failed) {
      r.path = details.counterexamplePath ?? undefined;
      r.counterexample = details.counterexample ? fc.stringify(details.counterexample) : undefined;
      const e = details.errorInstance as Error | undefined;
      r.error = e instanceof Error ? e.message : String(e);
    }
    results.push(r);
  }
  fs.closeSync(caseFd);
  fs.rmSync(args.caseFile, { force: true });
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

/** The case file a crashed or hung child left: the property and input it was running. */
export function readCase(caseFile: string): string {
  try {
    return fs.readFileSync(caseFile, 'utf8').trim();
  } catch {
    return '';
  }
}

export const CASE_DIR = os.tmpdir();
export const caseFileFor = (group: string): string => path.join(CASE_DIR, `uffd-fuzz-${process.pid}-${group}.txt`);
