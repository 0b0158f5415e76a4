/**
 * Runs code in a child Node process with a hard timeout. For everything that could leave a thread
 * asleep in a page fault, and for crashes that are the expected outcome (SIGBUS after POISON).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

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
 * Runs `script` (CommonJS; `uffd` is the package) in a fresh node, killed with SIGKILL after
 * `timeoutMs`. `args` are passed as JSON in `ARGS`.
 */
export function runChild(script: string, options: { timeoutMs?: number; args?: unknown; nodeArgs?: string[] } = {}): ChildResult {
  // Under software emulation (test/vm sets UFFD_TEST_VM) JS runs 8-16x slower: scale the limit,
  // which is there to end hangs, not to judge speed.
  const timeoutMs = (options.timeoutMs ?? 15000) * (process.env.UFFD_TEST_VM === '1' ? 4 : 1);
  const prelude = `const uffd = require(${JSON.stringify(PACKAGE)}); const ARGS = ${JSON.stringify(options.args ?? null)};\n`;
  const started = Date.now();
  const r = spawnSync(process.execPath, [...(options.nodeArgs ?? []), '-e', prelude + script], {
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
