/**
 * Test data: bytes that differ from page to page and from seed to seed, so that a page served,
 * copied or moved to the wrong place shows.
 */

/** `length` bytes (a multiple of 4) of a pattern of `seed`. */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i += 4) b.writeUInt32LE((i * 2654435761 + seed) >>> 0, i);
  return b;
}
