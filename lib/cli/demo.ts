/**
 * `userfaultfd demo`: lazily restore a memory snapshot. A snapshot file is written, an empty
 * anonymous region is registered, native threads touch its pages in random order, and every
 * fault is served from the file on demand, by a native policy or (`--js`) by a JS handler. Then
 * the fault latencies are reported and the restored memory is checked against the file.
 * @module
 * @internal
 */
import * as fs from 'node:fs';
import { Mapping } from '../core/mapping';
import { pageSize } from '../core/sysinfo';
import { touch, type TouchThreadResult } from '../testing';
import { Userfaultfd } from '../core/userfaultfd';
import { Progress, formatRate } from './demo-progress';
import { UsageError, parseOptions } from './args';
import { checkFile, firstDifference, memoryDigest, removeSnapshot, writeSnapshot, type Snapshot } from './demo-snapshot';

export interface DemoOptions {
  /** Snapshot size in bytes, a multiple of the page size. */
  size: number;
  /** Native threads faulting the region in. */
  threads: number;
  /** Serve faults with a JS 'pagefault' handler instead of the native policy. */
  js: boolean;
  /** A JSON summary on stdout; nothing to stderr (no progress line). */
  json: boolean;
  /** Seeds the snapshot's content and the touch order. */
  seed: number;
  /**
   * For tests: the JS handler serves this page with every byte inverted, to prove the check
   * catches a bad restore (the CLI has no flag for it).
   */
  corruptPage?: number;
}

export const DEMO_USAGE = `usage: userfaultfd demo [--size 256M] [--threads 4] [--seed 1] [--js] [--json]

  Lazily restores a memory snapshot: writes a snapshot file, maps an empty region, faults it in
  from native threads in random order and serves every fault from the file, then prints the
  fault latency and verifies the restored memory against the file (exit 1 if they differ).

  --size N      snapshot size: bytes, or with K, M, G (binary units); default 256M
  --threads N   faulting threads, 1 to 64; default 4
  --seed N      seeds the snapshot's content and the threads' touch order (a positive integer,
                default 1): the same seed writes the same file and touches pages in the same order
  --js          serve faults with a JS 'pagefault' handler (fs.readSync + uffd.copy) instead of
                the native policy { copyFrom: { fd } }
  --json        print a JSON summary on stdout, and nothing on stderr
  Options take their value as --size 8M or --size=8M.
`;

/** What a run measured and found. */
export interface DemoSummary {
  handler: 'native' | 'js';
  size: number;
  pages: number;
  threads: number;
  /** Faults served (the policy's counter, or the JS handler's). */
  faults: number;
  writeMs: number;
  /** From the first touch to the last thread done. */
  restoreMs: number;
  faultsPerSec: number;
  /** Per-touch latency as the faulting threads saw it, fault round trip included. */
  latencyUs: { p50: number; p99: number; max: number };
  sha256: { file: string; memory: string };
  /** The sum of the words the threads read while faulting equals the file's. */
  threadsSawFile: boolean;
  verified: boolean;
}

/** A usage error of the demo: the CLI prints it with the usage text and exits 2. */
export class DemoUsageError extends UsageError {}

/** "256M", "64MiB", "8m", "1G", "4096" -> bytes. */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new DemoUsageError(`--size: cannot read '${text}' (try 64M)`);
  const shift = { '': 0, k: 10, m: 20, g: 30 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  const bytes = Number(m[1]) * 2 ** shift;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new DemoUsageError(`--size must be positive, got '${text}'`);
  return bytes;
}

function parseCount(name: string, text: string, max: number): number {
  const n = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > max) throw new DemoUsageError(`--${name} must be an integer from 1 to ${max}, got '${text}'`);
  return n;
}

export function parseDemoArgs(args: string[]): DemoOptions {
  const opts: DemoOptions = { size: 256 << 20, threads: 4, js: false, json: false, seed: 1 };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseOptions(args, {
      size: { type: 'string' },
      threads: { type: 'string' },
      seed: { type: 'string' },
      js: { type: 'boolean' },
      json: { type: 'boolean' },
    });
  } catch (err) {
    throw err instanceof UsageError ? new DemoUsageError(err.message) : err;
  }
  if (values.js === true) opts.js = true;
  if (values.json === true) opts.json = true;
  if (typeof values.size === 'string') opts.size = parseSize(values.size);
  if (typeof values.threads === 'string') opts.threads = parseCount('threads', values.threads, 64);
  if (typeof values.seed === 'string') opts.seed = parseCount('seed', values.seed, 0xffffffff);
  if (opts.size % pageSize() !== 0) {
    throw new DemoUsageError(`--size must be a multiple of the page size (${pageSize()}), got '${values.size}' (${opts.size} bytes)`);
  }
  return opts;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function latencies(results: TouchThreadResult[]): Float64Array {
  const all = new Float64Array(results.reduce((n, r) => n + (r.latenciesNs?.length ?? 0), 0));
  let at = 0;
  for (const r of results) {
    if (!r.latenciesNs) continue;
    all.set(r.latenciesNs, at);
    at += r.latenciesNs.length;
  }
  return all.sort();
}

/**
 * Serves the region's faults from the snapshot: natively, or by a JS handler. Returns the fault
 * counter to poll.
 */
