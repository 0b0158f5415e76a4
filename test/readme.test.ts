/**
 * Every code block in README.md runs, in a child process, against the built package, and what
 * it prints is checked against the comments that say what it prints.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { PACKAGE } from './helpers/child';

const README = path.resolve(__dirname, '..', '..', 'README.md');

interface Example {
  lang: 'js';
  code: string;
  line: number;
}

function examples(): Example[] {
  const text = fs.readFileSync(README, 'utf8');
  const out: Example[] = [];
  const re = /^```js\n([\s\S]*?)^```$/gm;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    out.push({ lang: 'js', code: m[1], line: text.slice(0, m.index).split('\n').length });
  }
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
    it(`the example at README.md:${ex.line} runs${promised(ex.code).length ? ' and prints what it says' : ''}`, () => {
      const isModule = /^import /m.test(ex.code);
      // In a Worker's eval'd source the name appears quoted inside a template string too.
      const code = ex.code.replace(/(['"])userfaultfd\1/g, JSON.stringify(PACKAGE));
      const r = spawnSync(process.execPath, [isModule ? '--input-type=module' : '--input-type=commonjs', '-e', code], {
        encoding: 'utf8',
        timeout: 15000,
        killSignal: 'SIGKILL',
      });
      expect(r.stderr).to.equal('');
      expect(r.status).to.equal(0);
      const printed = r.stdout.trim().split('\n');
      const want = promised(ex.code);
      want.forEach((line, i) => expect(printed[i]).to.equal(line));
    });
  }
});
