/**
 * The demo's snapshot file: random-looking but deterministic content, written to a temporary
 * directory, and the checksums that prove a restore reproduced it.
 * @module
 * @internal
 */
import { createCipheriv, createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Bytes generated and written per step: big enough for few syscalls, small enough to stay cheap. */
const CHUNK = 8 << 20;

export interface Snapshot {
  /** The temporary directory holding the file; removed by {@link removeSnapshot}. */
  dir: string;
  file: string;
  /** Open read-only for the restore; closed by {@link removeSnapshot}. */
  fd: number;
  size: number;
}

/**
 * Writes `size` bytes of an AES-128-CTR keystream for `seed` (deterministic: the same seed gives
 * the same file, and unlike a fill pattern every page differs, so a page restored at the wrong
 * offset cannot go unnoticed).
 */
export function writeSnapshot(size: number, seed: number): Snapshot {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'userfaultfd-demo-'));
  const file = path.join(dir, 'snapshot.bin');
  try {
    const key = createHash('sha256').update(`userfaultfd demo ${seed}`).digest().subarray(0, 16);
    const keystream = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
    const zeros = Buffer.alloc(Math.min(CHUNK, size));
    const out = fs.openSync(file, 'w', 0o600);
    try {
      for (let done = 0; done < size; ) {
        const n = Math.min(CHUNK, size - done);
        const chunk = keystream.update(n === zeros.length ? zeros : zeros.subarray(0, n));
        for (let at = 0; at < chunk.length; ) at += fs.writeSync(out, chunk, at, chunk.length - at, done + at);
        done += n;
      }
    } finally {
      fs.closeSync(out);
    }
    return { dir, file, fd: fs.openSync(file, 'r'), size };
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Closes the snapshot's descriptor and removes its directory. Safe to call twice. */
export function removeSnapshot(snapshot: Snapshot): void {
  if (snapshot.fd >= 0) {
    fs.closeSync(snapshot.fd);
    snapshot.fd = -1;
  }
  fs.rmSync(snapshot.dir, { recursive: true, force: true });
}

/** What the file holds, by two measures: computed from the file as it is on disk now. */
export interface FileChecks {
  /** SHA-256 of the whole file, to compare with the restored memory's. */
  sha256: string;
  /**
   * The sum (mod 2^64) of the first 64-bit word of every page: what the touching threads, which
   * read exactly those words while their faults were being served, must have seen in total.
   */
  firstWordSum: bigint;
}

/** Reads the file back once (not trusting what was written) and computes {@link FileChecks}. */
export function checkFile(snapshot: Snapshot, pageSize: number): FileChecks {
  const hash = createHash('sha256');
  let sum = 0n;
  // A whole number of pages per read, so every page's first word is inside one chunk.
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, snapshot.size));
  for (let done = 0; done < snapshot.size; ) {
    const n = readFull(snapshot.fd, buf, Math.min(buf.length, snapshot.size - done), done);
    if (n === 0) break;
    hash.update(buf.subarray(0, n));
    for (let at = 0; at + 8 <= n; at += pageSize) sum += buf.readBigUInt64LE(at);
    done += n;
  }
  return { sha256: hash.digest('hex'), firstWordSum: BigInt.asUintN(64, sum) };
}

/** Reads `length` bytes at `position` unless the file ends first; returns the bytes read. */
function readFull(fd: number, buf: Buffer, length: number, position: number): number {
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, buf, got, length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** SHA-256 of `bytes` (the restored memory). */
export function memoryDigest(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The offset of the first page where `bytes` and the file differ, or -1. For the error message. */
export function firstDifference(snapshot: Snapshot, bytes: Uint8Array, pageSize: number): number {
  const buf = Buffer.allocUnsafe(pageSize);
  for (let at = 0; at < snapshot.size; at += pageSize) {
    const n = readFull(snapshot.fd, buf, pageSize, at);
    if (Buffer.compare(buf.subarray(0, n), bytes.subarray(at, at + n)) !== 0) return at;
  }
  return -1;
}
