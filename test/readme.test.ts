/**
 * Every code block in README.md runs, in a child process, against the built package, and what
 * it prints is checked against the comments that say what it prints.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { FeatureName } from '../lib/core/constants';
import { PACKAGE } from './helpers/child';
import { kernel, skipIf } from './helpers/memtypes';
import { scaled } from './helpers/speed';

const README = path.resolve(__dirname, '..', '..', 'README.md');

interface Example {
  code: string;
  line: number;
  /** The plain block right after the example, introduced by "prints": its exact output. */
  prints?: string;
  /** Kernel features named in a `<!-- requires: A B -->` line just before the example. */
  requires: string[];
}

function examples(): Example[] {
  const text = fs.readFileSync(README, 'utf8');
  const blocks = [...text.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)];
  const out: Example[] = [];
  blocks.forEach((b, i) => {
    if (b[1] !== 'js') return;
    const next = blocks[i + 1];
    const between = next ? text.slice(b.index! + b[0].length, next.index) : '';
    const prints = next && next[1] === '' && /^\s*prints\s*$/.test(between) ? next[2] : undefined;
    const before = text.slice(0, b.index).trimEnd().split('\n').pop() ?? '';
    const requires = /^<!-- requires: ([\w ]+) -->$/.exec(before)?.[1].split(' ') ?? [];
    out.push({ code: b[2], line: text.slice(0, b.index).split('\n').length, prints, requires });
  });
  return out;
}

/** The values a `console.log(...) // a b c` line promises, in order. */
function promised(code: string): string[] {
  return [...code.matchAll(/console\.log\(.*\);\s*\/\/ (.+)$/gm)].map((m) => m[1].trim());
}

describe('README examples', () => {
  const all = examples();

  it('has examples to run', () => {
    expect(all.length).to.be.at.least(4);
  });

  for (const ex of all) {
    const says = promised(ex.code).length > 0 || ex.prints !== undefined;
    it(`the example at README.md:${ex.line} runs${says ? ' and prints what it says' : ''}`, function () {
      const missing = ex.requires.filter((f) =>
        f === 'PAGEMAP_SCAN' ? !kernel().pagemapScan.supported : !kernel().features[f as FeatureName],
      );
      skipIf(this, missing.length ? `the kernel lacks ${missing.join(', ')}` : undefined);
      const isModule = /^import /m.test(ex.code);
      // In a Worker's eval'd source the name appears quoted inside a template string too.
      const code = ex.code.replace(/(['"])userfaultfd\1/g, JSON.stringify(PACKAGE));
      const r = spawnSync(process.execPath, [isModule ? '--input-type=module' : '--input-type=commonjs', '-e', code], {
        encoding: 'utf8',
        timeout: scaled(15000), // a limit for hangs, scaled by the machine's speed (emulation runs JS 8-16x slower)
        killSignal: 'SIGKILL',
      });
      expect(r.stderr).to.equal('');
      expect(r.status).to.equal(0);
      if (ex.prints !== undefined) expect(r.stdout).to.equal(ex.prints);
      const printed = r.stdout.trim().split('\n');
      const want = promised(ex.code);
      want.forEach((line, i) => expect(printed[i]).to.equal(line));
    });
  }
});
