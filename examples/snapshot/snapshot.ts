/**
 * Incremental snapshots of a Mapping to a file, with WriteTracker: the first round saves every
 * page, each later round only the pages written since the round before (what CRIU's pre-dump
 * and live migration do with dirty tracking). The file is an append-only log, so any round can
 * be restored; restore() replays the log and checks every round's checksum.
 *
 * File layout (little endian):
 *   header  'UFFDSNAP' | u32 version (1) | u32 page size | u64 mapping length
 *   round   'ROUND\0\0\0' | u32 round | u32 regions | u32 crc32 of data | u32 0
 *           regions x (u64 offset, u64 length) | the bytes of each region, in order
 */
import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { Mapping, WriteTracker } from 'userfaultfd';

const FILE_MAGIC = Buffer.from('UFFDSNAP');
const ROUND_MAGIC = Buffer.from('ROUND\0\0\0');
const HEADER_SIZE = 24;
const ROUND_HEADER_SIZE = 24;

/** What one snapshot round wrote. */
export interface RoundInfo {
  round: number;
  /** Runs of pages saved. */
  regions: number;
  /** Bytes of memory saved (the file grows by this plus the round's header and index). */
  bytes: number;
}

/**
 * Snapshots one Mapping into one file, round after round. Between rounds, the program writes
 * to the mapping as it likes; a round saves what changed.
 */
export class IncrementalSnapshot implements Disposable {
  readonly #mem: Mapping;
  readonly #tracker: WriteTracker;
  readonly #fd: number;
  #position = HEADER_SIZE;
  #round = 0;

  /** Creates (or truncates) `file` and starts tracking writes to `mem`. */
  constructor(mem: Mapping, file: string) {
    this.#mem = mem;
    this.#fd = fs.openSync(file, 'w');
    try {
      const header = Buffer.alloc(HEADER_SIZE);
      FILE_MAGIC.copy(header, 0);
      header.writeUInt32LE(1, 8);
      header.writeUInt32LE(mem.pageSize, 12);
      header.writeBigUInt64LE(BigInt(mem.length), 16);
      fs.writeSync(this.#fd, header, 0, HEADER_SIZE, 0);
      // Tracking starts before round 0 copies anything, so a write during the copy is in round 1.
      this.#tracker = new WriteTracker(mem);
    } catch (err) {
      fs.closeSync(this.#fd);
      throw err;
    }
  }

  /**
   * Saves a round: everything the first time, then the pages written since the last round.
   * The written pages are found and write-protected again in one step (get-and-reset), then
   * copied; a write racing with the copy is saved in this round and again in the next.
   */
  round(): RoundInfo {
    const spans: [number, number][] = [];
    if (this.#round === 0) {
      this.#tracker.reset();
      spans.push([0, this.#mem.length]);
    } else {
      const base = this.#mem.address;
      for (const r of this.#tracker.written({ reset: true })) spans.push([Number(r.start - base), Number(r.end - r.start)]);
    }
    const index = Buffer.alloc(spans.length * 16);
    let crc = 0;
    let bytes = 0;
    spans.forEach(([offset, length], i) => {
      index.writeBigUInt64LE(BigInt(offset), i * 16);
      index.writeBigUInt64LE(BigInt(length), i * 16 + 8);
      crc = crc32(this.#mem.bytes({ offset, length }), crc);
      bytes += length;
    });
    const header = Buffer.alloc(ROUND_HEADER_SIZE);
    ROUND_MAGIC.copy(header, 0);
    header.writeUInt32LE(this.#round, 8);
    header.writeUInt32LE(spans.length, 12);
    header.writeUInt32LE(crc, 16);
    this.#write(header);
    this.#write(index);
    // Straight from the mapping to the file: no copy in JS.
    for (const [offset, length] of spans) this.#write(this.#mem.bytes({ offset, length }));
    return { round: this.#round++, regions: spans.length, bytes };
  }

  /** Stops tracking and closes the file; the mapping is untouched. */
  close(): void {
    this.#tracker.close();
    fs.closeSync(this.#fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #write(data: Uint8Array): void {
    for (let done = 0; done < data.length; ) {
      done += fs.writeSync(this.#fd, data, done, data.length - done, this.#position + done);
    }
    this.#position += data.length;
  }
}

/**
 * Rebuilds the memory as it was at `round` (the last round by default) from a snapshot file,
 * checking the header and every round's checksum on the way.
 * @throws Error if the file is not a snapshot, is truncated, or a checksum does not match.
 */
export function restore(file: string, round?: number): Buffer {
  const data = fs.readFileSync(file);
  if (data.length < HEADER_SIZE || !data.subarray(0, 8).equals(FILE_MAGIC)) throw new Error(`${file} is not a snapshot`);
  if (data.readUInt32LE(8) !== 1) throw new Error(`${file}: unknown snapshot version ${data.readUInt32LE(8)}`);
  const length = Number(data.readBigUInt64LE(16));
  const image = Buffer.alloc(length);
  let at = HEADER_SIZE;
  let last = -1;
  while (at < data.length && (round === undefined || last < round)) {
    if (at + ROUND_HEADER_SIZE > data.length || !data.subarray(at, at + 8).equals(ROUND_MAGIC)) throw new Error(`${file}: bad round header at ${at}`);
    const n = data.readUInt32LE(at + 8);
    const regions = data.readUInt32LE(at + 12);
    const crc = data.readUInt32LE(at + 16);
    let index = at + ROUND_HEADER_SIZE;
    let body = index + regions * 16;
    let sum = 0;
    for (let i = 0; i < regions; i++, index += 16) {
      const offset = Number(data.readBigUInt64LE(index));
      const len = Number(data.readBigUInt64LE(index + 8));
      if (offset + len > length || body + len > data.length) throw new Error(`${file}: round ${n} is truncated`);
      const chunk = data.subarray(body, body + len);
      sum = crc32(chunk, sum);
      chunk.copy(image, offset);
      body += len;
    }
    if (sum !== crc) throw new Error(`${file}: round ${n} fails its checksum`);
    last = n;
    at = body;
  }
  if (round !== undefined && last !== round) throw new Error(`${file} holds rounds 0..${last}, not ${round}`);
  return image;
}
