/**
 * Moving 64 MiB between two areas: UFFDIO_MOVE in 4 KiB and in 2 MiB (THP) units, through
 * movePages (one call per unit) and movePageList (one call for the whole list), against the
 * same loop of raw UFFDIO_MOVE in C; then UFFDIO_COPY + MADV_DONTNEED and plain memcpy of the
 * same data, each against C, so the C column also says when MOVE pays. Milliseconds per 64 MiB.
 *
 * The C reference starts as many blocked threads as this process has (see bench/c/move.c): the
 * TLB flush of each move costs more in a multi-threaded process, and Node always is one.
 * Addresses are computed before the timed loops, as a compactor has them already.
 */
import * as fs from 'node:fs';
import { Mapping, movePageList, movePages, Userfaultfd } from '../../lib/index';
import { pageSize } from '../../lib/core/sysinfo';
import { runC, type BenchCase } from '../harness';

const SIZE = 64 << 20;
const PMD = 2 << 20;
/** Interleaved samples of C and ours per case; each sample is the best of PASSES passes. */
const SAMPLES = 9;
const PASSES = 3;

interface Pair {
  mapping: Mapping;
  a: bigint;
  b: bigint;
  /** Byte offset of A in the mapping. */
  offset: number;
}

/** Two PMD-aligned areas A (filled) and B (empty), both registered on `uffd`. */
function pair(uffd: Userfaultfd, huge: boolean): Pair {
  const mapping = Mapping.anonymous(2 * SIZE + PMD);
  const a = ((mapping.address + BigInt(PMD - 1)) / BigInt(PMD)) * BigInt(PMD);
  const offset = Number(a - mapping.address);
  mapping.madvise(huge ? 'HUGEPAGE' : 'NOHUGEPAGE', { offset, length: 2 * SIZE });
  // The C samples are spawned between ours, and libuv spawns by fork(): without DONTFORK every
  // page would be shared with the child for a moment and MOVE would fail with EBUSY.
  mapping.madvise('DONTFORK');
  mapping.bytes({ offset, length: SIZE }).fill(0x5a);
  uffd.register({ address: a, length: 2 * SIZE });
  return { mapping, a, b: a + BigInt(SIZE), offset };
}

function addresses(base: bigint, unit: number): bigint[] {
  const out: bigint[] = [];
  for (let o = 0; o < SIZE; o += unit) out.push(base + BigInt(o));
  return out;
}

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

// Every thread of this process but the one running JS, left blocked in the C process.
const idleThreads = (): number => fs.readdirSync('/proc/self/task').length - 1;

/**
 * Alternates C samples (a fresh process each) with samples of `pass` (which moves everything one
 * way, then the other way the next time), and returns the best of each: the machine is shared
 * and its load drifts, interleaving keeps the drift out of the ratio, and the fastest pass is
 * the one least disturbed by other processes (both sides are treated alike).
 */
async function interleaved(what: string, pass: () => number): Promise<{ ours: number; c: number }> {
  const ours: number[] = [];
  const c: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    c.push(runC<{ ms: number }>('move', [what, SIZE >> 20, PASSES, idleThreads()]).ms);
    for (let p = 0; p < PASSES; p++) ours.push(pass());
  }
  return { ours: Math.min(...ours), c: Math.min(...c) };
}

/** How a case moves: movePages per unit, movePageList once, or the bare uffd.move per unit. */
type Way = 'movePages' | 'list' | 'uffd.move';

async function moveCase(what: string, unit: number, huge: boolean, way: Way, scan = true): Promise<{ ours: number; c: number }> {
  using uffd = Userfaultfd.open({ features: ['MOVE'] });
  const p = pair(uffd, huge);
  try {
    const at = { a: addresses(p.a, unit), b: addresses(p.b, unit) };
    const lists = { a: new BigUint64Array(at.a.length * 3), b: new BigUint64Array(at.a.length * 3) };
    for (let i = 0; i < at.a.length; i++) {
      lists.a.set([at.b[i], at.a[i], BigInt(unit)], i * 3);
      lists.b.set([at.a[i], at.b[i], BigInt(unit)], i * 3);
    }
    let from: 'a' | 'b' = 'a';
    let hugeMoves = 0;
    const result = await interleaved(what, () => {
      const src = at[from];
      const dst = at[from === 'a' ? 'b' : 'a'];
      const t = process.hrtime.bigint();
      if (way === 'list') {
        movePageList(uffd, lists[from]);
      } else if (way === 'uffd.move') {
        for (let i = 0; i < src.length; i++) uffd.move(dst[i], src[i], unit);
      } else {
        // No options object on the default path: that is how a fault handler would call it.
        const opts = scan ? undefined : { scan };
        for (let i = 0; i < src.length; i++) hugeMoves += movePages(uffd, dst[i], src[i], unit, opts).hugeMoves ?? 0;
      }
      const elapsed = ms(t);
      from = from === 'a' ? 'b' : 'a';
      return elapsed;
    });
    if (huge && way === 'movePages' && scan && hugeMoves === 0) process.stderr.write('  note: no whole-PMD moves (THP unavailable?)\n');
    return result;
  } finally {
    p.mapping.unmap();
  }
}

