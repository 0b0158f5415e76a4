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
  for (const c of cases) {
    if (only && !c.name.includes(only)) continue;
    if (!json) process.stderr.write(`running ${c.name} ...\n`);
    const { ours, c: ref } = await c.run();
    results.push({ name: c.name, ours, c: ref, unit: c.unit, ratio: ours / ref });
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ cases: results })}\n`);
    return;
  }
  const w = Math.max(...results.map((r) => r.name.length), 4);
  process.stdout.write(`${'case'.padEnd(w)}  ${'ours'.padStart(10)}  ${'C'.padStart(10)}  unit    ratio ours/C\n`);
  for (const r of results) {
    process.stdout.write(
      `${r.name.padEnd(w)}  ${r.ours.toFixed(3).padStart(10)}  ${r.c.toFixed(3).padStart(10)}  ${r.unit.padEnd(6)}  ${r.ratio.toFixed(2)}\n`,
    );
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${String((err as Error).stack ?? err)}\n`);
  process.exitCode = 1;
});
