/**
 * The benchmark harness: every case measures our path and a C reference built from our own C
 * source (bench/c/) doing the same work, in one run, and reports the ratio ours / C.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface BenchResult {
  name: string;
  ours: number;
  c: number;
  unit: string;
  ratio: number;
}

export interface BenchCase {
  name: string;
  /** What `ours` and `c` are measured in; lower is better unless `higherIsBetter`. */
  unit: string;
  higherIsBetter?: boolean;
  /** The ratio ours / C the project aims for (at most, or at least if `higherIsBetter`). */
  target?: number;
  run(): Promise<{ ours: number; c: number }>;
}

const C_DIR = path.resolve(__dirname, '..', '..', 'bench', 'c');
const OUT_DIR = path.join(C_DIR, 'out');

/** Compiles bench/c/NAME.c (if stale) and returns the binary's path. */
export function cBinary(name: string): string {
  const src = path.join(C_DIR, `${name}.c`);
  const bin = path.join(OUT_DIR, name);
  fs.mkdirSync(OUT_DIR, { recursive: true });
  // The C sources include the project's uAPI header and their own: a change to either rebuilds.
  const inputs = [src, path.join(C_DIR, 'pagemap_uapi.h'), path.resolve(C_DIR, '..', '..', 'native', 'uapi.h')];
  const newest = Math.max(...inputs.filter((f) => fs.existsSync(f)).map((f) => fs.statSync(f).mtimeMs));
  const stale = !fs.existsSync(bin) || fs.statSync(bin).mtimeMs < newest;
  if (stale) execFileSync('cc', ['-O2', '-Wall', '-pthread', '-o', bin, src], { stdio: 'inherit' });
  return bin;
}

/** Runs a C reference; it prints one JSON object on stdout. */
export function runC<T>(name: string, args: (string | number)[]): T {
  const out = execFileSync(cBinary(name), args.map(String), { encoding: 'utf8', timeout: 120000 });
  return JSON.parse(out) as T;
}

/** Median of a few runs of `fn`, which returns a per-operation figure. */
export async function median(runs: number, fn: () => number | Promise<number>): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < runs; i++) values.push(await fn());
  values.sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)];
}

/** Microseconds elapsed since `start` (from process.hrtime.bigint()). */
export function usSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1000;
}

/**
 * Alternates our measurement and the C reference's, `rounds` times after one warm-up of each,
 * and returns the median of each. Alternating keeps the comparison fair on a shared or noisy
 * machine: whatever else runs slows both sides alike, rather than whichever ran during it.
 */
export async function interleaved(
  rounds: number,
  ours: () => number | Promise<number>,
  c: () => number,
): Promise<{ ours: number; c: number }> {
  await ours();
  c();
  const o: number[] = [];
  const r: number[] = [];
  for (let i = 0; i < rounds; i++) {
    r.push(c());
    o.push(await ours());
  }
  const mid = (v: number[]): number => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];
  return { ours: mid(o), c: mid(r) };
}
