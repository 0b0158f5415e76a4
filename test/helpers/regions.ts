/**
 * Turns page regions into unit indexes relative to a base address, for readable assertions.
 */
import type { PageRegion } from '../../lib/index';

/** The unit indexes ([0, n)) that the regions cover, in order. */
export function unitsOf(regions: Iterable<PageRegion>, base: bigint, unit: number): number[] {
  const out: number[] = [];
  const u = BigInt(unit);
  for (const r of regions) {
    for (let a = r.start; a < r.end; a += u) out.push(Number((a - base) / u));
  }
  return out;
}

/** [start, end) pairs in units relative to base. */
export function spansOf(regions: Iterable<PageRegion>, base: bigint, unit: number): [number, number][] {
  const u = BigInt(unit);
  return [...regions].map((r) => [Number((r.start - base) / u), Number((r.end - base) / u)]);
}
