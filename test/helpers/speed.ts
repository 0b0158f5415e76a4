/**
 * How much slower than an idle development machine this one runs right now: a factor for time
 * limits (mocha's per-test timeout, runChild's hard kill), so that a busy or emulated machine
 * that is still making progress never hits them. Limits end hangs; they never judge speed.
 *
 * Measured with a fixed CPU workload (hashing plus allocation-heavy JS, as the tests do) and a
 * thread wake-up round trip (a libuv pool request and its completion, what every fault a JS
 * handler serves costs twice), each compared with the same measurement on an idle 2-core x86_64
 * development VM (REFERENCE). The factor only ever rises during a run (the suite re-measures as it goes, as
 * other work on the machine comes and goes), and never falls below a floor: UFFD_TEST_VM's 4
 * (software emulation), UFFD_TEST_SPEED_FLOOR (test/sanitize.sh sets it), or 1.
 * UFFD_TEST_SPEED=N fixes the factor instead of measuring.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

/**
 * The idle reference: the measurements below on the 2-core development VM at real-time priority
 * (the closest to idle a shared machine gets), rounded down: a limit errs on the generous side.
 */
const REFERENCE = { cpuMs: 30, wakeUs: 30 };
/** Beyond this a limit no longer ends a hang in useful time. */
const MAX_FACTOR = 32;

export interface SpeedSample {
  cpuMs: number;
  wakeUs: number;
  /** max(CPU ratio, square root of the wake-up ratio), at least 1, rounded up to a quarter. */
  factor: number;
}

const input = Buffer.alloc(2 << 20, 0x5a);

function cpuOnce(): number {
  const t = process.hrtime.bigint();
  createHash('sha256').update(input).digest();
  const objects: { i: number; s: string }[] = [];
  for (let i = 0; i < 100_000; i++) objects.push({ i, s: String(i) });
  JSON.parse(JSON.stringify(objects.slice(0, 10_000)));
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function wakeOnce(rounds: number): Promise<number> {
  return new Promise((resolve) => {
    const t = process.hrtime.bigint();
    let i = 0;
    const next = (): void => {
      if (++i > rounds) resolve(Number(process.hrtime.bigint() - t) / 1e3 / rounds);
      else fs.stat('/', next);
    };
    next();
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function floor(): number {
  const vm = process.env.UFFD_TEST_VM === '1' ? 4 : 1;
  const given = Number(process.env.UFFD_TEST_SPEED_FLOOR);
  return Math.max(vm, Number.isFinite(given) && given > 0 ? given : 1);
}

/** Measures once (about 0.2 s on an idle machine): five rounds of each, the medians. */
export async function measureSpeed(): Promise<SpeedSample> {
  const cpu: number[] = [];
  const wake: number[] = [];
  for (let i = 0; i < 5; i++) {
    cpu.push(cpuOnce());
    wake.push(await wakeOnce(50));
  }
  const cpuMs = median(cpu);
  const wakeUs = median(wake);
  // Wake-ups are a part of a test's time, not all of it, and under contention their latency is
  // the scheduler's time slice (30 us idle, often 0.5 ms busy): the square root keeps them as a
  // signal without one busy sample making every limit 20 times longer.
  const ratio = Math.max(cpuMs / REFERENCE.cpuMs, Math.sqrt(wakeUs / REFERENCE.wakeUs), 1);
  return { cpuMs, wakeUs, factor: Math.min(MAX_FACTOR, Math.ceil(ratio * 4) / 4) };
}

let current: number | undefined;
let lastMeasured = 0;
let first: SpeedSample | undefined;
let highest: SpeedSample | undefined;

function fixed(): number | undefined {
  const n = Number(process.env.UFFD_TEST_SPEED);
  return process.env.UFFD_TEST_SPEED !== undefined && Number.isFinite(n) && n > 0 ? n : undefined;
}

/**
 * The factor for time limits now: the highest measured so far (never below the floor). Before
 * the first measurement (a test file run without test/setup.ts), the floor.
 */
export function speedFactor(): number {
  return fixed() ?? Math.max(current ?? 1, floor());
}

/** `ms` scaled by the speed factor: for a time limit that ends a hang. */
export function scaled(ms: number): number {
  return Math.round(ms * speedFactor());
}

/**
 * Measures if the last measurement is older than `everyMs` (or there was none), raising the
 * factor if the machine got slower. Returns the factor.
 */
export async function remeasureSpeed(everyMs = 60_000): Promise<number> {
  if (fixed() !== undefined) return speedFactor();
  if (current !== undefined && Date.now() - lastMeasured < everyMs) return speedFactor();
  const s = await measureSpeed();
  lastMeasured = Date.now();
  first ??= s;
  if (highest === undefined || s.factor > highest.factor) highest = s;
  current = Math.max(current ?? 1, s.factor);
  return speedFactor();
}

/** One line on how the factor was found, for the suite's log. */
export function describeSpeed(which: 'first' | 'highest'): string {
  const f = fixed();
  if (f !== undefined) return `time limits x${f} (UFFD_TEST_SPEED)`;
  const s = which === 'first' ? first : highest;
  if (!s) return `time limits x${speedFactor()} (not measured)`;
  const why = `CPU workload ${s.cpuMs.toFixed(1)} ms (idle reference ${REFERENCE.cpuMs}), thread wake-up ${s.wakeUs.toFixed(0)} us (reference ${REFERENCE.wakeUs})`;
  return `time limits x${speedFactor()}: ${why}${floor() > 1 ? `, floor ${floor()}` : ''}`;
}