async function copyCase(what: string, unit: number): Promise<{ ours: number; c: number }> {
  using uffd = Userfaultfd.open();
  const p = pair(uffd, false);
  try {
    const at = { a: addresses(p.a, unit), b: addresses(p.b, unit) };
    const base = { a: p.offset, b: p.offset + SIZE };
    let from: 'a' | 'b' = 'a';
    return await interleaved(what, () => {
      const src = at[from];
      const dst = at[from === 'a' ? 'b' : 'a'];
      const t = process.hrtime.bigint();
      for (let i = 0; i < src.length; i++) {
        uffd.copy(dst[i], src[i], unit);
        p.mapping.madvise('DONTNEED', { offset: base[from] + i * unit, length: unit });
      }
      const elapsed = ms(t);
      from = from === 'a' ? 'b' : 'a';
      return elapsed;
    });
  } finally {
    p.mapping.unmap();
  }
}

async function memcpyCase(): Promise<{ ours: number; c: number }> {
  // Two mappings: TypedArray.set between views of one ArrayBuffer takes V8's overlap-safe path.
  using ma = Mapping.anonymous(SIZE);
  using mb = Mapping.anonymous(SIZE);
  // Spawning the C sample forks this process: without DONTFORK each page would be copy-on-write
  // for a moment, and the next pass would take a write fault on every page.
  ma.madvise('DONTFORK');
  mb.madvise('DONTFORK');
  const a = ma.bytes();
  const b = mb.bytes();
  a.fill(0x5a);
  b.fill(0x5a);
  let round = 0;
  // Awaited here: `using` unmaps when this function returns.
  return await interleaved('memcpy', () => {
    const t = process.hrtime.bigint();
    if (round++ % 2 === 0) b.set(a);
    else a.set(b);
    return ms(t);
  });
}

const page = pageSize();

export const cases: BenchCase[] = [
  // uffd.move, the bare ioctl wrapper, separates the cost of crossing into the addon (and of a
  // multi-threaded process's TLB flushes) from what movePages adds on top.
  { name: 'move 64 MiB, 4 KiB units: uffd.move per unit', unit: 'ms', run: () => moveCase('move4k', page, false, 'uffd.move') },
  { name: 'move 64 MiB, 4 KiB units: movePages per unit', unit: 'ms', run: () => moveCase('move4k', page, false, 'movePages') },
  { name: 'move 64 MiB, 4 KiB units: movePageList', unit: 'ms', run: () => moveCase('move4k', page, false, 'list') },
  { name: 'move 64 MiB, 2 MiB THP units: uffd.move per unit', unit: 'ms', run: () => moveCase('move2m', PMD, true, 'uffd.move') },
  { name: 'move 64 MiB, 2 MiB THP units: movePages per unit', unit: 'ms', run: () => moveCase('move2m', PMD, true, 'movePages') },
  { name: 'move 64 MiB, 2 MiB THP units: movePages per unit, scan: false', unit: 'ms', run: () => moveCase('move2m', PMD, true, 'movePages', false) },
  { name: 'move 64 MiB, 2 MiB THP units: movePageList', unit: 'ms', run: () => moveCase('move2m', PMD, true, 'list') },
  { name: 'COPY+DONTNEED 64 MiB, 4 KiB units', unit: 'ms', run: () => copyCase('copy4k', page) },
  { name: 'COPY+DONTNEED 64 MiB, 2 MiB units', unit: 'ms', run: () => copyCase('copy2m', PMD) },
  { name: 'memcpy 64 MiB (populated dst)', unit: 'ms', run: () => memcpyCase() },
];
