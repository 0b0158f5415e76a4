/**
 * Root hooks for the whole suite: reserve huge pages before, give them back after; scale every
 * time limit by how fast the machine runs (test/helpers/speed.ts), measured at the start and
 * again as the run goes on.
 */
import Mocha from 'mocha';
import { releaseHugePages, reserveHugePages } from './helpers/hugetlb';
import { describeSpeed, remeasureSpeed, speedFactor } from './helpers/speed';

/** Each test's own limit (from .mocharc, its describe or its it), before scaling. */
const baseTimeout = new WeakMap<Mocha.Runnable, number>();

function scale(r: Mocha.Runnable, factor: number): void {
  if (!baseTimeout.has(r)) baseTimeout.set(r, r.timeout());
  const base = baseTimeout.get(r) as number;
  // 0 is "no limit" (mocha --timeout 0, --inspect).
  if (base > 0) r.timeout(Math.min(2 ** 31 - 1, Math.round(base * factor)));
}

interface SuiteHooks {
  _beforeAll: Mocha.Hook[];
  _beforeEach: Mocha.Hook[];
  _afterEach: Mocha.Hook[];
  _afterAll: Mocha.Hook[];
}

function scaleSuite(suite: Mocha.Suite, factor: number): void {
  const h = suite as unknown as SuiteHooks;
  for (const hook of [...h._beforeAll, ...h._beforeEach, ...h._afterEach, ...h._afterAll]) scale(hook, factor);
  for (const t of suite.tests) scale(t, factor);
  for (const s of suite.suites) scaleSuite(s, factor);
}

// A limit a test sets for itself while it runs (this.timeout(60000)) is scaled the same way.
const ownTimeout = Mocha.Context.prototype.timeout;
Mocha.Context.prototype.timeout = function (this: Mocha.Context, ms?: string | number) {
  if (ms === undefined) return (ownTimeout as () => number).call(this);
  const n = typeof ms === 'number' ? ms : Number(ms);
  return ownTimeout.call(this, Number.isFinite(n) && n > 0 ? Math.min(2 ** 31 - 1, Math.round(n * speedFactor())) : ms);
} as typeof ownTimeout;

let printed = 0;

export const mochaHooks = {
  async beforeAll(this: Mocha.Context): Promise<void> {
    reserveHugePages();
    this.timeout(0);
    await remeasureSpeed(0);
    printed = speedFactor();
    process.stdout.write(`  speed: ${describeSpeed('first')}\n`);
    let root = this.test?.parent;
    while (root?.parent) root = root.parent;
    if (root) scaleSuite(root, speedFactor());
  },
  async beforeEach(this: Mocha.Context): Promise<void> {
    // Cheap unless a minute has passed: the factor follows the machine getting busier.
    const factor = await remeasureSpeed();
    if (this.currentTest) scale(this.currentTest, factor);
  },
  afterAll(): void {
    releaseHugePages();
    if (speedFactor() !== printed) process.stdout.write(`  speed: rose during the run; ${describeSpeed('highest')}\n`);
  },
};
