/**
 * Argument checks shared by the public API. The TS layer validates everything first, with
 * messages that name the argument; the native layer checks again, cheaply.
 * @module
 * @internal
 */
import { types } from 'node:util';
import { FEATURES, FEATURE_NAMES, type FeatureName, type FeatureSet } from './constants';
import { invalidType, invalidValue, outOfRange } from './errors';

/** A user-space address: a bigint, or a non-negative safe-integer number. Outputs are bigint. */
export type Address = bigint | number;

/** A span of memory: anything with an address and a length, a {@link Mapping} included. */
export interface Range {
  readonly address: Address;
  readonly length: number;
}

const MAX_U64 = (1n << 64n) - 1n;

/**
 * A value for an error message. Never throws: String() of a symbol in a template, of a view over
 * a detached buffer, or JSON of a bigint would turn a coded error into an engine TypeError.
 */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'string') return `string '${v.length > 40 ? `${v.slice(0, 40)}...` : v}'`;
  return `${typeof v} ${String(v)}`;
}

export function toAddress(v: unknown, name = 'address'): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > MAX_U64) throw outOfRange(`${name} must be within 0 .. 2^64-1, got ${v}`);
    return v;
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw outOfRange(`${name} must be a non-negative safe integer or a bigint, got ${v}`);
    }
    return BigInt(v);
  }
  throw invalidType(`${name} must be a bigint or a number, got ${describe(v)}`);
}

/** A byte count: a safe integer, > 0 unless `allowZero`. */
export function toLength(v: unknown, name = 'length', allowZero = false): number {
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw outOfRange(`${name} is too large: ${v}`);
    v = Number(v);
  }
  if (typeof v !== 'number') throw invalidType(`${name} must be a number, got ${describe(v)}`);
  if (!Number.isSafeInteger(v) || v < 0 || (v === 0 && !allowZero)) {
    throw outOfRange(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} safe integer, got ${v}`);
  }
  return v;
}

/** Throws RangeError unless address and length are multiples of `align` and do not wrap. */
export function checkAligned(address: bigint, length: number, align: number, what: string): void {
  const a = BigInt(align);
  if (address % a !== 0n || length % align !== 0) {
    throw outOfRange(`${what}: address 0x${address.toString(16)} and length ${length} must be multiples of ${align}`);
  }
  if (address + BigInt(length) > MAX_U64 + 1n) throw outOfRange(`${what}: address + length overflows`);
}

/** A validated, page-aligned range. */
export function toRange(v: unknown, align: number, what: string): { address: bigint; length: number } {
  if (typeof v !== 'object' || v === null) {
    throw invalidType(`${what}: range must be a Mapping or { address, length }, got ${describe(v)}`);
  }
  const r = v as Partial<Range>;
  const address = toAddress(r.address, `${what}: range.address`);
  const length = toLength(r.length, `${what}: range.length`);
  checkAligned(address, length, align, what);
  return { address, length };
}

/** An options object (or undefined, meaning `{}`). */
export function toOptions<T extends object>(v: T | undefined, name = 'options'): Partial<T> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw invalidType(`${name} must be an object, got ${describe(v)}`);
  }
  return v;
}

/** A boolean option, with a default. */
export function optBool(opts: object, key: string, dflt: boolean): boolean {
  const v = (opts as Record<string, unknown>)[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw invalidType(`option ${key} must be a boolean, got ${describe(v)}`);
  return v;
}

/** A boolean option that may be left out: undefined when it is (read once, getters included). */
export function optBoolOrUnset(opts: object, key: string): boolean | undefined {
  const v = (opts as Record<string, unknown>)[key];
  if (v !== undefined && typeof v !== 'boolean') throw invalidType(`option ${key} must be a boolean, got ${describe(v)}`);
  return v;
}

/** One of a fixed set of strings. */
export function oneOf<T extends string>(v: unknown, allowed: readonly T[], name: string): T {
  if (typeof v !== 'string') throw invalidType(`${name} must be a string, got ${describe(v)}`);
  if (!(allowed as readonly string[]).includes(v)) {
    throw invalidValue(`${name} must be one of ${allowed.join(', ')}; got '${v}'`);
  }
  return v as T;
}

/**
 * A buffer to copy from: an ArrayBuffer or a view of one. A SharedArrayBuffer, or a view over
 * one, is refused by name: Node-API has no way to reach a SharedArrayBuffer's memory (its
 * ArrayBuffer calls fail with a bare "Invalid argument"), so the addon cannot copy from it.
 * Returns undefined when `v` is no buffer at all, so that callers can try other forms.
 */
export function toBufferSource(v: unknown, name: string): ArrayBuffer | ArrayBufferView | undefined {
  const backing = ArrayBuffer.isView(v) ? v.buffer : v;
  if (types.isSharedArrayBuffer(backing)) {
    throw invalidType(`${name} must not be a SharedArrayBuffer or a view over one (the addon cannot read its memory): copy it into a Buffer first`);
  }
  return ArrayBuffer.isView(v) || v instanceof ArrayBuffer ? v : undefined;
}

/** A non-negative integer file descriptor number. */
export function toFd(v: unknown, name = 'fd'): number {
  if (typeof v !== 'number') throw invalidType(`${name} must be a file descriptor number, got ${describe(v)}`);
  if (!Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw outOfRange(`${name} must be a file descriptor number, got ${v}`);
  return v;
}

/** Feature names, given as an array of names or a {@link FeatureSet} (undefined: none). */
export function toFeatureNames(v: unknown, name: string): FeatureName[] {
  if (v === undefined) return [];
  if (Array.isArray(v)) {
    for (const n of v as unknown[]) {
      if (typeof n !== 'string' || !Object.hasOwn(FEATURES, n)) {
        throw invalidValue(`${name}: unknown feature ${typeof n === 'string' ? n : describe(n)}; known features: ${FEATURE_NAMES.join(', ')}`);
      }
    }
    return v as FeatureName[];
  }
  if (typeof v === 'object' && v !== null) return FEATURE_NAMES.filter((n) => (v as Partial<FeatureSet>)[n] === true);
  throw invalidType(`${name} must be an array of feature names or a feature set, got ${describe(v)}`);
}

/** An AbortSignal option (undefined: none). */
export function toSignal(v: unknown, name = 'option signal'): AbortSignal | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof AbortSignal)) throw invalidType(`${name} must be an AbortSignal, got ${describe(v)}`);
  return v;
}
