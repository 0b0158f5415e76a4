/**
 * The output of PAGEMAP_SCAN as JS sees it: a list over the kernel's `struct page_region` words
 * (start, end, categories; three u64 each), read in place. Objects are built only when asked for,
 * so a scan that finds thousands of regions costs one typed array, not thousands of objects.
 * @module
 */
import { PAGE_CATEGORIES, PAGE_CATEGORY_NAMES, type PageCategory } from '../core/constants';
import { outOfRange } from '../core/errors';

/** One run of pages that share the categories the scan returned. */
export interface PageRegion {
  /** First byte of the run (page aligned). */
  readonly start: bigint;
  /** One past the last byte of the run. */
  readonly end: bigint;
  /**
   * The returned categories by name. Only the categories of the scan's return mask are keys:
   * a category that was not asked for is absent, never a misleading `false`.
   */
  readonly categories: Readonly<Partial<Record<PageCategory, boolean>>>;
}

/** Words per `struct page_region`. */
export const REGION_WORDS = 3;

/** Tells a result whether the buffer it reads is still the one it was made from. @internal */
export interface BufferOwner {
  generation: number;
}

function staleError(): Error {
  return Object.assign(new Error('these page regions were overwritten by a later scan on the same buffer; call copy() or toArray() to keep a result'), {
    code: 'ERR_UFFD_STALE_REGIONS',
  });
}

/**
 * The regions found by one scan (or by a scan continued to the end of its range), read lazily
 * from the output buffer.
 *
 * Lifetime: a list returned by {@link pagemapScan} owns its buffer and stays valid. A list
 * returned by {@link WriteTracker.written} reads the tracker's reusable buffer: it is valid
 * until the tracker's next `written()` / `reset()` / `close()`, after which every accessor
 * throws `ERR_UFFD_STALE_REGIONS`. Keep one with {@link PageRegions.copy} or
 * {@link PageRegions.toArray}.
 */
export class PageRegions implements Iterable<PageRegion> {
  readonly #words: BigUint64Array;
  readonly #count: number;
  readonly #returnMask: bigint;
  readonly #owner: BufferOwner | undefined;
  readonly #generation: number;

  /** @internal */
  constructor(words: BigUint64Array, count: number, returnMask: bigint, owner?: BufferOwner) {
    this.#words = words;
    this.#count = count;
    this.#returnMask = returnMask;
    this.#owner = owner;
    this.#generation = owner?.generation ?? 0;
  }

  /** How many regions. */
  get length(): number {
    this.#check();
    return this.#count;
  }

  /** Start of region `i` (no object is built). */
  startOf(i: number): bigint {
    return this.#word(i, 0);
  }

  /** End of region `i` (exclusive). */
  endOf(i: number): bigint {
    return this.#word(i, 1);
  }

  /** The raw PAGE_IS_* bits of region `i`, masked by the scan's return mask. */
  categoryBitsOf(i: number): bigint {
    return this.#word(i, 2);
  }

  /** Region `i` as an object; negative `i` counts from the end, like Array#at. */
  at(i: number): PageRegion | undefined {
    this.#check();
    const idx = i < 0 ? this.#count + i : i;
    if (!Number.isInteger(idx) || idx < 0 || idx >= this.#count) return undefined;
    const base = idx * REGION_WORDS;
    return {
      start: this.#words[base],
      end: this.#words[base + 1],
      categories: this.#names(this.#words[base + 2]),
    };
  }

  /** The number of bytes the regions cover. */
  bytes(): number {
    this.#check();
    let total = 0n;
    for (let i = 0; i < this.#count; i++) total += this.#words[i * REGION_WORDS + 1] - this.#words[i * REGION_WORDS];
    return Number(total);
  }

  /** Every region as an object. */
  toArray(): PageRegion[] {
    const out: PageRegion[] = [];
    for (let i = 0; i < this.length; i++) out.push(this.at(i) as PageRegion);
    return out;
  }

  /** A list over a private copy of the words: never goes stale. */
  copy(): PageRegions {
    this.#check();
    return new PageRegions(this.#words.slice(0, this.#count * REGION_WORDS), this.#count, this.#returnMask);
  }

  /** Every region as an object, in address order. */
  *[Symbol.iterator](): IterableIterator<PageRegion> {
    for (let i = 0; i < this.length; i++) yield this.at(i) as PageRegion;
  }

  #word(i: number, field: number): bigint {
    this.#check();
    if (!Number.isInteger(i) || i < 0 || i >= this.#count) throw outOfRange(this.#count === 0 ? `region index ${i}: there are no regions` : `region index ${i} is outside 0..${this.#count - 1}`);
    return this.#words[i * REGION_WORDS + field];
  }

  #names(bits: bigint): Partial<Record<PageCategory, boolean>> {
    const out: Partial<Record<PageCategory, boolean>> = {};
    for (const name of PAGE_CATEGORY_NAMES) {
      const bit = 1n << BigInt(PAGE_CATEGORIES[name].bit);
      if (this.#returnMask & bit) out[name] = (bits & bit) !== 0n;
    }
    return out;
  }

  #check(): void {
    if (this.#owner !== undefined && this.#owner.generation !== this.#generation) throw staleError();
  }
}