function serve(uffd: Userfaultfd, region: Mapping, snapshot: Snapshot, opts: DemoOptions): () => number {
  if (!opts.js) {
    const policy = uffd.handle(region, { copyFrom: { fd: snapshot.fd } });
    return () => policy.stats().faults;
  }
  const page = pageSize();
  const pageMask = BigInt(page - 1);
  const buf = Buffer.allocUnsafe(page);
  let served = 0;
  uffd.on('pagefault', (fault) => {
    const address = fault.address & ~pageMask;
    const offset = Number(address - region.address);
    const n = fs.readSync(snapshot.fd, buf, 0, page, offset);
    buf.fill(0, n); // past the end of the file: zeros, as the native policy does
    if (offset === (opts.corruptPage ?? -1) * page) for (let i = 0; i < page; i++) buf[i] ^= 0xff;
    try {
      uffd.copy(address, buf, page);
    } catch (err) {
      // EEXIST: another thread's fault on the page was resolved first; wake this one too.
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
      uffd.wake({ address, length: page });
    }
    served++;
  });
  return () => served;
}

/** Runs the demo: the summary, and whether the restored memory matched the file. */
export async function runDemo(opts: DemoOptions, log: (line: string) => void): Promise<DemoSummary> {
  const page = pageSize();
  const pages = opts.size / page;
  const handler = opts.js ? 'js' : 'native';
  log(`lazily restoring a ${formatBytes(opts.size)} snapshot (${pages} pages) from ${opts.threads} threads in random order`);
  log(`faults served by ${opts.js ? "a JS 'pagefault' handler (fs.readSync + uffd.copy)" : 'the native policy { copyFrom: { fd } }'}`);

  let t = performance.now();
  const snapshot = writeSnapshot(opts.size, opts.seed);
  // Ctrl-C mid-restore must not leave a 256 MiB file behind in the temp directory.
  const onSignal = (): void => {
    removeSnapshot(snapshot);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  try {
    const writeMs = performance.now() - t;
    log(`snapshot written in ${(writeMs / 1000).toFixed(2)} s: ${snapshot.file}`);

    using region = Mapping.anonymous(opts.size);
    const uffd = Userfaultfd.open();
    let results: TouchThreadResult[];
    let faults: number;
    let restoreMs: number;
    try {
      uffd.register(region);
      const counter = serve(uffd, region, snapshot, opts);
      // --json: stdout carries the summary and stderr stays empty, for scripts that treat any
      // stderr output as a failure.
      const progress = opts.json ? undefined : new Progress({ total: pages, done: counter });
      t = performance.now();
      results = await touch(region, { threads: opts.threads, mode: 'read', order: 'random', seed: opts.seed, recordLatency: true });
      restoreMs = performance.now() - t;
      progress?.finish();
      faults = counter();
    } finally {
      // Closing unregisters the region: from here on a page nobody restored reads as zeros (and
      // fails the check) instead of waiting forever for a fault nobody serves.
      uffd.close();
    }

    const sorted = latencies(results);
    const us = (ns: number): number => Math.round(ns / 10) / 100;
    const file = checkFile(snapshot, page);
    const bytes = region.bytes();
    const memory = memoryDigest(bytes);
    const seen = BigInt.asUintN(64, results.reduce((s, r) => s + r.sum, 0n));
    const summary: DemoSummary = {
      handler,
      size: opts.size,
      pages,
      threads: opts.threads,
      faults,
      writeMs: Math.round(writeMs * 10) / 10,
      restoreMs: Math.round(restoreMs * 10) / 10,
      faultsPerSec: Math.round((faults * 1000) / restoreMs),
      latencyUs: { p50: us(percentile(sorted, 0.5)), p99: us(percentile(sorted, 0.99)), max: us(sorted[sorted.length - 1] ?? 0) },
      sha256: { file: file.sha256, memory },
      threadsSawFile: seen === file.firstWordSum,
      verified: memory === file.sha256 && seen === file.firstWordSum,
    };
    log(`restored in ${(restoreMs / 1000).toFixed(3)} s: ${faults} faults, ${formatRate(summary.faultsPerSec)} faults/s`);
    log(`fault latency: p50 ${summary.latencyUs.p50} us, p99 ${summary.latencyUs.p99} us, max ${summary.latencyUs.max} us`);
    if (summary.verified) {
      log(`checksum verified: sha256 ${memory} (restored memory == snapshot file)`);
    } else {
      const at = firstDifference(snapshot, bytes, page);
      log(`checksum MISMATCH: memory sha256 ${memory}, file sha256 ${file.sha256}`);
      if (at >= 0) log(`  first differing page at offset ${at} (0x${at.toString(16)})`);
      if (!summary.threadsSawFile) log(`  the threads read a word sum of ${seen}, the file's is ${file.firstWordSum}`);
    }
    return summary;
  } finally {
    process.removeListener('SIGINT', onSignal);
    removeSnapshot(snapshot);
  }
}

function formatBytes(bytes: number): string {
  if (bytes % (1 << 30) === 0) return `${bytes / (1 << 30)} GiB`;
  if (bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

/** The CLI entry: exit 0 when verified, 1 on a mismatch, 2 on a usage error. */
export async function demoCommand(args: string[]): Promise<number> {
  // Before parsing, so that `--size lots --help` still shows the help.
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(DEMO_USAGE);
    return 0;
  }
  let opts: DemoOptions;
  try {
    opts = parseDemoArgs(args);
  } catch (err) {
    if (!(err instanceof DemoUsageError)) throw err;
    process.stderr.write(`userfaultfd demo: ${err.message}\n${DEMO_USAGE}`);
    return 2;
  }
  const summary = await runDemo(opts, opts.json ? () => {} : (line) => process.stdout.write(`${line}\n`));
  if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  return summary.verified ? 0 : 1;
}
