/**
 * childJson on one CPU: the whole child process under `taskset -c 0`, as in the 1-vCPU VMs of
 * test/vm, where races between a woken thread and its waker go the other way than on a host
 * with a CPU per thread. Without taskset the child runs on every CPU (the caller is told).
 */
import { spawnSync } from 'node:child_process';
import { childJson, type ChildOptions } from './child';

/** Whether `taskset -c 0` works here. */
export function canPinToOneCpu(): boolean {
  return spawnSync('taskset', ['-c', '0', 'true']).status === 0;
}

/** childJson, with the child under `taskset -c 0` when that works. */
export function childJsonOnOneCpu<T>(script: string, options: ChildOptions & { args?: Record<string, unknown> } = {}): T {
  return childJson<T>(script, { ...options, wrapper: canPinToOneCpu() ? ['taskset', '-c', '0'] : [] });
}
