/**
 * `npm run bench [-- --json] [-- --only SUBSTRING]`: runs every case in bench/cases and prints a
 * table of ours vs our C reference, or `{"cases":[...]}` with --json.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BenchCase, BenchResult } from './harness';

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const onlyAt = args.indexOf('--only');
  const only = onlyAt >= 0 ? args[onlyAt + 1] : undefined;
  const dir = path.join(__dirname, 'cases');
  const cases: BenchCase[] = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.js')).sort()) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(path.join(dir, file)) as { cases: BenchCase[] };
    cases.push(...mod.cases);
  }
  const results: BenchResult[] = [];
  const targets = new Map<string, string>();
  for (const c of cases) {
    if (only && !c.name.includes(only)) continue;
    if (!json) process.stderr.write(`running ${c.name} ...\n`);
    const { ours, c: ref } = await c.run();
    const ratio = ours / ref;
    results.push({ name: c.name, ours, c: ref, unit: c.unit, ratio });
    if (c.target !== undefined) {
      const met = c.higherIsBetter ? ratio >= c.target : ratio <= c.target;
      targets.set(c.name, `${c.higherIsBetter ? '>=' : '<='} ${c.target.toFixed(2)} ${met ? 'met' : 'MISSED'}`);
    }
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ cases: results })}\n`);
    return;
  }
  const w = Math.max(...results.map((r) => r.name.length), 4);
  process.stdout.write(`${'case'.padEnd(w)}  ${'ours'.padStart(10)}  ${'C'.padStart(10)}  unit    ours/C  target\n`);
  for (const r of results) {
    process.stdout.write(
      `${r.name.padEnd(w)}  ${r.ours.toFixed(3).padStart(10)}  ${r.c.toFixed(3).padStart(10)}  ${r.unit.padEnd(6)}  ${r.ratio.toFixed(2).padStart(6)}  ${targets.get(r.name) ?? ''}`.trimEnd() + '\n',
    );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error).stack ?? err)}\n`);
  process.exitCode = 1;
});
