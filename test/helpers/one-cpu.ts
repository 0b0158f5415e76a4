/**
 * childJson on one CPU: the whole child process under `taskset -c 0`, as in the 1-vCPU VMs of
 * test/vm, where races between a woken thread and its waker go the other way than on a host
 * with a CPU per thread. Without taskset the child runs on every CPU (the caller is told).
 */
import { spawnSync } from 'node:child_process';
import { MEMTYPES_JS, PACKAGE, expectClean, type ChildResult } from './child';

/** Whether `taskset -c 0` works here. */
export function canPinToOneCpu(): boolean {
  return spawnSync('taskset', ['-c', '0', 'true']).status === 0;
}

/**
 * Like childJson (`ARGS` holds `pkg`, `memtypes` and `args`), but the child runs under
 * `taskset -c 0` when that works. Killed with SIGKILL after `timeoutMs` (scaled as runChild's).
 */
export function childJsonOnOneCpu<T>(script: string, options: { timeoutMs?: number; args?: Record<string, unknown> } = {}): T {
  const timeoutMs = (options.timeoutMs ?? 15000) * (process.env.UFFD_TEST_VM === '1' ? 4 : 1);
  const args = { pkg: PACKAGE, memtypes: MEMTYPES_JS, ...options.args };
  const prelude = `const uffd = require(${JSON.stringify(PACKAGE)}); const ARGS = ${JSON.stringify(args)};\n`;
  const node = [process.execPath, '-e', prelude + script];
  const [program, ...argv] = canPinToOneCpu() ? ['taskset', '-c', '0', ...node] : node;
  const started = Date.now();
  const r = spawnSync(program, argv, { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' });
  const result: ChildResult = {
    status: r.status,
    signal: r.signal,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    timedOut: r.signal === 'SIGKILL' && Date.now() - started >= timeoutMs,
  };
  expectClean(result);
  const lines = result.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}
