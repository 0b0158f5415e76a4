/**
 * Runs code in a child Node process with a hard timeout. For everything that could leave a thread
 * asleep in a page fault, and for crashes that are the expected outcome (SIGBUS after POISON).
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { scaled } from './speed';

/** The package entry, for `require(PACKAGE)` inside child scripts. */
export const PACKAGE = path.resolve(__dirname, '..', '..', 'lib', 'index.js');

export interface ChildResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The child was killed by our timeout. */
  timedOut: boolean;
}

/**
 * What every child script starts with: `uffd` (the package), `ARGS` (the options' `args`), and
 * `waitFor(cond)`, a promise that resolves once `cond()` holds or half the child's limit has
 * passed. Children wait with it for what arrives asynchronously (a report the event thread hands
 * to JS) rather than for a fixed time, which a slow machine can exceed.
 */
function prelude(args: unknown, timeoutMs: number): string {
  return (
    `const uffd = require(${JSON.stringify(PACKAGE)}); const ARGS = ${JSON.stringify(args ?? null)};\n` +
    `const waitFor = async (cond) => { for (const end = Date.now() + ${Math.round(timeoutMs / 2)}; !cond() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 2)); };\n`
  );
}

/** Options of {@link runChild}. */
export interface ChildOptions {
  timeoutMs?: number;
  args?: unknown;
  nodeArgs?: string[];
  /** A command the child runs under, e.g. `['taskset', '-c', '0']`. */
  wrapper?: string[];
}

/**
 * Runs `script` (CommonJS; see {@link prelude} for what it starts with) in a fresh node, killed
 * with SIGKILL after `timeoutMs`. `args` are passed as JSON in `ARGS`.
 */
export function runChild(script: string, options: ChildOptions = {}): ChildResult {
  // The limit is there to end hangs, not to judge speed: scaled by how slow the machine runs
  // (busy, emulated under test/vm, sanitized), as mocha's own timeouts are (helpers/speed.ts).
  const timeoutMs = scaled(options.timeoutMs ?? 15000);
  const started = Date.now();
  const [program, ...argv] = [...(options.wrapper ?? []), process.execPath, ...(options.nodeArgs ?? []), '-e', prelude(options.args, timeoutMs) + script];
  const r = spawnSync(program, argv, {
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  return {
    status: r.status,
    signal: r.signal,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    timedOut: r.signal === 'SIGKILL' && Date.now() - started >= timeoutMs,
  };
}

/** The compiled memory-type helper, for child scripts that run per memory type. */
export const MEMTYPES_JS = path.resolve(__dirname, 'memtypes.js');

/** Asserts that a child ended by itself with status 0, printing its output otherwise. */
export function expectClean(r: ChildResult): void {
  const detail = `status ${r.status}, signal ${r.signal}${r.timedOut ? ' (timed out)' : ''}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  expect(r.timedOut, `child timed out\n${detail}`).to.equal(false);
  expect(r.signal, detail).to.equal(null);
  expect(r.status, detail).to.equal(0);
}

/**
 * runChild, then the JSON of the last line the child printed (asserting it ended cleanly). The
 * child's `ARGS` hold `pkg` (the package) and `memtypes` (the memory-type helper), plus `args`.
 */
export function childJson<T>(script: string, options: ChildOptions & { args?: Record<string, unknown> } = {}): T {
  const r = runChild(script, { ...options, args: { pkg: PACKAGE, memtypes: MEMTYPES_JS, ...options.args } });
  expectClean(r);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}

/** runChild, asserting that the child ended by itself with status 0; what it printed. */
export function childStdout(script: string, timeoutMs = 20000): string {
  const r = runChild(script, { timeoutMs });
  expect(r.timedOut, `timed out; stderr: ${r.stderr}`).to.equal(false);
  expect(r.status, r.stderr).to.equal(0);
  return r.stdout;
}

/** Options of {@link spawnChild}. */
export interface SpawnOptions {
  timeoutMs?: number;
  args?: unknown;
  /**
   * End the child (SIGKILL, counted as timedOut) `ms` after it first prints `line`: for children
   * expected to stay alive or hang, which need not wait out the whole limit to show it.
   */
  killAfter?: { line: string; ms: number };
}

/** runChild without blocking the test: the child runs while the event loop goes on. */
export function spawnChild(script: string, options: SpawnOptions = {}): Promise<ChildResult> {
  const timeoutMs = scaled(options.timeoutMs ?? 15000);
  return new Promise<ChildResult>((resolve) => {
    const child = spawn(process.execPath, ['-e', prelude(options.args, timeoutMs) + script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const kill = (): void => {
      timedOut = true;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(kill, timeoutMs);
    let lineTimer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const k = options.killAfter;
      if (k && lineTimer === undefined && stdout.split('\n').includes(k.line)) lineTimer = setTimeout(kill, k.ms);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      clearTimeout(lineTimer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
}

/** spawnChild for several children at once (races between processes, load on both cores). */
export function runChildren(scripts: string[], options: SpawnOptions = {}): Promise<ChildResult[]> {
  return Promise.all(scripts.map((script) => spawnChild(script, options)));
}
