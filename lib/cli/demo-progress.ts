/**
 * The demo's live progress line: a bar, pages done and faults per second, redrawn in place on a
 * terminal. Not a terminal (a pipe, a CI log): nothing until the one final line.
 * @module
 * @internal
 */

export interface ProgressOptions {
  /** Units of work in all. */
  total: number;
  /** Reads the units done so far (a policy's fault counter, or the JS handler's). */
  done: () => number;
  /** Where to draw (default process.stderr). */
  stream?: NodeJS.WriteStream;
  /** Redraw period (default 100 ms). */
  intervalMs?: number;
}

const BAR = 30;
/** The rate shown is over this much recent history, so it is live but does not flicker. */
const WINDOW_MS = 500;

export class Progress {
  readonly #opts: Required<ProgressOptions>;
  readonly #tty: boolean;
  readonly #started = performance.now();
  readonly #samples: { t: number; done: number }[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(options: ProgressOptions) {
    this.#opts = { stream: process.stderr, intervalMs: 100, ...options };
    this.#tty = this.#opts.stream.isTTY === true;
    this.#samples.push({ t: this.#started, done: 0 });
    if (this.#tty) {
      this.#timer = setInterval(() => this.#draw(), this.#opts.intervalMs);
      // The progress line alone must never keep the process alive.
      this.#timer.unref();
    }
  }

  /** Stops redrawing and writes the final line, with the average rate (terminal or not). */
  finish(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    const done = this.#opts.done();
    const ms = performance.now() - this.#started;
    const line = `${this.#line(done, ms > 0 ? (done * 1000) / ms : 0)} (average)`;
    this.#opts.stream.write(this.#tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
  }

  #draw(): void {
    const now = performance.now();
    const done = this.#opts.done();
    this.#samples.push({ t: now, done });
    while (this.#samples.length > 2 && now - this.#samples[0].t > WINDOW_MS) this.#samples.shift();
    const first = this.#samples[0];
    const rate = now > first.t ? ((done - first.done) * 1000) / (now - first.t) : 0;
    this.#opts.stream.write(`\r\x1b[2K${this.#line(done, rate)}`);
  }

  #line(done: number, rate: number): string {
    const fraction = this.#opts.total > 0 ? Math.min(1, done / this.#opts.total) : 1;
    const filled = Math.floor(fraction * BAR);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(BAR - filled)}`;
    // Floor: 100% only when every page is in.
    const pct = `${Math.floor(fraction * 100)}%`.padStart(4);
    return `[${bar}] ${pct}  ${done}/${this.#opts.total} pages  ${formatRate(rate)} faults/s`;
  }
}

/** 1234567 -> "1,234,567": rates are read at a glance. */
export function formatRate(rate: number): string {
  return Math.round(rate).toLocaleString('en-US');
}
